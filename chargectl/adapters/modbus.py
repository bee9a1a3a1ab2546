"""The Modbus edge of the control loop: drivers' readings in, a `Decision`'s writes out.

Lines are independent. Each tick starts one read task per line (the devices of a line in turn:
one request in flight per line, the bus enforces it) and waits for them only until its poll
budget; a line still busy then is a late line: its task goes on, what it reads is used by the
next tick, and its devices count as unseen (their worst case) meanwhile. A slow device delays
its own line, never the shedding elsewhere. A device that does not answer, or answers
nonsense, is down: its bays are marked so and the core counts them at their worst case. Errors
are never turned into values.

Writes go in waves across all lines, each wave bounded by the tick's budget: first everything
that lowers current (relays that open, wallbox offers that drop), then, only if every lowering
write was confirmed, everything that raises it (relays close one at a time, shed-wide, 20 ms
apart, so that no two chargers' inrush peaks meet); then fail-safe masks, shrink-first: every
pile's bits that go away are written before any pile gets a new bit, and new bits only once
every shrink was confirmed, so a crash between two writes never leaves masks that together
overload a circuit. Then lamps and heartbeats. Only what changed is written, and a write that
failed or was not sent is sent again next tick. Until a device confirms a command, the core is
told it is unsure (`Observation.command_unsure`) and every mask bit the pile may hold
(`failsafe_on`): it plans on the worse of what was written and what was meant.

A device that comes back after being down is set up again (watchdog, fail-safe) before
anything else is written to it: it may have lost power and its settings.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from typing import Any

import numpy as np

from chargectl.adapters.modbus_write import ShedWrites, Written
from chargectl.config.schema import Shed, TcpBus
from chargectl.control.layout import FloatArray, Layout
from chargectl.control.observe import FAULT_WALLBOX, Observation
from chargectl.drivers.bus import ClientFactory, ModbusBus
from chargectl.drivers.errors import DeviceError
from chargectl.drivers.factory import Driver, make_driver
from chargectl.drivers.readings import EvseHot, MeterReading, PileHot, Tap
from chargectl.drivers.roles import EvseRole, MeterRole, PileRole
from chargectl.drivers.template import Template
from chargectl.runtime.clock import Clock
from chargectl.runtime.contracts import Poll
from chargectl.runtime.contracts import Tap as CardTap

log = logging.getLogger("chargectl.io")
SETUP_RETRY_S = 2.0
POLL_SHARE = 0.6  # of tick_s: how long a tick waits for the lines' reads
TAP_STALE_S = 30.0  # a device away longer than this: the tap it shows on return is not new
FRESH_TICKS = 1.0 + POLL_SHARE  # ticks a reading may be old and still serve (at least)
Reading = PileHot | EvseHot | MeterReading | DeviceError


class ModbusShedIO(ShedWrites):
    def __init__(
        self,
        shed: Shed,
        layout: Layout,
        clock: Clock,
        client_factories: Mapping[str, ClientFactory] | None = None,
        templates: Mapping[str, Template] | None = None,
    ) -> None:
        self.shed = shed
        self.layout = layout
        self.clock = clock
        self.tick_s = shed.control.tick_s
        factories = client_factories or {}
        self.buses = {
            b.id: ModbusBus(b, clock, client_factory=factories.get(b.id)) for b in shed.buses
        }
        self.drivers: dict[str, Driver] = {
            d.id: make_driver(d, self.buses[d.bus], templates) for d in shed.devices
        }
        # The drivers by role: the adapter uses only what a role's protocol offers.
        self.piles: dict[str, PileRole] = {}
        self.evses: dict[str, EvseRole] = {}
        self.meters: dict[str, MeterRole] = {}
        for dev, drv in self.drivers.items():
            by_role: dict[str, Any] = {"pile": self.piles, "evse": self.evses}
            by_role.get(drv.role, self.meters)[dev] = drv
        self.on_bus: dict[str, list[str]] = {b: [] for b in self.buses}
        for d in shed.devices:
            self.on_bus[d.bus].append(d.id)
        self.meter_circuit = {
            m: c for c, m in enumerate(layout.meter_of) if m is not None
        }  # meter device id -> circuit index
        # Meters read between ticks: on a TCP line, or alone on their serial line.
        self.fast_meters = [
            m
            for m in self.meter_circuit
            if m in self.meters
            and (
                isinstance(shed.bus(shed.device(m).bus), TcpBus)
                or all(d in self.meter_circuit for d in self.on_bus[shed.device(m).bus])
            )
        ]
        # How old a reading may be and still serve a tick: a tick and its poll budget, or, on
        # a line where one unit's timeout (a dead meter being probed) holds the others back,
        # a tick and two timeouts. Older, its bays count as unseen (their worst case).
        self.fresh_s = {
            d.id: max(FRESH_TICKS * self.tick_s, self.tick_s + 2 * shed.bus(d.bus).timeout_s)
            for d in shed.devices
        }
        self.up: dict[str, bool] = {d: False for d in self.drivers}
        self.down_since: dict[str, float] = {}
        self.needs_setup: set[str] = set(self.drivers)
        self.written: dict[str, Written] = {d: Written() for d in self.drivers}
        self.decided_relays: dict[str, dict[int, bool]] = {}
        self.decided_setpoint: dict[str, float] = {}
        self.tap_seq: dict[str, int | None] = {}
        self.counters: dict[str, int | None] = {b.id: None for b in layout.bays}
        # A pile port's active power from its slow block: (when read, W or None if bad).
        self.power: dict[str, tuple[float, float | None]] = {}
        # ...and its socket temperature from the same block: (when read, C or None if bad).
        self.temp: dict[str, tuple[float, float | None]] = {}
        self.last_mask: dict[str, int] = {p: 0 for p in layout.pile_slices}
        # Slow blocks (energy, power, temperature) come due pile by pile, spread over
        # slow_poll_s: on an RS485 line, all of them in one tick would overrun it.
        self.next_slow: dict[str, float] = {}
        self.latest: dict[str, tuple[float, Reading]] = {}  # device -> (read started, reading)
        self.busy: dict[str, asyncio.Future[None]] = {}  # line -> its unfinished task
        self._errors: list[tuple[str, str]] = []
        self._tick_start = -math.inf
        self._pending_taps: list[CardTap] = []  # seen between ticks, for the next tick
        self._closing = asyncio.Lock()
        self._next_close_at = -math.inf

    # -- life cycle ----------------------------------------------------------------------
    async def connect(self) -> None:
        """Nothing to do up front: each bus connects (and reconnects) on its own."""

    async def setup(self) -> None:
        await self._per_line(self._setup, list(self.drivers))

    async def close(self) -> None:
        for task in list(self.busy.values()):
            task.cancel()
        for bus in self.buses.values():
            await bus.close()

    def device_up(self) -> dict[str, bool]:
        return dict(self.up)

    async def _setup(self, dev: str) -> None:
        wd = self.shed.control.watchdog_s
        w = self.written[dev]
        try:
            if dev in self.piles:
                mask = self.last_mask[dev]
                w.mask_possible |= mask  # it may land even if no answer comes back
                await self.piles[dev].setup(wd, mask, retry_for_s=SETUP_RETRY_S)
                self.written[dev] = Written(mask=mask, mask_possible=mask)
            elif dev in self.evses:
                zero = await self.evses[dev].setup(
                    wd, failsafe_current_a=0.0, current_a=0.0, retry_for_s=SETUP_RETRY_S
                )
                # A fail-safe current the box's installer set is read: only 0 A counts.
                self.written[dev] = Written(setpoint_a=0.0, failsafe_zero=zero)
        except DeviceError as exc:
            log.warning("%s: set-up failed (%s); retried when it answers", dev, exc)
            return
        self.needs_setup.discard(dev)

    # -- reading -------------------------------------------------------------------------
    async def poll(self, now: float, slow: bool) -> Poll:
        """Every device's hot block; slow blocks of the piles that are due (all with `slow`).
        Waits for the lines until the poll budget; a late line's readings serve next tick."""
        self._tick_start = now
        period = self.shed.control.slow_poll_s
        piles = list(self.layout.pile_slices)

        started = self.clock.now()

        def taken() -> float:
            """When a reply came, on the tick's time line (the reading's age counts from it)."""
            return now + (self.clock.now() - started)

        async def read(dev: str) -> None:
            was_up = self.up[dev]
            try:
                if dev in self.piles:
                    drv = self.piles[dev]
                    self.latest[dev] = (taken(), await drv.read_hot())
                    self.up[dev] = True
                    if slow or now >= self.next_slow.get(dev, -math.inf):
                        # After a read of all, each pile's next one is offset by its rank.
                        rank = piles.index(dev) + 1 if slow else len(piles)
                        self.next_slow[dev] = now + period * rank / len(piles)
                        await self._read_slow(dev, drv, taken)
                elif dev in self.evses:
                    self.latest[dev] = (taken(), await self.evses[dev].read_hot())
                else:
                    self.latest[dev] = (taken(), await self.meters[dev].read())
                self.up[dev] = True
            except DeviceError as exc:
                self.latest[dev] = (taken(), exc)
                self.up[dev] = False
                self._errors.append((dev, type(exc).__name__))
                if was_up:
                    self.needs_setup.add(dev)
                    self.down_since[dev] = now
            if self.up[dev] and not was_up:
                self.needs_setup.add(dev)
                # A device back after a blip (a timeout or two) keeps its taps: a resident
                # who tapped meanwhile is still served. One away for long may have rebooted
                # and holds a tap nobody can vouch for: what it shows now is not a new tap.
                if now - self.down_since.get(dev, now) > TAP_STALE_S:
                    self.tap_seq.pop(dev, None)

        await self._per_line(read, list(self.drivers), now + POLL_SHARE * self.tick_s)
        return self._observe(now)

    async def _read_slow(self, dev: str, drv: PileRole, taken: Callable[[], float]) -> None:
        """A pile's slow blocks. Their failure is counted, and leaves the pile up: its hot
        block, what control needs, has just answered."""
        try:
            s = await drv.read_slow()
        except DeviceError as exc:
            self._errors.append((dev, type(exc).__name__))
            return
        read_at = taken()
        self._errors.extend((dev, "BadField") for _ in s.bad)
        for k, bay in enumerate(self.layout.bays[self.layout.pile_slices[dev]]):
            self.counters[bay.id] = s.energy_wh[k]  # None where it was bad
            w = s.power_w[k]
            self.power[bay.id] = (read_at, None if w is None else float(w))
            self.temp[bay.id] = (read_at, s.temperature_c[k])

    async def poll_taps(self) -> None:
        """Read the card readers now (between ticks): the pile page asks for two reads a
        second to see every tap, whatever the tick. New taps wait for the next tick."""
        readers = [
            d
            for d in self.drivers
            if self.up[d]
            and d in self.tap_seq
            and (d in self.piles or d in self.evses)
            and self.shed.device(d).bus not in self.busy
        ]

        async def read(dev: str) -> None:
            drv: PileRole | EvseRole = self.piles[dev] if dev in self.piles else self.evses[dev]
            try:
                tap = await drv.read_tap()
            except DeviceError as exc:
                self._errors.append((dev, type(exc).__name__))
                return
            bay_of = _wallbox_bay(dev) if dev in self.evses else _pile_bay(dev)
            new = self._new_tap(dev, tap, bay_of)
            if new is not None:
                self._pending_taps.append(new)

        await asyncio.gather(
            *(self._line(read, [d for d in self.on_bus[b] if d in readers]) for b in self.buses)
        )

    async def poll_meters(self) -> FloatArray | None:
        """Read the circuits' meters now (between ticks); [C, 3] amps, NaN where not read.
        None when no meter can be read between ticks."""
        if not self.fast_meters:
            return None
        now = self.clock.now()
        # A meter that is down is left to the tick (a dead one would hold its line for a
        # whole timeout every time), and so is a late line.
        meters = [
            m for m in self.fast_meters if self.up[m] and self.shed.device(m).bus not in self.busy
        ]

        async def read(dev: str) -> None:
            try:
                self.latest[dev] = (now, await self.meters[dev].read())
            except DeviceError as exc:
                self.up[dev] = False
                self.needs_setup.add(dev)
                self._errors.append((dev, type(exc).__name__))
                self.latest[dev] = (now, exc)

        await asyncio.gather(
            *(self._line(read, [m for m in self.on_bus[b] if m in meters]) for b in self.buses)
        )
        out = np.full((self.layout.n_circuits, 3), np.nan)
        for dev in meters:
            t, r = self.latest.get(dev, (-math.inf, None))
            if t == now and isinstance(r, MeterReading):
                self._take_meter(dev, r, out)
        return out

    def _observe(self, now: float) -> Poll:
        """The tick's observation from each device's latest reading, if it is fresh."""
        lay = self.layout
        obs = Observation.empty(lay)
        obs.command_unsure = np.zeros(lay.n_bays, dtype=np.bool_)
        obs.failsafe_on = np.zeros(lay.n_bays, dtype=np.bool_)
        poll = Poll(observation=obs)
        poll.errors, self._errors = self._errors, []
        poll.taps, self._pending_taps = self._pending_taps, []
        for dev in self.drivers:
            self._unsure(dev, obs)
            t, reading = self.latest.get(dev, (-math.inf, None))
            if now - t > self.fresh_s[dev] or isinstance(reading, DeviceError):
                continue
            if isinstance(reading, PileHot):
                self._take_pile(dev, reading, poll)
            elif isinstance(reading, EvseHot):
                self._take_evse(dev, reading, poll)
            elif isinstance(reading, MeterReading):
                self._take_meter(dev, reading, obs.meter_a)
        for bay in lay.bays:
            poll.counters_wh[bay.id] = self.counters[bay.id]
        return poll

    def _unsure(self, dev: str, obs: Observation) -> None:
        """What the core must assume of a device's commands: unconfirmed ones either way,
        every mask bit it may hold, a fail-safe current not known to be 0."""
        assert obs.command_unsure is not None and obs.failsafe_on is not None
        w = self.written[dev]
        if dev in self.layout.pile_slices:
            sl = self.layout.pile_slices[dev]
            decided = self.decided_relays.get(dev, {})
            for k in range(sl.stop - sl.start):
                want = decided.get(k + 1)
                obs.command_unsure[sl.start + k] = want is not None and w.relays.get(k + 1) != want
                obs.failsafe_on[sl.start + k] = bool((w.mask_possible >> k) & 1)
        elif dev in self.layout.evse_index:
            j = self.layout.evse_index[dev]
            want_a = self.decided_setpoint.get(dev)
            obs.command_unsure[j] = want_a is not None and w.setpoint_a != want_a
            obs.failsafe_on[j] = not w.failsafe_zero

    def _take_pile(self, dev: str, hot: PileHot, poll: Poll) -> None:
        obs = poll.observation
        sl = self.layout.pile_slices[dev]
        obs.bay_up[sl] = True
        obs.bay_current_a[sl] = hot.current_a
        obs.bay_fault[sl] = hot.fault
        if hot.alarm is not None and obs.alarm is None:
            obs.alarm, obs.alarm_at = hot.alarm, dev
        if hot.supply_fault:
            obs.pile_alarms[dev] = "supply_fault"
        elif hot.over_temp:
            obs.pile_alarms[dev] = "pile_overtemp"
        volts = hot.voltage_v or self.shed.shed.voltage_v
        fresh_for = 2 * self.shed.control.slow_poll_s
        for k, bay in enumerate(self.layout.bays[sl]):
            poll.relay_closed[bay.id] = hot.relay_closed[k]
            # The session rules want active power: the pile's own W from its slow block while
            # it is recent; current x voltage (VA, too high for a charger without power-factor
            # correction) is handed over beside it as the fallback.
            at, watts = self.power.get(bay.id, (-math.inf, None))
            poll.power_w[bay.id] = watts if self._tick_start - at <= fresh_for else None
            poll.va[bay.id] = hot.current_a[k] * volts
            at, temp = self.temp.get(bay.id, (-math.inf, None))
            poll.temp_c[bay.id] = temp if self._tick_start - at <= fresh_for else None
        poll.errors.extend((dev, "BadField") for _ in hot.bad)
        if not hot.tap_bad:  # a bad tap is no tap, and no new "seen before we looked" either
            self._take_tap(dev, hot.tap, _pile_bay(dev), poll)

    def _take_evse(self, dev: str, hot: EvseHot, poll: Poll) -> None:
        obs = poll.observation
        j = self.layout.evse_index[dev]
        obs.bay_up[j] = True
        obs.bay_current_a[j] = max(hot.current_a)
        obs.wallbox_plugged[j] = hot.vehicle_connected
        drv = self.evses[dev]
        # The config's maximum, lowered to the box's own (its last good one if this is bad).
        obs.wallbox_hw_max_a[j] = drv.max_current_a
        obs.bay_fault[j] = FAULT_WALLBOX if hot.faulted else 0
        poll.relay_closed[dev] = hot.charging
        poll.power_w[dev] = None if hot.power_w is None else float(hot.power_w)
        poll.va[dev] = sum(hot.current_a) * self.shed.shed.voltage_v
        self.counters[dev] = hot.energy_wh
        poll.plugged[dev] = hot.vehicle_connected
        poll.errors.extend((dev, "BadField") for _ in hot.bad)
        if not hot.tap_bad:
            self._take_tap(dev, hot.tap, _wallbox_bay(dev), poll)

    def _take_meter(self, dev: str, r: MeterReading, meter_a: FloatArray) -> None:
        c = self.meter_circuit.get(dev)
        if c is not None and dev in self.meters:
            for i, phase in enumerate(self.meters[dev].device.phases):
                meter_a[c, phase - 1] = r.amps[i]

    def _take_tap(
        self, dev: str, tap: Tap | None, bay_of: Callable[[int], str], poll: Poll
    ) -> None:
        new = self._new_tap(dev, tap, bay_of)
        if new is not None:
            poll.taps.append(new)

    def _new_tap(self, dev: str, tap: Tap | None, bay_of: Callable[[int], str]) -> CardTap | None:
        """The tap a reading shows, if it is one not seen yet."""
        seq = None if tap is None else tap.seq
        if dev not in self.tap_seq:
            self.tap_seq[dev] = seq  # what was there before we looked is not a new tap
            return None
        if tap is None or seq == self.tap_seq[dev]:
            return None
        self.tap_seq[dev] = seq
        return CardTap(bay_of(tap.port), tap.uid)

    async def _guard(self, dev: str, aw: Awaitable[object]) -> bool:
        try:
            await aw
        except DeviceError as exc:
            log.debug("%s: write failed: %s", dev, exc)
            return False
        return True

    async def _line(self, fn: Callable[[str], Awaitable[None]], devices: Iterable[str]) -> None:
        for dev in devices:
            await fn(dev)

    async def _per_line(
        self,
        fn: Callable[[str], Awaitable[None]],
        devices: Collection[str],
        deadline: float | None = None,
    ) -> set[str]:
        """Run `fn` on the devices: lines in parallel, the devices of a line in turn. With a
        `deadline`, lines still running then go on in the background and are returned (late);
        a line busy with an earlier late task is skipped (and returned too)."""
        wanted = set(devices)
        tasks: dict[str, asyncio.Future[None]] = {}
        late: set[str] = set()
        for bus, on_line in self.on_bus.items():
            devs = [d for d in on_line if d in wanted]
            if not devs:
                continue
            if bus in self.busy and deadline is not None:
                late.add(bus)
                continue
            tasks[bus] = asyncio.ensure_future(self._line(fn, devs))
        if deadline is None:
            await asyncio.gather(*tasks.values())
            return late
        await self._until(set(tasks.values()), deadline)
        for bus, task in tasks.items():
            if task.done():
                task.result()  # a bug in fn is not swallowed
            else:
                late.add(bus)
                self.busy[bus] = task
                task.add_done_callback(functools.partial(self._line_done, bus))
        return late

    def _line_done(self, bus: str, task: asyncio.Future[None]) -> None:
        self.busy.pop(bus, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("line %s: a late task failed", bus, exc_info=task.exception())

    async def _until(self, tasks: set[asyncio.Future[None]], deadline: float) -> None:
        """Wait for `tasks` until the clock reaches `deadline`."""
        if not tasks:
            return
        sleeper = asyncio.ensure_future(self.clock.sleep(deadline - self.clock.now()))
        pending = set(tasks)
        try:
            while pending and not sleeper.done():
                done, _ = await asyncio.wait(pending | {sleeper}, return_when="FIRST_COMPLETED")
                pending -= done
        finally:
            sleeper.cancel()


def _pile_bay(pile: str) -> Callable[[int], str]:
    return lambda port: f"{pile}/{port}"


def _wallbox_bay(wallbox: str) -> Callable[[int], str]:
    return lambda _port: wallbox
