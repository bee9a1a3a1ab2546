"""The edge box's link to the central MQTT broker (aiomqtt 2.5): connect, publish, reconnect.

    tick ──report()──▶ MqttReporter ──▶ Outbox ──▶ MqttLink.run() ──▶ broker
                                                        ◀── chargectl/<shed>/cmd/#  (commands)

The tick never waits on the network: `MqttReporter.report` (`mqtt_reporter`) only builds small
dicts and puts them in the `Outbox` (`mqtt_outbox`), which never blocks. `MqttLink.run` (here)
is one task of the daemon: it connects, says `online` (retained; the Will says `offline` if the
connection dies), publishes what the outbox holds, has its `CommandDesk` (`mqtt_commands`)
answer commands, and reconnects forever with capped, jittered exponential backoff. aiomqtt has
no reconnect of its own. `build` assembles the reporter and the link.

Topics and payloads are tables in `chargectl.outputs.mqtt_topics`; docs/mqtt.md describes them.
Callers import the names of the other `mqtt_*` modules listed in `__all__` from here.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiomqtt

from chargectl.config.schema import MqttSettings, Shed
from chargectl.control.layout import Layout
from chargectl.outputs import ha_discovery
from chargectl.outputs.api import Command
from chargectl.outputs.mqtt_commands import COMMAND_QUEUE, CommandDesk
from chargectl.outputs.mqtt_outbox import Outbox, Outgoing, encode
from chargectl.outputs.mqtt_reporter import MqttReporter
from chargectl.outputs.mqtt_topics import COMMAND_FILTER, OFFLINE, ONLINE, TOPICS, Request, topic
from chargectl.runtime.clock import Clock

__all__ = [
    "COMMAND_QUEUE",
    "MqttLink",
    "MqttLinkError",
    "MqttReporter",
    "Outbox",
    "Outgoing",
    "build",
    "reconnect_delay",
]

log = logging.getLogger("chargectl.outputs.mqtt")

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
        discovery: Sequence[ha_discovery.Message] = (),
    ) -> None:
        if settings.host is None:
            raise MqttLinkError("mqtt.host is not set: the MQTT link is off")
        self.settings = settings
        self.host: str = settings.host
        self.port = settings.port or (8883 if settings.tls else 1883)
        self.shed = shed
        self.outbox = outbox
        self.desk = CommandDesk(
            shed, commands, command_timeout_s=command_timeout_s, command_queue=command_queue
        )
        self.clock = clock
        self.base_dir = base_dir
        self.rng = rng or random.Random()
        self.io_timeout_s = io_timeout_s
        self.flush_s = flush_s
        self.reconnect_base_s = reconnect_base_s
        self.discovery = tuple(discovery)  # Home Assistant's configs, or their removal
        self.status_topic = topic(shed, TOPICS["status"].suffix)
        # What tests, logs and metrics look at (and the desk's counts, below).
        self.connected = False
        self.subscribed = False  # commands reach it (connected, and the subscription acked)
        self.connects = 0
        self.failures = 0
        self.published = 0
        self._down_since_attempt: int | None = None

    @property
    def answered(self) -> int:
        """Answers published (results, refusals and busy alike)."""
        return self.desk.answered

    @property
    def refused(self) -> int:
        """Messages that were no command (bad payload, unknown, retained)."""
        return self.desk.refused

    @property
    def busy(self) -> int:
        """Commands answered `busy`: `command_queue` were waiting already."""
        return self.desk.busy

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
            # Unbounded: aiomqtt drops what does not fit after paho acknowledged it (see
            # mqtt_commands); the bound is `command_queue`, where the overflow is answered.
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
                await ha_discovery.announce(client, self.discovery)
                await self._serve(client, stop)
                await self._flush(client)
                await client.publish(self.status_topic, OFFLINE, qos=1, retain=True)
            finally:
                self.connected = self.subscribed = False

    async def _serve(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        """Publish and answer until `stop` is set (returns) or the connection fails (raises).

        Plain tasks rather than a TaskGroup: see `_cancel`."""
        # A new queue per connection: commands of an earlier connection are not run.
        pending: asyncio.Queue[Request] = asyncio.Queue()
        loops = {
            asyncio.create_task(self._publish_loop(client), name="mqtt-publish"),
            asyncio.create_task(self.desk.read_loop(client, pending), name="mqtt-commands"),
            asyncio.create_task(self.desk.run_loop(client, pending), name="mqtt-runner"),
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
            payload = encode(msg.payload)
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


def build(
    shed: Shed,
    layout: Layout,
    clock: Clock,
    commands: Mapping[str, Command],
) -> tuple[MqttReporter, MqttLink]:
    """The reporter (add it to the loop's reporters) and the link (run it as a task)."""
    m = shed.mqtt
    outbox = Outbox(m.queue_size)
    name = shed.shed.name
    link = MqttLink(
        m,
        name,
        outbox,
        commands=commands,
        clock=clock,
        base_dir=shed.source.parent,
        discovery=ha_discovery.messages(m, name, layout.topology),
    )
    reporter = MqttReporter(
        name,
        layout,
        outbox,
        state_interval_s=m.state_interval_s,
        commands_busy=lambda: link.busy,
    )
    return reporter, link
