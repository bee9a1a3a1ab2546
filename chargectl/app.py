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
from typing import Any

from chargectl.alloc.allocator import warm
from chargectl.api import ApiServer
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
        reporters: list[Reporter] = [
            MetricsReporter(self.metrics, self.layout, self.io, self.link),
            self.status,
            self.events,
            *options.extra_reporters,
        ]
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
                self.api.route("/sessions/stop", self._stop_session)
                self.api.route("/alarm/clear", self._clear_alarm)
                self.api.route("/bays/clear-fault", self._clear_fault)
                self.status.api = self.api
                self.api.start()
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
            self.writer.close()
            if self.api is not None:
                self.api.close()
            if server is not None and thread is not None:
                stop(server, thread)
