"""The daemon assembled from a `Shed`: used by `chargectl run`, the demo and the tests.

Everything is built here once and torn down in reverse order; the clock and the Modbus client
factories are injectable, so the same assembly runs against real lines, the simulator over
loopback, or in-memory lines on a virtual clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chargectl.alloc.allocator import warm
from chargectl.api import ApiServer, Command
from chargectl.clock import Clock, RealClock
from chargectl.config import Shed
from chargectl.control.allocation import make_allocator
from chargectl.control.layout import build_layout
from chargectl.daemon import Controller, Reporter
from chargectl.drivers.bus import ClientFactory
from chargectl.metrics import ShedMetrics, stop
from chargectl.reporting import EventLog, MetricsReporter, StatusReporter
from chargectl.sdnotify import Notifier
from chargectl.sessionlink import SessionLink
from chargectl.sessions.errors import UnknownBay
from chargectl.sessions.manager import SessionManager
from chargectl.sessions.writer import LedgerWriter
from chargectl.shedio import ModbusShedIO

if TYPE_CHECKING:
    from chargectl.mqtt import MqttLink

log = logging.getLogger("chargectl")


@dataclass
class Options:
    clock: Clock = field(default_factory=RealClock)
    client_factories: Mapping[str, ClientFactory] | None = None
    serve_metrics: bool = True
    serve_api: bool = True
    extra_reporters: list[Reporter] = field(default_factory=list)
    on_started: Callable[[Daemon], None] | None = None


class Daemon:
    """The parts of a running daemon, for the commands and the tests to look at."""

    def __init__(self, shed: Shed, options: Options) -> None:
        self.shed = shed
        self.options = options
        self.clock = options.clock
        self.layout = build_layout(shed)
        self.allocator = make_allocator(self.layout)
        self.io = ModbusShedIO(shed, self.layout, self.clock, options.client_factories)
        self.writer = LedgerWriter(shed.ledger_path())
        self.sessions = SessionManager(shed.sessions, self.writer, [b.id for b in self.layout.bays])
        self.link = SessionLink(self.sessions, self.layout)
        self.metrics = ShedMetrics(shed)
        self.events = EventLog(self.link, self.io)
        self.api: ApiServer | None = None
        self.status = StatusReporter(shed.shed.name, self.layout, self.io, None)
        metrics_reporter = MetricsReporter(self.metrics, self.layout, self.io, self.link)
        reporters: list[Reporter] = [metrics_reporter, self.status, self.events]
        self.mqtt: MqttLink | None = None
        if shed.mqtt.host is not None:
            from chargectl import mqtt  # aiomqtt and paho only when MQTT is on

            reporter, self.mqtt = mqtt.build(
                shed,
                self.layout,
                self.clock,
                self.commands(),
                device_up=self.io.device_up,
                taps=lambda: self.events.last_taps,
                settled=lambda: metrics_reporter.last_events.settled,
            )
            reporters.append(reporter)  # after the metrics and the event log: it reads theirs
        reporters.extend(options.extra_reporters)
        self.controller = Controller(
            shed,
            self.layout,
            self.clock,
            io=self.io,
            allocate=self.allocator,
            sessions=self.link,
            reporters=reporters,
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
        self.events.add(f"staff cleared alarm ({was or 'none'})")
        return 200, {"cleared": was is not None}

    async def _clear_fault(self, body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        bay = body.get("bay")
        if not isinstance(bay, str) or bay not in self.layout.bay_index:
            return 404, {"error": f"unknown bay {bay!r}"}
        await self.io.reset_fault(bay)
        self.controller.core.clear_welded(self.layout.bay_index[bay])
        self.events.add(f"staff cleared the fault at {bay}")
        return 200, {"cleared": True}

    # -- life -------------------------------------------------------------------------------
    async def run(self, stop_event: asyncio.Event) -> None:
        t0 = time.perf_counter()
        notifier = Notifier()
        server = thread = None
        mqtt_stop = asyncio.Event()  # its own: "offline" goes out after the fail-safe writes
        mqtt_task: asyncio.Task[None] | None = None
        self.writer.start()
        try:
            # The kernel is compiled (or loaded from numba's cache) before anything is written.
            # In a worker thread: a cold compile takes seconds and the loop (the API, a
            # simulator in the same process) stays responsive meanwhile.
            self.warm_s = await asyncio.to_thread(warm)
            if self.options.serve_metrics:
                server, thread = self.metrics.serve(self.shed.metrics.host, self.shed.metrics.port)
                self.metrics_port = int(server.server_port)
            if self.options.serve_api:
                self.api = ApiServer(
                    self.shed.api.host, self.shed.api.port, asyncio.get_running_loop()
                )
                for path, command in self.commands().items():
                    self.api.route(f"/{path}", command)
                self.status.api = self.api
                self.api.start()
            if self.mqtt is not None:
                mqtt_task = asyncio.create_task(self.mqtt.run(mqtt_stop), name="mqtt")
            await self.controller.start()
            self.first_write_s = time.perf_counter() - t0
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
                await self.controller.shutdown()
            except Exception:
                log.exception("could not leave every device in its fail-safe state")
            if mqtt_task is not None:
                mqtt_stop.set()
                try:
                    await asyncio.wait_for(mqtt_task, 15)
                except Exception:
                    log.exception("the MQTT link did not stop cleanly")
            self.writer.close()
            if self.api is not None:
                self.api.close()
            if server is not None and thread is not None:
                stop(server, thread)
