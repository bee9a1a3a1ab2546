"""The daemon assembled from a `Shed`: used by `chargectl run`, the demo and the tests.

Everything is built here once and torn down in reverse order; the clock and the Modbus client
factories are injectable, so the same assembly runs against real lines, the simulator over
loopback, or in-memory lines on a virtual clock.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from chargectl.adapters.modbus import ModbusShedIO
from chargectl.adapters.sessions import SessionLink, max_power_w
from chargectl.alloc.allocator import warm
from chargectl.config.schema import Shed
from chargectl.control.allocation import make_allocator
from chargectl.control.core import Allocate
from chargectl.control.layout import Layout, build_layout
from chargectl.drivers.bus import ClientFactory
from chargectl.drivers.registry import templates_for
from chargectl.outputs.api import ApiServer, Command, read_token
from chargectl.outputs.metrics import ShedMetrics, stop
from chargectl.outputs.reporters import EventLog, MetricsReporter, StatusReporter
from chargectl.runtime.central_commands import CentralCommands
from chargectl.runtime.clock import Clock, RealClock
from chargectl.runtime.contracts import Reporter
from chargectl.runtime.controller import Controller
from chargectl.runtime.latches import LatchKeeper
from chargectl.runtime.sdnotify import Notifier
from chargectl.sessions.errors import UnknownBay
from chargectl.sessions.manager import SessionManager
from chargectl.sessions.writer import LedgerWriter
from chargectl.topology import topology_of

if TYPE_CHECKING:
    from chargectl.outputs.mqtt import MqttLink
    from chargectl.outputs.residents import ResidentsPage

log = logging.getLogger("chargectl")
T = TypeVar("T")


class AlreadyRunning(Exception):
    """Another daemon holds this config's lock."""


class ConfigLock:
    """One daemon per config: an exclusive lock on a file beside the ledger, held for the
    daemon's life and released by the kernel if the process dies (even by SIGKILL). The staff
    commands do not take it: they are safe while the daemon runs."""

    def __init__(self, ledger: Path) -> None:
        self.path = ledger.with_name(ledger.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise AlreadyRunning(f"cannot open the lock {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise AlreadyRunning(
                f"another chargectl daemon runs on this config (pid {holder}, lock {self.path})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock; the file stays (harmless)
            self._fd = None


def _in_thread(fn: Callable[[], T]) -> asyncio.Future[T]:
    """`fn` in a daemon thread: unlike `asyncio.to_thread`, nothing waits for it at exit."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def work() -> None:
        try:
            result = fn()
        except BaseException as exc:  # handed to the awaiting task
            loop.call_soon_threadsafe(_settle, fut, None, exc)
        else:
            loop.call_soon_threadsafe(_settle, fut, result, None)

    threading.Thread(target=work, name="chargectl-warm", daemon=True).start()
    return fut


def _settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


async def _unless_stopped(aw: Awaitable[T], stop_event: asyncio.Event) -> tuple[bool, T | None]:
    """Await `aw` unless `stop_event` comes first. (True, its result) when it finished;
    (False, None) when the stop came first, `aw` then cancelled (a thread runs on, unheard)."""
    task = asyncio.ensure_future(aw)
    stopper = asyncio.ensure_future(stop_event.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if task.done():
        return True, task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return False, None


@dataclass
class Options:
    clock: Clock = field(default_factory=RealClock)
    client_factories: Mapping[str, ClientFactory] | None = None
    serve_metrics: bool = True
    serve_api: bool = True
    extra_reporters: list[Reporter] = field(default_factory=list)
    on_started: Callable[[Daemon], None] | None = None
    # A replay's seams: another allocation in place of the kernel (a peer policy), and no
    # metrics, status or event log reporters (the replay records the truth instead).
    allocate: Callable[[Layout], Allocate] | None = None
    outputs: bool = True


class Daemon:
    """The parts of a running daemon, for the commands and the tests to look at."""

    def __init__(self, shed: Shed, options: Options) -> None:
        self.shed = shed
        self.options = options
        self.clock = options.clock
        # The device templates: the shipped ones and the shed's own directories (the config's
        # `templates:` and `--templates`); every role, bay and driver comes from them.
        self.templates = templates_for(shed)
        self.topology = topology_of(shed, self.templates)
        self.layout = build_layout(shed, self.topology)
        self.allocator: Allocate = (options.allocate or make_allocator)(self.layout)
        self.io = ModbusShedIO(
            shed, self.layout, self.clock, options.client_factories, templates=self.templates
        )
        self.writer = LedgerWriter(shed.ledger_path())
        self.sessions = SessionManager(
            shed.sessions,
            self.writer,
            [b.id for b in self.layout.bays],
            max_power_w=max_power_w(shed, self.layout),
        )
        self.link = SessionLink(self.sessions, self.layout, wall_synced=self.clock.clock_synced)
        self.metrics = ShedMetrics(shed, topology=self.topology)
        self.events = EventLog()
        self.api: ApiServer | None = None
        self.status = StatusReporter(shed.shed.name, self.layout, None)
        metrics_reporter = MetricsReporter(self.metrics, self.layout)
        reporters: list[Reporter] = (
            [metrics_reporter, self.status, self.events] if options.outputs else []
        )
        self.residents: ResidentsPage | None = None
        self.mqtt: MqttLink | None = None
        if shed.mqtt.host is not None:
            from chargectl.outputs import mqtt  # aiomqtt and paho only when MQTT is on

            reporter, self.mqtt = mqtt.build(shed, self.layout, self.clock, self.commands())
            reporters.append(reporter)
        reporters.extend(options.extra_reporters)
        self.controller = Controller(
            shed,
            self.layout,
            self.clock,
            io=self.io,
            allocate=self.allocator,
            sessions=self.link,
            reporters=reporters,
            latches=LatchKeeper(self.writer, self.layout),
        )
        self.metrics_port: int | None = None
        self.warm_s = 0.0
        self.first_write_s: float | None = None

    # -- staff commands, run on the loop ---------------------------------------------------
    def commands(self) -> dict[str, Command]:
        """Staff commands by path: the local HTTP API and MQTT serve the same table."""
        return {
            "sessions/stop": self._stop_session,
            "alarm/clear": self._clear_alarm,
            "bays/clear-fault": self._clear_fault,
            **CentralCommands(self).table(),  # circuits/limit, bays/start, cards/*
        }

    async def _stop_session(self, body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        bay = body.get("bay")
        if not isinstance(bay, str):
            return 400, {"error": "body needs a string 'bay'"}
        try:
            stopped = self.link.staff_stop(bay, self.clock.now(), self.clock.wall())
        except UnknownBay:
            return 404, {"error": f"unknown bay {bay!r}"}
        self.events.add(f"staff stop at {bay}: {'stopped' if stopped else 'no session'}")
        return 200, {"stopped": stopped}

    async def _clear_alarm(self, body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        core = self.controller.core
        was = core.alarm and f"{core.alarm} at {core.alarm_at}"
        core.clear_alarm()
        self.controller.sync_latches()  # the ledger's latch goes with it
        self.events.add(f"staff cleared alarm ({was or 'none'})")
        return 200, {"cleared": was is not None}

    async def _clear_fault(self, body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        bay = body.get("bay")
        if not isinstance(bay, str) or bay not in self.layout.bay_index:
            return 404, {"error": f"unknown bay {bay!r}"}
        await self.io.reset_fault(bay)
        self.controller.core.clear_fault(self.layout.bay_index[bay])  # welded or held out
        self.controller.sync_latches()
        self.events.add(f"staff cleared the fault at {bay}")
        return 200, {"cleared": True}

    # -- life -------------------------------------------------------------------------------
    async def run(self, stop_event: asyncio.Event) -> None:
        t0 = time.perf_counter()
        notifier = Notifier()
        server = thread = None
        mqtt_stop = asyncio.Event()  # its own: "offline" goes out after the fail-safe writes
        mqtt_task: asyncio.Task[None] | None = None
        lock = ConfigLock(self.shed.ledger_path())
        lock.acquire()  # AlreadyRunning: a second daemon on this config writes nothing
        self.writer.start()
        started = False
        try:
            # The kernel is compiled (or loaded from numba's cache) before anything is written.
            # In a thread of its own: a cold compile takes seconds, the loop (the API, a
            # simulator in the same process) stays responsive meanwhile, and a stop during it
            # ends the daemon at once without a write (the thread dies with the process).
            log.info("loading the allocation kernel (numba's cache, or a compile)")
            warmed, warm_s = await _unless_stopped(_in_thread(warm), stop_event)
            if not warmed:
                log.info("stopped while the kernel compiled: nothing was written")
                return
            self.warm_s = float(warm_s or 0.0)
            if self.options.serve_metrics:
                server, thread = self.metrics.serve(self.shed.metrics.host, self.shed.metrics.port)
                self.metrics_port = int(server.server_port)
            if self.options.serve_api:
                self.api = ApiServer(
                    self.shed.api.host,
                    self.shed.api.port,
                    asyncio.get_running_loop(),
                    token=read_token(self.shed),  # ConfigError if its file cannot be read
                )
                for path, command in self.commands().items():
                    self.api.route(f"/{path}", command)
                self.status.api = self.api
                self.api.start()
            if self.shed.residents is not None:
                from chargectl.outputs.residents import ResidentsPage  # aiohttp: only if served

                ep = self.shed.residents
                # A function, not the dict: the status reporter replaces it every tick.
                self.residents = ResidentsPage(
                    lambda: self.status.latest, host=ep.host, port=ep.port
                )
                await self.residents.start()
            if self.mqtt is not None:
                mqtt_task = asyncio.create_task(self.mqtt.run(mqtt_stop), name="mqtt")
            started = True
            if not (await _unless_stopped(self.controller.start(), stop_event))[0]:
                return  # stopped during set-up: the fail-safe writes below
            self.first_write_s = time.perf_counter() - t0
            self.events.lines.extend(self.controller.restored)  # logged at the restore
            log.info(
                "controlling %s: %d bays, %d circuits; kernel ready in %.2f s, "
                "first write at %.2f s",
                self.shed.shed.name,
                self.layout.n_bays,
                self.layout.n_circuits,
                self.warm_s,
                self.first_write_s,
            )
            notifier.ready(f"controlling {self.layout.n_bays} bays")
            if self.options.on_started is not None:
                self.options.on_started(self)
            await self.controller.run(stop_event, on_tick=notifier.watchdog)
        finally:
            notifier.stopping()
            try:
                if started:
                    await self.controller.shutdown()
                else:
                    await self.io.close()
            except Exception:
                log.exception("could not leave every device in its fail-safe state")
            if mqtt_task is not None:
                mqtt_stop.set()
                try:
                    await asyncio.wait_for(mqtt_task, 15)
                except Exception:
                    log.exception("the MQTT link did not stop cleanly")
            self.writer.close()
            if self.residents is not None:
                await self.residents.close()
            if self.api is not None:
                self.api.close()
            if server is not None and thread is not None:
                stop(server, thread)
            lock.release()


def build_offline(shed: Shed) -> Daemon:
    """Everything `chargectl run` does with a shed before its first I/O, for `check`'s tests.

    The daemon is assembled as `run` assembles it (layout, kernel binding, drivers, sessions,
    metrics, MQTT), with its ledger in a scratch folder; each bus's Modbus client is built (not
    connected); the addresses the metrics and API servers would bind are resolved as they
    would resolve them, without binding. Raises what `run` would raise on this shed; the
    caller closes nothing (the ledger is closed and removed here).
    """
    import dataclasses
    import socket
    import tempfile

    from chargectl.drivers.bus import pymodbus_factory

    with tempfile.TemporaryDirectory(prefix="chargectl-offline-") as scratch:
        # An absolute ledger path: the shed's own ledger file is never touched.
        daemon = Daemon(
            dataclasses.replace(shed, ledger=f"{scratch}/ledger.db"), Options(RealClock())
        )
        daemon.writer.close()
    daemon.shed = shed

    async def clients() -> None:  # pymodbus builds its clients inside a running loop
        for bus in shed.buses:
            pymodbus_factory(bus)().close()

    asyncio.run(clients())
    # ApiServer: an IPv4 `ThreadingHTTPServer`; the metrics server picks the address's family.
    socket.getaddrinfo(shed.api.host, shed.api.port, socket.AF_INET, socket.SOCK_STREAM)
    socket.getaddrinfo(
        shed.metrics.host, shed.metrics.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    return daemon
