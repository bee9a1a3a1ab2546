"""The controller daemon: the tick loop and its edges, in one TaskGroup.

    poll (every bus in parallel) -> sessions -> ControlCore.step -> writes -> metrics, API

Between ticks the meters are read every `control.meter_poll_s`; a new sample that shows a
circuit over its limit, or above what the last plan expects, runs a shed-only plan at once (it
may only open relays, lower offers and shrink masks), so a shed follows the meter's sample,
not the tick. With a tick longer than TAP_POLL_S the card readers are read between ticks too.

The loop owns no device knowledge: `ShedIO` (chargectl.adapters.modbus) turns driver readings into
an `Observation` and a `Decision` into writes. The clock is injected, so the same loop runs on
the edge box and on a virtual clock in replays and tests.

Start-up order is the safety order: buses connect; the kernel is compiled or loaded from its
cache; every device gets its watchdog and a fail-safe that is safe on its own; only then does
the first tick run, and only a tick can close a relay. Shutdown (SIGTERM, Ctrl-C) drives every
device to its fail-safe state before the process exits.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from chargectl.config.schema import Shed
from chargectl.control.core import OVERLOAD_TOLERANCE_A, Allocate, ControlCore
from chargectl.control.layout import FloatArray, Layout
from chargectl.firewatch.detectors import Finding, Kind, Severity
from chargectl.firewatch.watch import FireWatch
from chargectl.runtime.clock import Clock
from chargectl.runtime.contracts import (
    Reporter,
    SessionsAdapter,
    ShedIO,
    TickOutcome,
)
from chargectl.runtime.events import EventTracker
from chargectl.runtime.latches import LatchKeeper

log = logging.getLogger("chargectl")
# A meter sample this far above what the last plan expects is a surprise worth a plan between
# ticks (a load step the meter's window shows only in part, so not yet over the limit).
SURPRISE_A = 0.5
# The pile page asks for its taps to be read at least twice a second (it holds only the latest).
TAP_POLL_S = 0.4


# A held bay's session ends with the reason closest to its finding (sessions' fault names).
_HELD_WHY = {Kind.OVER_POWER: "over_power", Kind.SOCKET_HEAT: "over_temp"}


class Controller:
    def __init__(
        self,
        shed: Shed,
        layout: Layout,
        clock: Clock,
        *,
        io: ShedIO,
        allocate: Allocate,
        sessions: SessionsAdapter,
        reporters: list[Reporter] | None = None,
        latches: LatchKeeper | None = None,
    ) -> None:
        self.shed = shed
        self.layout = layout
        self.clock = clock
        self.io = io
        self.core = ControlCore(shed, layout, allocate)
        self.sessions = sessions
        self.reporters = reporters or []
        # The alarm and the held-out bays, kept in the ledger across a restart (None: in memory).
        self.latches = latches
        self.restored: list[str] = []  # a line per latch restored at start-up
        self.tracker = EventTracker(layout.topology)
        self.last: TickOutcome | None = None
        self.ticks = 0
        self.sheds_between_ticks = 0
        self._last_sample = np.full((layout.n_circuits, 3), np.nan)
        self._planning = asyncio.Lock()  # one plan and its writes at a time
        self.firewatch = (
            FireWatch([b.id for b in layout.bays], shed.firewatch)
            if shed.firewatch.enabled
            else None
        )

    async def start(self) -> None:
        await self.io.connect()
        await self.io.setup()
        first = await self.io.poll(self.clock.now(), slow=True)
        self.sessions.restore(first.counters_wh, self.clock.wall(), self.clock.now())
        if self.latches is not None:
            # Before the first tick: a latch staff have not cleared holds from the first plan.
            self.restored = self.latches.restore(self.core)
            self.tracker.restored(self.core.alarm)
        # Relays found closed (a restart while sockets charged) are taken as on, and not pinned.
        closed = np.array([first.relay_closed.get(b.id, False) for b in self.layout.bays])
        self.core.on = closed & self.layout.socket
        self.core.changed_at = np.where(closed, -np.inf, self.core.changed_at)

    async def tick(self) -> TickOutcome:
        async with self._planning:
            return await self._tick()

    async def _tick(self) -> TickOutcome:
        t0 = time.perf_counter()
        now, wall = self.clock.now(), self.clock.wall()
        poll = await self.io.poll(now, slow=False)
        for tap in poll.taps:
            self.sessions.on_tap(tap, now, wall)
        self.sessions.update(now, wall, poll, self.core)
        findings = self._watch(now, wall)
        demand = self.sessions.demand()
        decision = self.core.step(now, poll.observation, demand)
        self.sync_latches(wall)
        for note in decision.notes:
            log.warning(note)
        lamps = self.sessions.lamps(decision)
        await self.io.apply(decision, lamps)
        events = self.tracker.tick(
            poll.observation, decision, self.io.device_up(), self.sessions.drain(), findings
        )
        outcome = TickOutcome(
            now, wall, time.perf_counter() - t0, poll, decision, demand, lamps, events
        )
        self.last = outcome
        self.ticks += 1
        for r in self.reporters:
            try:
                r.report(outcome)
            except Exception:  # a reporter must never stop the control loop
                log.exception("reporter %s failed", type(r).__name__)
        return outcome

    def _watch(self, now: float, wall: float) -> tuple[Finding, ...]:
        """The fire-risk watch on this tick's sessions. A critical finding holds its bay out
        (the core opens its relay in this tick's step and keeps it open until staff clear it)
        and marks its card in the ledger (staff speak to the resident); nothing here raises a
        current or closes a relay."""
        if self.firewatch is None:
            return ()
        w = self.sessions.watch_inputs()
        # E-bike sockets only: a car draws kilowatts by design, and its wallbox has its own
        # protections (the detectors' thresholds are an e-bike charger's).
        socket = self.layout.socket
        running = [r if socket[j] else None for j, r in enumerate(w.running)]
        fault = None if w.fault is None else np.where(socket, w.fault, 0)
        found = tuple(self.firewatch.tick(now, running, w.power_w, w.temp_c, fault=fault, va=w.va))
        for f in found:  # the event log tells staff (outputs/reporters.py)
            if f.severity is Severity.CRITICAL:
                self.core.hold_out(self.layout.bay_index[f.bay], _HELD_WHY.get(f.kind, "fault"))
                self.sessions.flag_card(f, wall)
        return found

    def sync_latches(self, wall: float | None = None) -> None:
        """Write the latches that changed (set in a step, cleared by staff) to the ledger."""
        if self.latches is not None:
            self.latches.sync(self.core, self.clock.wall() if wall is None else wall)

    async def shed_on_sample(self, meter_a: FloatArray) -> bool:
        """If a new meter sample shows more than the plan expects on a circuit (over its
        limit, or above the last plan: a step that a meter's RMS window shows only in part
        at first), plan again now, shedding only (True)."""
        last = self.last
        if last is None:
            return False
        lay = self.layout
        read = ~np.isnan(meter_a)
        new = read & (meter_a != self._last_sample) & lay.circuit_phases
        self._last_sample = np.where(read, meter_a, self._last_sample)
        over = (meter_a > lay.limit_a + OVERLOAD_TOLERANCE_A) | (
            meter_a > last.decision.planned_a + SURPRISE_A
        )
        if not (new & over).any():
            return False
        async with self._planning:
            seen = last.poll.observation
            obs = dataclasses.replace(
                seen, meter_a=np.where(np.isnan(meter_a), seen.meter_a, meter_a)
            )
            decision = self.core.step(self.clock.now(), obs, last.demand, shed_only=True)
            self.sync_latches()
            for note in decision.notes:
                log.warning(note)
            await self.io.apply(decision, last.lamps, shed_only=True)
        self.sheds_between_ticks += 1
        return True

    async def watch_meters(self, stop: asyncio.Event) -> None:
        """Between ticks: read the meters every `meter_poll_s` and shed on a sample."""
        period = self.shed.control.meter_poll_s
        if period <= 0:
            return
        await self._every(period, stop, self._meter_watch, "meter watch")

    async def _meter_watch(self) -> bool:
        meter_a = await self.io.poll_meters()
        if meter_a is None:
            return False  # no meter can be read between ticks
        await self.shed_on_sample(meter_a)
        return True

    async def watch_taps(self, stop: asyncio.Event) -> None:
        """Between ticks longer than TAP_POLL_S: read the card readers, so that no tap is
        lost to the next one (a pile holds only its latest tap)."""
        if self.shed.control.tick_s <= TAP_POLL_S:
            return
        await self._every(TAP_POLL_S, stop, self._tap_watch, "tap watch")

    async def _tap_watch(self) -> bool:
        await self.io.poll_taps()
        return True

    async def _every(
        self, period: float, stop: asyncio.Event, job: Callable[[], Awaitable[bool]], what: str
    ) -> None:
        """Run `job` every `period` until `stop` or until it returns False; it outlives its
        own bugs (logged once a run of failures): the tick still does the work."""
        failing = False
        while not stop.is_set():
            try:
                if not await job():
                    return
                failing = False
            except Exception:
                if not failing:
                    log.exception("%s failed; it goes on (the tick still does its work)", what)
                failing = True
            await self.clock.sleep(period)

    async def run(self, stop: asyncio.Event, on_tick: Any = None) -> None:
        """Tick every `tick_s` until `stop` is set; a late tick is not made up for. The meters
        are watched between ticks meanwhile."""
        watchers = [
            asyncio.ensure_future(self.watch_meters(stop)),
            asyncio.ensure_future(self.watch_taps(stop)),
        ]
        try:
            await self._run(stop, on_tick)
        finally:
            for w in watchers:
                w.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)

    async def _run(self, stop: asyncio.Event, on_tick: Any = None) -> None:
        period = self.shed.control.tick_s
        deadline = self.clock.now()
        while not stop.is_set():
            await self.tick()
            if on_tick is not None:
                on_tick()
            deadline += period
            now = self.clock.now()
            if deadline < now:  # overran: skip to the next slot instead of bursting
                deadline = now + period - ((now - deadline) % period)
            sleeper = asyncio.ensure_future(self.clock.sleep(deadline - now))
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
            for f in (sleeper, stopper):
                f.cancel()

    async def shutdown(self) -> None:
        try:
            await self.io.failsafe()
        finally:
            await self.io.close()
