"""The write side of the Modbus edge: a `Decision`'s writes in waves (lowering first, then
raising, then fail-safe masks shrink-first, then lamps and heartbeats), and the staff's and
shutdown's writes. The module docstring of `chargectl.adapters.modbus` says why each wave is
ordered so. Only role protocols are used (drivers.roles): never a concrete driver class.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from chargectl.config.schema import Shed
from chargectl.control.layout import Layout
from chargectl.control.observe import Decision
from chargectl.drivers.roles import EvseRole, PileRole
from chargectl.runtime.clock import Clock

WRITES_END = 0.95  # of tick_s after the tick's start: when its write waves stop waiting
WAVE_MIN = 0.05  # of tick_s: the least any one wave is given
CLOSE_SPACING_S = 0.02  # between two relay closes, shed-wide: inrush peaks never meet


@dataclass
class Written:
    """What a device confirmed, and what it may hold where a write went unconfirmed."""

    relays: dict[int, bool] = field(default_factory=dict)
    lamps: dict[int, int] = field(default_factory=dict)
    mask: int | None = None  # confirmed; None: unknown
    mask_possible: int = -1  # every bit that may be set (-1: all, never confirmed)
    setpoint_a: float | None = None
    failsafe_zero: bool = False  # a wallbox's fail-safe current of 0 is confirmed
    lamp: int | None = None


class ShedWrites:
    """The writes of `ModbusShedIO` (its state lives there)."""

    shed: Shed
    layout: Layout
    clock: Clock
    tick_s: float
    piles: dict[str, PileRole]
    evses: dict[str, EvseRole]
    up: dict[str, bool]
    needs_setup: set[str]
    written: dict[str, Written]
    decided_relays: dict[str, dict[int, bool]]
    decided_setpoint: dict[str, float]
    last_mask: dict[str, int]
    drivers: Mapping[str, object]
    _tick_start: float
    _next_close_at: float

    if TYPE_CHECKING:
        import asyncio

        _closing: asyncio.Lock

        async def _setup(self, dev: str) -> None: ...
        async def _guard(self, dev: str, aw: Awaitable[object]) -> bool: ...
        async def _per_line(
            self,
            fn: Callable[[str], Awaitable[None]],
            devices: Collection[str],
            deadline: float | None = None,
        ) -> set[str]: ...

    # -- writing -------------------------------------------------------------------------
    async def apply(
        self, decision: Decision, lamps: Mapping[str, int], *, shed_only: bool = False
    ) -> None:
        """The decision's writes, in waves (see the module's docstring). `shed_only`: a shed
        between ticks: lowering writes and mask shrinks only."""
        lay = self.layout
        end = max(self._tick_start + WRITES_END * self.tick_s, self.clock.now())
        ready = [d for d in self.drivers if self.up[d]]
        pending = [d for d in ready if d in self.needs_setup]
        if pending and not shed_only:
            await self._per_line(self._setup, pending, self._wave_end(end))
        ready = [d for d in ready if d not in self.needs_setup]
        relays: dict[str, dict[int, bool]] = {}
        setpoints: dict[str, float] = {}
        for dev in ready:
            if dev in lay.pile_slices:
                sl = lay.pile_slices[dev]
                relays[dev] = {k + 1: bool(on) for k, on in enumerate(decision.relay_on[sl])}
            elif dev in lay.evse_index:
                setpoints[dev] = float(decision.setpoint_a[lay.evse_index[dev]])
        self.decided_relays.update(relays)
        self.decided_setpoint.update(setpoints)
        masks = {p: decision.failsafe_mask.get(p, 0) for p in lay.pile_slices if p in ready}

        async def lower(dev: str) -> None:
            if dev in relays:
                await self._relays(dev, {p: v for p, v in relays[dev].items() if not v})
            elif dev in setpoints:
                w = self.written[dev].setpoint_a
                if w is None or setpoints[dev] < w:
                    await self._setpoint(dev, setpoints[dev])

        async def raise_(dev: str) -> None:
            if dev in relays:
                for port, on in relays[dev].items():
                    if on and self.written[dev].relays.get(port) is not True:
                        await self._close(dev, port)
            elif dev in setpoints and setpoints[dev] != self.written[dev].setpoint_a:
                await self._setpoint(dev, setpoints[dev])

        async def shrink(dev: str) -> None:
            w = self.written[dev]
            step = masks[dev] & w.mask_possible
            if step != w.mask:
                await self._mask(dev, step)

        async def grow(dev: str) -> None:
            if masks[dev] != self.written[dev].mask:
                await self._mask(dev, masks[dev])

        await self._per_line(lower, ready, self._wave_end(end))
        await self._per_line(shrink, list(masks), self._wave_end(end))
        if shed_only:
            return
        # Raise only once every lowering write is confirmed (the plan counted on them), and
        # add mask bits only once every pile's bits that go away are gone.
        if not self._lowering_pending(relays, setpoints):
            await self._per_line(raise_, ready, self._wave_end(end))
        if all(masks[p] & self.written[p].mask_possible == self.written[p].mask for p in masks):
            await self._per_line(grow, list(masks), self._wave_end(end))
        await self._per_line(lambda d: self._rest(d, lamps), ready, self._wave_end(end))

    def _lowering_pending(
        self, relays: Mapping[str, Mapping[int, bool]], setpoints: Mapping[str, float]
    ) -> bool:
        for dev, want in relays.items():
            done = self.written[dev].relays
            if any(not on and done.get(p) is not False for p, on in want.items()):
                return True
        for dev, amps in setpoints.items():
            w = self.written[dev].setpoint_a
            if w is None or amps < w:
                return True
        return False

    def _wave_end(self, end: float) -> float:
        return max(end, self.clock.now() + WAVE_MIN * self.tick_s)

    async def _rest(self, dev: str, lamps: Mapping[str, int]) -> None:
        w = self.written[dev]
        if dev in self.piles:
            drv = self.piles[dev]
            sl = self.layout.pile_slices[dev]
            want = {k + 1: int(lamps.get(b.id, 0)) for k, b in enumerate(self.layout.bays[sl])}
            changed = {p: v for p, v in want.items() if w.lamps.get(p) != v}
            if changed and await self._guard(dev, drv.write_indicators(changed)):
                w.lamps.update(changed)
            await self._guard(dev, drv.heartbeat())
        elif dev in self.evses:
            box = self.evses[dev]
            lamp = int(lamps.get(dev, 0))
            if lamp != w.lamp and await self._guard(dev, box.set_indicator(lamp)):
                w.lamp = lamp
            await self._guard(dev, box.heartbeat())

    async def _mask(self, dev: str, mask: int) -> bool:
        drv = self.piles[dev]
        w = self.written[dev]
        w.mask_possible |= mask  # a write that times out may still have landed
        if await self._guard(dev, drv.set_failsafe_mask(mask)):
            w.mask = w.mask_possible = mask
            self.last_mask[dev] = mask
            return True
        w.mask = None
        return False

    async def _relays(self, dev: str, want: Mapping[int, bool]) -> bool:
        w = self.written[dev]
        changed = {p: v for p, v in want.items() if w.relays.get(p) != v}
        if not changed:
            return True
        drv = self.piles[dev]
        if await self._guard(dev, drv.write_relays(changed)):
            w.relays.update(changed)
            return True
        for p in changed:
            w.relays.pop(p, None)
        return False

    async def _close(self, dev: str, port: int) -> None:
        """One relay closes at a time, shed-wide, CLOSE_SPACING_S apart: each charger's inrush
        is tens of amps for a few milliseconds, and peaks that meet add up toward a breaker's
        magnetic trip (5 cheap chargers at one instant trip a loaded C32)."""
        async with self._closing:
            wait = self._next_close_at - self.clock.now()
            if wait > 0:
                await self.clock.sleep(wait)
            await self._relays(dev, {port: True})
            self._next_close_at = self.clock.now() + CLOSE_SPACING_S

    async def _setpoint(self, dev: str, amps: float) -> bool:
        ok = await self._guard(dev, self.evses[dev].set_current(amps))
        self.written[dev].setpoint_a = amps if ok else None
        return ok

    # -- staff and shutdown -------------------------------------------------------------
    async def reset_fault(self, bay: str) -> None:
        b = self.layout.bays[self.layout.bay_index[bay]]
        if b.device in self.piles and b.port is not None:
            await self.piles[b.device].fault_reset(b.port)

    async def failsafe(self) -> None:
        """Leave every device as its fail-safe would: piles at their masks, wallboxes paused.
        A pile whose mask is not confirmed opens every relay the confirmed mask does not keep."""

        async def one(dev: str) -> None:
            if dev in self.piles:
                drv = self.piles[dev]
                w = self.written[dev]
                mask = w.mask if w.mask is not None else 0
                want = {p: bool((mask >> (p - 1)) & 1) for p in range(1, drv.ports + 1)}
                await self._guard(dev, drv.write_relays(want))
            elif dev in self.evses:
                await self._guard(dev, self.evses[dev].set_current(0.0))

        await self._per_line(one, [d for d in self.drivers if self.up[d]])
