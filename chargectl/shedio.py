"""The Modbus edge of the control loop: drivers' readings in, a `Decision`'s writes out.

Lines are polled in parallel, the devices on one line in turn (one request in flight per
line: the bus enforces it). A device that does not answer, or answers nonsense, is down for
this tick: its bays are marked so and the core counts them at their worst case. Errors are
never turned into values.

Writes go in three waves across all lines: first everything that lowers current (relays that
open, wallbox setpoints that drop), then everything that raises it, then fail-safe masks,
lamps and the heartbeats. Only what changed is written; a failed write is forgotten so it is
sent again next tick. A device that comes back after being down is set up again (watchdog,
fail-safe) before anything else is written to it: it may have lost power and its settings.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

from chargectl.clock import Clock
from chargectl.config import Shed
from chargectl.control.layout import Layout
from chargectl.control.observe import FAULT_WALLBOX, Decision, Observation
from chargectl.daemon import Poll, Tap
from chargectl.drivers.bus import ClientFactory, ModbusBus
from chargectl.drivers.errors import DeviceError
from chargectl.drivers.evse import EvseDriver
from chargectl.drivers.factory import Driver, make_driver
from chargectl.drivers.meter import MeterDriver
from chargectl.drivers.pile import PileDriver
from chargectl.drivers.readings import EvseHot, PileHot

log = logging.getLogger("chargectl.io")
SETUP_RETRY_S = 2.0


@dataclass
class _Written:
    """What was last written to a device and acknowledged."""

    relays: dict[int, bool] = field(default_factory=dict)
    lamps: dict[int, int] = field(default_factory=dict)
    mask: int | None = None
    setpoint_a: float | None = None
    lamp: int | None = None


class ModbusShedIO:
    def __init__(
        self,
        shed: Shed,
        layout: Layout,
        clock: Clock,
        client_factories: Mapping[str, ClientFactory] | None = None,
    ) -> None:
        self.shed = shed
        self.layout = layout
        self.clock = clock
        factories = client_factories or {}
        self.buses = {
            b.id: ModbusBus(b, clock, client_factory=factories.get(b.id)) for b in shed.buses
        }
        self.drivers: dict[str, Driver] = {
            d.id: make_driver(d, self.buses[d.bus]) for d in shed.devices
        }
        self.on_bus: dict[str, list[str]] = {b: [] for b in self.buses}
        for d in shed.devices:
            self.on_bus[d.bus].append(d.id)
        self.meter_circuit = {
            m: c for c, m in enumerate(layout.meter_of) if m is not None
        }  # meter device id -> circuit index
        self.up: dict[str, bool] = {d: False for d in self.drivers}
        self.needs_setup: set[str] = set(self.drivers)
        self.written: dict[str, _Written] = {d: _Written() for d in self.drivers}
        self.tap_seq: dict[str, int | None] = {}
        self.counters: dict[str, int | None] = {b.id: None for b in layout.bays}
        self.power: dict[str, float | None] = {b.id: None for b in layout.bays}
        self.last_mask: dict[str, int] = {p: 0 for p in layout.pile_slices}
        # Slow blocks (energy, power, temperature) come due pile by pile, spread over
        # slow_poll_s: on an RS485 line, all of them in one tick would overrun it.
        self.next_slow: dict[str, float] = {}

    # -- life cycle ----------------------------------------------------------------------
    async def connect(self) -> None:
        """Nothing to do up front: each bus connects (and reconnects) on its own."""

    async def setup(self) -> None:
        await self._per_line(self._setup, list(self.drivers))

    async def close(self) -> None:
        for bus in self.buses.values():
            await bus.close()

    def device_up(self) -> dict[str, bool]:
        return dict(self.up)

    async def _setup(self, dev: str) -> None:
        drv = self.drivers[dev]
        wd = self.shed.control.watchdog_s
        try:
            if isinstance(drv, PileDriver):
                await drv.setup(wd, self.last_mask[dev], retry_for_s=SETUP_RETRY_S)
                self.written[dev] = _Written(mask=self.last_mask[dev])
            elif isinstance(drv, EvseDriver):
                await drv.setup(
                    wd, failsafe_current_a=0.0, current_a=0.0, retry_for_s=SETUP_RETRY_S
                )
                self.written[dev] = _Written(setpoint_a=0.0)
        except DeviceError as exc:
            log.warning("%s: set-up failed (%s); retried when it answers", dev, exc)
            return
        self.needs_setup.discard(dev)

    # -- reading -------------------------------------------------------------------------
    async def poll(self, now: float, slow: bool) -> Poll:
        """Every device's hot block; slow blocks of the piles that are due (all with `slow`)."""
        lay = self.layout
        period = self.shed.control.slow_poll_s
        piles = list(lay.pile_slices)
        obs = Observation.empty(lay)
        poll = Poll(observation=obs)

        async def read(dev: str) -> None:
            drv = self.drivers[dev]
            was_up = self.up[dev]
            try:
                if isinstance(drv, PileDriver):
                    self._take_pile(dev, await drv.read_hot(), poll)
                    if slow or now >= self.next_slow.get(dev, -math.inf):
                        s = await drv.read_slow()
                        # After a read of all, each pile's next one is offset by its rank.
                        rank = piles.index(dev) + 1 if slow else len(piles)
                        self.next_slow[dev] = now + period * rank / len(piles)
                        sl = lay.pile_slices[dev]
                        for k, bay in enumerate(lay.bays[sl]):
                            self.counters[bay.id] = s.energy_wh[k]
                            self.power[bay.id] = float(s.power_w[k])
                elif isinstance(drv, EvseDriver):
                    self._take_evse(dev, await drv.read_hot(), poll)
                elif isinstance(drv, MeterDriver):
                    r = await drv.read()
                    c = self.meter_circuit.get(dev)
                    if c is not None:
                        for i, phase in enumerate(drv.device.phases):
                            obs.meter_a[c, phase - 1] = r.amps[i]
                self.up[dev] = True
            except DeviceError as exc:
                self.up[dev] = False
                poll.errors.append((dev, type(exc).__name__))
                if was_up:
                    self.needs_setup.add(dev)
            if self.up[dev] and not was_up:
                self.needs_setup.add(dev)
                self.tap_seq.pop(dev, None)  # a device back from power-off restarts its taps

        await self._per_line(read, list(self.drivers))
        for bay in lay.bays:
            poll.counters_wh[bay.id] = self.counters[bay.id]
        return poll

    def _take_pile(self, dev: str, hot: PileHot, poll: Poll) -> None:
        obs = poll.observation
        sl = self.layout.pile_slices[dev]
        obs.bay_up[sl] = True
        obs.bay_current_a[sl] = hot.current_a
        obs.bay_fault[sl] = hot.fault
        if hot.alarm is not None and obs.alarm is None:
            obs.alarm, obs.alarm_at = hot.alarm, dev
        for k, bay in enumerate(self.layout.bays[sl]):
            poll.relay_closed[bay.id] = hot.relay_closed[k]
            # Power each tick from the hot block (current x supply voltage); the slow block's
            # power is the pile's own figure, fresher than nothing when the voltage is absent.
            poll.power_w[bay.id] = hot.current_a[k] * (hot.voltage_v or self.shed.shed.voltage_v)
        self._take_tap(dev, hot.tap, lambda port: f"{dev}/{port}", poll)

    def _take_evse(self, dev: str, hot: EvseHot, poll: Poll) -> None:
        obs = poll.observation
        j = self.layout.evse_index[dev]
        obs.bay_up[j] = True
        obs.bay_current_a[j] = max(hot.current_a)
        obs.wallbox_plugged[j] = hot.vehicle_connected
        obs.wallbox_hw_max_a[j] = min(hot.hw_max_current_a, self.shed.device(dev).max_current_a)
        obs.bay_fault[j] = FAULT_WALLBOX if hot.faulted else 0
        poll.relay_closed[dev] = hot.charging
        poll.power_w[dev] = float(hot.power_w)
        self.counters[dev] = hot.energy_wh
        poll.plugged[dev] = hot.vehicle_connected
        self._take_tap(dev, hot.tap, lambda _port: dev, poll)

    def _take_tap(self, dev: str, tap: object, bay_of: Callable[[int], str], poll: Poll) -> None:
        seq = getattr(tap, "seq", None)
        if dev not in self.tap_seq:
            self.tap_seq[dev] = seq  # what was there before we looked is not a new tap
            return
        if seq is not None and seq != self.tap_seq[dev]:
            self.tap_seq[dev] = seq
            poll.taps.append(Tap(bay_of(tap.port), tap.uid))  # type: ignore[attr-defined]

    # -- writing -------------------------------------------------------------------------
    async def apply(self, decision: Decision, lamps: Mapping[str, int]) -> None:
        lay = self.layout
        ready = [d for d in self.drivers if self.up[d]]
        pending = [d for d in ready if d in self.needs_setup]
        if pending:
            await self._per_line(self._setup, pending)
        ready = [d for d in ready if d not in self.needs_setup]
        relays: dict[str, dict[int, bool]] = {}
        setpoints: dict[str, float] = {}
        for dev in ready:
            drv = self.drivers[dev]
            if isinstance(drv, PileDriver):
                sl = lay.pile_slices[dev]
                relays[dev] = {k + 1: bool(on) for k, on in enumerate(decision.relay_on[sl])}
            elif isinstance(drv, EvseDriver):
                a = float(decision.setpoint_a[lay.evse_index[dev]])
                setpoints[dev] = 0.0 if a < 6.0 else math.floor(min(a, drv.max_current_a) * 10) / 10

        async def lower(dev: str) -> None:
            if dev in relays:
                await self._relays(dev, {p: v for p, v in relays[dev].items() if not v})
            elif dev in setpoints:
                w = self.written[dev].setpoint_a
                if w is None or setpoints[dev] < w:
                    await self._setpoint(dev, setpoints[dev])

        async def raise_(dev: str) -> None:
            if dev in relays:
                await self._relays(dev, {p: v for p, v in relays[dev].items() if v})
            elif dev in setpoints and setpoints[dev] != self.written[dev].setpoint_a:
                await self._setpoint(dev, setpoints[dev])

        async def rest(dev: str) -> None:
            drv = self.drivers[dev]
            w = self.written[dev]
            if isinstance(drv, PileDriver):
                mask = decision.failsafe_mask.get(dev, 0)
                if mask != w.mask:
                    await self._guard(dev, drv.set_failsafe_mask(mask))
                    w.mask = mask
                    self.last_mask[dev] = mask
                sl = lay.pile_slices[dev]
                want = {k + 1: int(lamps.get(b.id, 0)) for k, b in enumerate(lay.bays[sl])}
                changed = {p: v for p, v in want.items() if w.lamps.get(p) != v}
                if changed and await self._guard(dev, drv.write_indicators(changed)):
                    w.lamps.update(changed)
                await self._guard(dev, drv.heartbeat())
            elif isinstance(drv, EvseDriver):
                lamp = int(lamps.get(dev, 0))
                if lamp != w.lamp and await self._guard(dev, drv.set_indicator(lamp)):
                    w.lamp = lamp
                await self._guard(dev, drv.heartbeat())

        await self._per_line(lower, ready)
        await self._per_line(raise_, ready)
        await self._per_line(rest, ready)

    async def _relays(self, dev: str, want: Mapping[int, bool]) -> None:
        w = self.written[dev]
        changed = {p: v for p, v in want.items() if w.relays.get(p) != v}
        if not changed:
            return
        drv = self.drivers[dev]
        assert isinstance(drv, PileDriver)
        if await self._guard(dev, drv.write_relays(changed)):
            w.relays.update(changed)
        else:
            for p in changed:
                w.relays.pop(p, None)

    async def _setpoint(self, dev: str, amps: float) -> None:
        drv = self.drivers[dev]
        assert isinstance(drv, EvseDriver)
        ok = await self._guard(dev, drv.set_current(amps))
        self.written[dev].setpoint_a = amps if ok else None

    async def _guard(self, dev: str, aw: Awaitable[object]) -> bool:
        try:
            await aw
        except DeviceError as exc:
            log.debug("%s: write failed: %s", dev, exc)
            return False
        return True

    async def _per_line(self, fn: Callable[[str], Awaitable[None]], devices: Iterable[str]) -> None:
        """Run `fn` on the devices: lines in parallel, the devices of a line in turn."""
        wanted = set(devices)

        async def line(bus: str) -> None:
            for dev in self.on_bus[bus]:
                if dev in wanted:
                    await fn(dev)

        await asyncio.gather(*(line(b) for b in self.buses))

    # -- staff and shutdown -------------------------------------------------------------
    async def reset_fault(self, bay: str) -> None:
        b = self.layout.bays[self.layout.bay_index[bay]]
        drv = self.drivers[b.device]
        if isinstance(drv, PileDriver) and b.port is not None:
            await drv.fault_reset(b.port)

    async def failsafe(self) -> None:
        """Leave every device as its fail-safe would: piles at their masks, wallboxes paused."""

        async def one(dev: str) -> None:
            drv = self.drivers[dev]
            if isinstance(drv, PileDriver):
                mask = self.last_mask[dev]
                want = {p: bool((mask >> (p - 1)) & 1) for p in range(1, drv.ports + 1)}
                await self._guard(dev, drv.write_relays(want))
            elif isinstance(drv, EvseDriver):
                await self._guard(dev, drv.set_current(0.0))

        await self._per_line(one, [d for d in self.drivers if self.up[d]])
