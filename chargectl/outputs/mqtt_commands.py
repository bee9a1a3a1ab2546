"""Commands over MQTT: every message on the command topics gets exactly one answer on
`cmd/result`.

    broker ──▶ aiomqtt's queue (unbounded) ──▶ reader: parse; a refusal, or `busy` when
               `command_queue` commands already wait, is answered at once ──▶ pending (bounded)
               ──▶ runner: one command at a time on the daemon ──▶ its answer

Nothing in between drops a message: aiomqtt's own queue, when bounded, discards what does not
fit with only a log line, after paho has already acknowledged it to the broker (QoS 1), so
the sender gets neither an answer nor a redelivery. The reader never waits on a command, so
that queue only holds what arrived since the reader last ran.

`MqttLink` (`chargectl.outputs.mqtt`) runs the reader and the runner of its `CommandDesk` on
each connection, with a new pending queue: commands of an earlier connection are not run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import aiomqtt

from chargectl.outputs.api import Command
from chargectl.outputs.mqtt_outbox import encode
from chargectl.outputs.mqtt_topics import (
    RESULT_SUFFIX,
    CommandError,
    Request,
    answer,
    busy,
    parse_command,
    refusal,
    topic,
)

log = logging.getLogger("chargectl.outputs.mqtt")  # the link's one logger

# Commands waiting for the daemon beyond the one it runs; more are answered `busy` at once.
COMMAND_QUEUE = 32


def _encode_answer(reply: Mapping[str, Any]) -> bytes:
    """An answer as bytes, whatever a command returned: one that cannot be encoded (a bug in a
    command's body) is replaced by an error answer rather than dropping the link."""
    try:
        return encode(reply)
    except (TypeError, ValueError, RecursionError):
        log.error("MQTT: an answer to %r cannot be encoded; sent as an error", reply.get("command"))
    command_id = reply.get("id")
    safe = {
        "id": command_id if isinstance(command_id, str) else None,
        "command": str(reply.get("command")),
        "ok": False,
        "error": "the answer could not be encoded",
    }
    return encode(safe)


class CommandDesk:
    """The link's command side: reads, queues, runs and answers; counts what it did."""

    def __init__(
        self,
        shed: str,
        commands: Mapping[str, Command],
        *,
        command_timeout_s: float = 10.0,
        command_queue: int = COMMAND_QUEUE,
    ) -> None:
        self.commands = dict(commands)
        self.command_timeout_s = command_timeout_s
        self.command_queue = command_queue
        self.result_topic = topic(shed, RESULT_SUFFIX)
        self._cmd_prefix = topic(shed, "cmd/")
        self.answered = 0  # answers published (results, refusals and busy alike)
        self.refused = 0  # messages that were no command (bad payload, unknown, retained)
        self.busy = 0  # commands answered `busy`: `command_queue` were waiting already

    async def answer(self, client: aiomqtt.Client, reply: Mapping[str, Any]) -> None:
        await client.publish(self.result_topic, _encode_answer(reply), qos=1)
        self.answered += 1

    async def read_loop(self, client: aiomqtt.Client, pending: asyncio.Queue[Request]) -> None:
        """The reader: takes every message off aiomqtt's queue at once; a refusal and `busy`
        are answered here, a command goes to the runner."""
        async for m in client.messages:
            path = m.topic.value.removeprefix(self._cmd_prefix)
            if path == RESULT_SUFFIX.removeprefix("cmd/"):
                continue  # our own answers come back: we read all of cmd/#
            payload = m.payload if isinstance(m.payload, bytes | bytearray) else b""
            reply = self.take(path, bytes(payload), pending, retained=m.retain)
            if reply is not None:
                await self.answer(client, reply)

    def take(
        self, path: str, payload: bytes, pending: asyncio.Queue[Request], *, retained: bool
    ) -> dict[str, Any] | None:
        """Queue one command message for the runner, or return its answer (a refusal, busy)."""
        try:
            req = parse_command(path, payload, list(self.commands), retained=retained)
        except CommandError as exc:
            self.refused += 1
            log.info("MQTT command %r refused: %s", path[:120], exc)
            return refusal(path, exc)
        if pending.qsize() >= self.command_queue:
            self.busy += 1
            if self.busy == 1 or self.busy % 100 == 0:
                log.warning("MQTT: %d commands answered busy so far", self.busy)
            return busy(req, pending.qsize())
        pending.put_nowait(req)
        return None

    async def run_loop(self, client: aiomqtt.Client, pending: asyncio.Queue[Request]) -> None:
        """The runner: one command at a time on the daemon, each answered."""
        while True:
            req = await pending.get()
            await self.answer(client, await self.run_command(req))

    async def execute(self, path: str, payload: bytes, *, retained: bool = False) -> dict[str, Any]:
        """Run one command message and return its answer; never raises for a bad message."""
        try:
            req = parse_command(path, payload, list(self.commands), retained=retained)
        except CommandError as exc:
            log.info("MQTT command %r refused: %s", path[:120], exc)
            return refusal(path, exc)
        return await self.run_command(req)

    async def run_command(self, req: Request) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self.command_timeout_s):
                code, body = await self.commands[req.command](req.body)
        except TimeoutError:
            return answer(req, 503, {"error": "the control loop did not answer in time"})
        except Exception as exc:  # the daemon's command failed: answer, keep the link
            log.exception("MQTT command %r failed", req.command)
            return answer(req, 500, {"error": f"the command failed: {type(exc).__name__}"})
        return answer(req, code, body)
