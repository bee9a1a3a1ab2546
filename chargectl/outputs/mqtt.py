"""The edge box's link to the central MQTT broker (aiomqtt 2.5).

    tick ──report()──▶ MqttReporter ──▶ Outbox ──▶ MqttLink.run() ──▶ broker
                                                        ◀── chargectl/<shed>/cmd/#  (commands)

The tick never waits on the network: `MqttReporter.report` only builds small dicts and puts
them in the `Outbox`, which never blocks (events are bounded, the oldest dropped and counted;
the state summary is one slot, each replacing the last). `MqttLink.run` is one task of the
daemon: it connects, says `online` (retained; the Will says `offline` if the connection dies),
publishes what the outbox holds, answers commands, and reconnects forever with capped,
jittered exponential backoff. aiomqtt has no reconnect of its own.

Commands: every message on the command topics gets exactly one answer on `cmd/result`.

    broker ──▶ aiomqtt's queue (unbounded) ──▶ reader: parse; a refusal, or `busy` when
               `command_queue` commands already wait, is answered at once ──▶ pending (bounded)
               ──▶ runner: one command at a time on the daemon ──▶ its answer

Nothing in between drops a message: aiomqtt's own queue, when bounded, discards what does not
fit with only a log line, after paho has already acknowledged it to the broker (QoS 1), so
the sender gets neither an answer nor a redelivery. The reader never waits on a command, so
that queue only holds what arrived since the reader last ran.

Topics and payloads are tables in `chargectl.outputs.mqtt_topics`; docs/mqtt.md describes them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import ssl
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np

from chargectl.config.schema import MqttSettings, Shed
from chargectl.control.layout import Layout
from chargectl.outputs.api import Command
from chargectl.outputs.mqtt_topics import (
    COMMAND_FILTER,
    OFFLINE,
    ONLINE,
    RESULT_SUFFIX,
    TOPICS,
    CommandError,
    Request,
    alarm_event,
    answer,
    busy,
    device_event,
    overload_event,
    parse_command,
    refusal,
    session_end_event,
    state_summary,
    tap_event,
    topic,
)
from chargectl.runtime.clock import Clock
from chargectl.runtime.controller import TickOutcome
from chargectl.sessions.manager import EndedSession, TapResult

log = logging.getLogger("chargectl.outputs.mqtt")

Payload = bytes | Mapping[str, Any]
# Commands waiting for the daemon beyond the one it runs; more are answered `busy` at once.
COMMAND_QUEUE = 32
# Small writes (an answer, the acknowledgement of our own answer echoed on cmd/#) go out at
# once: with Nagle's algorithm each answer waited ~40 ms for a delayed ACK.
_NODELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)


class MqttLinkError(Exception):
    """The link cannot even try to connect (a password file that cannot be read, a bad CA)."""


def reconnect_delay(attempt: int, cap_s: float, u: float, base_s: float = 1.0) -> float:
    """Seconds to wait before reconnect `attempt` (0 = the first retry); `u` is in [0, 1).

    Exponential up to `cap_s`, then "equal jitter": between half and all of it, so a fleet
    of sheds that lost the broker together does not come back in one wave.
    """
    ceiling = min(cap_s, base_s * 2.0 ** min(attempt, 30))
    return ceiling * (0.5 + 0.5 * u)


# -- the outbox: between the tick and the link -----------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)  # identity matters: see Outbox.done
class Outgoing:
    topic: str
    payload: Payload
    qos: int
    retain: bool


class Outbox:
    """Never blocks the producer. Events wait in order, at most `size` of them: when full, the
    oldest goes (counted in `dropped`). The state is one slot: only the newest matters."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"outbox size must be >= 1, got {size}")
        self.size = size
        self.dropped = 0
        self._events: deque[Outgoing] = deque()
        self._state: Outgoing | None = None
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._events) + (self._state is not None)

    def put(self, msg: Outgoing) -> None:
        if len(self._events) >= self.size:
            self._events.popleft()
            self.dropped += 1
        self._events.append(msg)
        self._ready.set()

    def put_state(self, msg: Outgoing) -> None:
        self._state = msg
        self._ready.set()

    def peek(self) -> Outgoing | None:
        if self._events:
            return self._events[0]
        return self._state

    def done(self, msg: Outgoing) -> None:
        """`msg` (from `peek`) is out. It may have been dropped or replaced meanwhile."""
        if self._events and self._events[0] is msg:
            self._events.popleft()
        elif self._state is msg:
            self._state = None

    async def next(self) -> Outgoing:
        while (msg := self.peek()) is None:
            self._ready.clear()
            await self._ready.wait()
        return msg


# -- the reporter: each tick's outcome into the outbox ----------------------------------------


class MqttReporter:
    """A `Reporter` of the control loop: events as they happen, the state every interval.

    `taps` and `settled` return this tick's taps and settled sessions (the loop's other
    reporters drain them; the wiring hands over what they drained); `device_up` is the bus
    health.
    """

    def __init__(
        self,
        shed: str,
        layout: Layout,
        outbox: Outbox,
        *,
        state_interval_s: float,
        device_up: Callable[[], Mapping[str, bool]],
        taps: Callable[[], Sequence[TapResult]],
        settled: Callable[[], Sequence[EndedSession]],
        commands_busy: Callable[[], int] = lambda: 0,
    ) -> None:
        self.shed = shed
        self.layout = layout
        self.outbox = outbox
        self.commands_busy = commands_busy
        self.state_interval_s = state_interval_s
        self.device_up = device_up
        self.taps = taps
        self.settled = settled
        self._next_state = -np.inf
        self._overloaded = np.zeros(layout.n_circuits, dtype=np.bool_)
        self._alarm: str | None = None
        self._up: dict[str, bool] = {}

    def _event(self, key: str, body: Mapping[str, Any]) -> None:
        t = TOPICS[key]
        self.outbox.put(Outgoing(topic(self.shed, t.suffix), body, t.qos, t.retain))

    def report(self, tick: TickOutcome) -> None:
        wall, d = tick.wall, tick.decision
        for tap in self.taps():
            self._event("tap", tap_event(tap, wall))
        for s in self.settled():
            self._event("session_end", session_end_event(s, wall))
        over = np.asarray(d.overloaded, dtype=np.bool_)
        for c in np.flatnonzero(over != self._overloaded):
            self._event("overload", overload_event(self.layout, d, int(c), bool(over[c]), wall))
        self._overloaded = over.copy()
        if d.alarm != self._alarm:
            self._event("alarm", alarm_event(d.alarm, self._alarm, wall))
            self._alarm = d.alarm
        up = dict(self.device_up())
        for dev, is_up in up.items():
            was = self._up.get(dev)
            if was is not None and was != is_up:  # the first tick sets the baseline
                self._event("device", device_event(dev, is_up, wall))
        self._up = up
        if tick.now >= self._next_state:
            self._next_state = tick.now + self.state_interval_s
            down = [dev for dev, is_up in up.items() if not is_up]
            body = state_summary(
                self.shed,
                self.layout,
                d,
                wall=wall,
                devices_down=down,
                dropped=self.outbox.dropped,
                commands_busy=self.commands_busy(),
            )
            t = TOPICS["state"]
            self.outbox.put_state(Outgoing(topic(self.shed, t.suffix), body, t.qos, t.retain))


# -- the link: one task of the daemon ---------------------------------------------------------


async def _cancel(tasks: set[asyncio.Task[Any]]) -> None:
    """Cancel `tasks` and wait until each has ended.

    Cancelled again and again: on Python 3.11, `asyncio.wait_for` (aiomqtt waits for every
    acknowledgement with it) swallows a cancel that arrives just as its inner wait completes;
    that task then goes on as if nothing happened, and a TaskGroup would wait for it forever.
    Measured here: a stop right after a command was answered hung the link.
    """
    pending = {t for t in tasks if not t.done()}
    while pending:
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.1)


def _encode(payload: Payload) -> bytes:
    if isinstance(payload, bytes):
        return payload
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


def _encode_answer(reply: Mapping[str, Any]) -> bytes:
    """An answer as bytes, whatever a command returned: one that cannot be encoded (a bug in a
    command's body) is replaced by an error answer rather than dropping the link."""
    try:
        return _encode(reply)
    except (TypeError, ValueError, RecursionError):
        log.error("MQTT: an answer to %r cannot be encoded; sent as an error", reply.get("command"))
    command_id = reply.get("id")
    safe = {
        "id": command_id if isinstance(command_id, str) else None,
        "command": str(reply.get("command")),
        "ok": False,
        "error": "the answer could not be encoded",
    }
    return _encode(safe)


def _expected(exc: BaseException) -> bool:
    """A network or broker problem (retry quietly), not a bug in the link (log a traceback)."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_expected(e) for e in exc.exceptions)
    return isinstance(exc, aiomqtt.MqttError | OSError | MqttLinkError)


class MqttLink:
    def __init__(
        self,
        settings: MqttSettings,
        shed: str,
        outbox: Outbox,
        *,
        commands: Mapping[str, Command],
        clock: Clock,
        base_dir: Path,
        rng: random.Random | None = None,
        io_timeout_s: float = 10.0,
        command_timeout_s: float = 10.0,
        flush_s: float = 2.0,
        reconnect_base_s: float = 1.0,
        command_queue: int = COMMAND_QUEUE,
    ) -> None:
        if settings.host is None:
            raise MqttLinkError("mqtt.host is not set: the MQTT link is off")
        self.settings = settings
        self.host: str = settings.host
        self.port = settings.port or (8883 if settings.tls else 1883)
        self.shed = shed
        self.outbox = outbox
        self.commands = dict(commands)
        self.clock = clock
        self.base_dir = base_dir
        self.rng = rng or random.Random()
        self.io_timeout_s = io_timeout_s
        self.command_timeout_s = command_timeout_s
        self.flush_s = flush_s
        self.reconnect_base_s = reconnect_base_s
        self.command_queue = command_queue
        self.status_topic = topic(shed, TOPICS["status"].suffix)
        self.result_topic = topic(shed, RESULT_SUFFIX)
        self._cmd_prefix = topic(shed, "cmd/")
        # What tests, logs and metrics look at.
        self.connected = False
        self.subscribed = False  # commands reach it (connected, and the subscription acked)
        self.connects = 0
        self.failures = 0
        self.published = 0
        self.answered = 0  # answers published (results, refusals and busy alike)
        self.refused = 0  # messages that were no command (bad payload, unknown, retained)
        self.busy = 0  # commands answered `busy`: `command_queue` were waiting already
        self._pending: asyncio.Queue[Request] | None = None
        self._down_since_attempt: int | None = None

    # -- life ------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Connect, serve, reconnect, until `stop` is set; then say `offline` and leave."""
        attempt = 0
        while not stop.is_set():
            connects = self.connects
            session = asyncio.create_task(self._session(stop), name="mqtt-session")
            stopper = asyncio.create_task(stop.wait(), name="mqtt-stop-wait")
            try:
                await asyncio.wait({session, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if not session.done() and not self.connected:
                    await _cancel({session})  # stopped while connecting: nobody to tell
                await asyncio.wait({session})
            finally:
                stopper.cancel()
                if not session.done():  # run() itself was cancelled
                    await _cancel({session})
            if session.cancelled():
                return
            exc = session.exception()
            if exc is None:
                return  # a clean stop
            if self.connects > connects:
                attempt = 0  # it was up: the backoff starts again from the bottom
            self._failed(exc)
            delay = reconnect_delay(
                attempt, self.settings.reconnect_max_s, self.rng.random(), self.reconnect_base_s
            )
            attempt += 1
            await self._sleep_unless(stop, delay)

    async def _sleep_unless(self, stop: asyncio.Event, seconds: float) -> None:
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for f in (sleeper, stopper):
                f.cancel()

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        where = f"{self.host}:{self.port}"
        if not _expected(exc):
            log.error("MQTT link to %s failed; reconnecting", where, exc_info=exc)
        elif self._down_since_attempt is None:  # logged once per outage, and its end once
            log.warning("MQTT link to %s down: %s; reconnecting with backoff", where, exc)
        else:
            log.debug("MQTT link to %s still down: %s", where, exc)
        if self._down_since_attempt is None:
            self._down_since_attempt = self.failures

    def _up(self) -> None:
        self.connected = True
        self.connects += 1
        if self._down_since_attempt is not None:
            n = self.failures - self._down_since_attempt + 1
            log.warning("MQTT link to %s:%d back after %d failed attempts", self.host, self.port, n)
            self._down_since_attempt = None
        else:
            log.info("MQTT link to %s:%d connected", self.host, self.port)

    # -- one connection --------------------------------------------------------------------
    def _client_args(self) -> dict[str, Any]:
        """Blocking (files): run in a thread. Read at each connect, so rotation just works."""
        s = self.settings
        args: dict[str, Any] = {"username": s.username}
        if s.password_file is not None:
            path = self.base_dir / s.password_file
            try:
                args["password"] = path.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise MqttLinkError(f"mqtt.password_file {str(path)!r}: {exc}") from None
        if s.tls:
            cafile = None if s.ca_file is None else str(self.base_dir / s.ca_file)
            try:
                args["tls_context"] = ssl.create_default_context(cafile=cafile)
            except (OSError, ssl.SSLError) as exc:
                raise MqttLinkError(f"mqtt.ca_file {cafile!r}: {exc}") from None
        return args

    async def _session(self, stop: asyncio.Event) -> None:
        args = await asyncio.to_thread(self._client_args)
        client = aiomqtt.Client(
            self.host,
            self.port,
            identifier=f"chargectl-{self.shed}",
            will=aiomqtt.Will(self.status_topic, OFFLINE, qos=1, retain=True),
            # Commands sent while the shed was away are not kept for it: a stop or a clear
            # hours late is worse than one that visibly got no answer.
            clean_session=True,
            keepalive=self.settings.keepalive_s,
            timeout=self.io_timeout_s,
            # Unbounded: aiomqtt drops what does not fit after paho acknowledged it (see the
            # module's docstring); the bound is `command_queue`, where the overflow is answered.
            max_queued_incoming_messages=0,
            socket_options=_NODELAY,
            **args,
        )
        async with client:
            self._up()
            try:
                await client.publish(self.status_topic, ONLINE, qos=1, retain=True)
                await client.subscribe(topic(self.shed, COMMAND_FILTER), qos=1)
                self.subscribed = True
                await self._serve(client, stop)
                await self._flush(client)
                await client.publish(self.status_topic, OFFLINE, qos=1, retain=True)
            finally:
                self.connected = self.subscribed = False

    async def _serve(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        """Publish and answer until `stop` is set (returns) or the connection fails (raises).

        Plain tasks rather than a TaskGroup: see `_cancel`."""
        self._pending = asyncio.Queue()  # commands of an earlier connection are not run
        loops = {
            asyncio.create_task(self._publish_loop(client), name="mqtt-publish"),
            asyncio.create_task(self._command_loop(client), name="mqtt-commands"),
            asyncio.create_task(self._run_loop(client, self._pending), name="mqtt-runner"),
        }
        stopper = asyncio.create_task(stop.wait(), name="mqtt-stop")
        try:
            done, _ = await asyncio.wait(loops | {stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await _cancel(loops | {stopper})
        for t in done & loops:  # the loops never end but by failing
            exc = t.exception()
            raise exc if exc is not None else aiomqtt.MqttError(f"{t.get_name()} ended")

    async def _publish_one(self, client: aiomqtt.Client, msg: Outgoing) -> None:
        try:
            payload = _encode(msg.payload)
        except (TypeError, ValueError):  # a bug in a payload builder: never retry it forever
            log.exception("MQTT: cannot encode a message for %s; dropped", msg.topic)
            self.outbox.done(msg)
            return
        await client.publish(msg.topic, payload, qos=msg.qos, retain=msg.retain)
        self.outbox.done(msg)
        self.published += 1

    async def _publish_loop(self, client: aiomqtt.Client) -> None:
        while True:
            await self._publish_one(client, await self.outbox.next())

    async def _flush(self, client: aiomqtt.Client) -> None:
        """On the way out: what the outbox still holds, for a short while."""
        try:
            async with asyncio.timeout(self.flush_s):
                while (msg := self.outbox.peek()) is not None:
                    await self._publish_one(client, msg)
        except TimeoutError:
            log.warning("MQTT: %d messages not sent at shutdown", len(self.outbox))

    async def _answer(self, client: aiomqtt.Client, reply: Mapping[str, Any]) -> None:
        await client.publish(self.result_topic, _encode_answer(reply), qos=1)
        self.answered += 1

    async def _command_loop(self, client: aiomqtt.Client) -> None:
        """The reader: takes every message off aiomqtt's queue at once; a refusal and `busy`
        are answered here, a command goes to the runner."""
        pending = self._pending
        assert pending is not None
        async for m in client.messages:
            path = m.topic.value.removeprefix(self._cmd_prefix)
            if path == RESULT_SUFFIX.removeprefix("cmd/"):
                continue  # our own answers come back: we read all of cmd/#
            payload = m.payload if isinstance(m.payload, bytes | bytearray) else b""
            reply = self.take(path, bytes(payload), pending, retained=m.retain)
            if reply is not None:
                await self._answer(client, reply)

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

    async def _run_loop(self, client: aiomqtt.Client, pending: asyncio.Queue[Request]) -> None:
        """The runner: one command at a time on the daemon, each answered."""
        while True:
            req = await pending.get()
            await self._answer(client, await self.run_command(req))

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


# -- assembly --------------------------------------------------------------------------------


def build(
    shed: Shed,
    layout: Layout,
    clock: Clock,
    commands: Mapping[str, Command],
    *,
    device_up: Callable[[], Mapping[str, bool]],
    taps: Callable[[], Sequence[TapResult]],
    settled: Callable[[], Sequence[EndedSession]],
) -> tuple[MqttReporter, MqttLink]:
    """The reporter (add it to the loop's reporters) and the link (run it as a task)."""
    m = shed.mqtt
    outbox = Outbox(m.queue_size)
    name = shed.shed.name
    link = MqttLink(m, name, outbox, commands=commands, clock=clock, base_dir=shed.source.parent)
    reporter = MqttReporter(
        name,
        layout,
        outbox,
        state_interval_s=m.state_interval_s,
        device_up=device_up,
        taps=taps,
        settled=settled,
        commands_busy=lambda: link.busy,
    )
    return reporter, link
