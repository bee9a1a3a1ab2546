"""Peer controllers' allocation policies, behind chargectl's `Allocate` shape, for replays.

Each policy is our reading of a peer controller's published behaviour (docs/replay-policies.md
names the source of each reading). A replay runs one in place of chargectl's kernel:
`ControlCore(shed, layout, allocate=make_policy(name, layout))`, and calls `policy.at(now)`
before each `core.step(now, ...)`. The core's own protections around the allocation (pins,
min on/off, staggered closes, thermal derating, a wallbox's probe step) are switched off for a
peer by `peer_settings`; see that function for what it cannot switch off.

The policies are pure: arrays in, arrays out, no I/O, no clock. State they keep across ticks
(fcfs's arrival order, stop-all's shortage count and stop timer) is held on the policy object
in plain arrays, and time only enters through `at(now)`.

What "asking" means here: a bay asks for current when its `max_a` is above 0 and at least its
`min_a` (the core gives `max_a` 0 to a bay without a session wanting current, a faulted or
silent one, an unplugged wallbox). A socket's `min_a == max_a` (its current, or off); a
wallbox's `min_a` is its least offer (6 A) and `max_a` what it may take.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from chargectl.alloc.allocator import Allocator
from chargectl.alloc.problem import BIND_TOL_A, FIT_EPS_A
from chargectl.config.schema import ControlSettings
from chargectl.control.allocation import make_allocator
from chargectl.control.layout import BoolArray, FloatArray, IntArray, Layout, circuit_load

PlanTuple = tuple[FloatArray, FloatArray, BoolArray, BoolArray]

# stop-all (SmartEVSE): ticks of shortage before everyone stops, and how long they stay stopped.
STOP_AFTER_TICKS = 3
STOP_HOLD_S = 60.0


class Policy(Protocol):
    """The `Allocate` call of chargectl.control.core, plus the tick's time."""

    name: str

    def at(self, now: float) -> None:
        """The time of the tick about to be planned (call before `core.step(now, ...)`)."""

    def __call__(  # noqa: PLR0917 (the controller's Allocate shape: seven arrays)
        self,
        limit_a: FloatArray,
        unmanaged_a: FloatArray,
        min_a: FloatArray,
        max_a: FloatArray,
        priority: IntArray,
        credit: FloatArray,
        on: BoolArray,
    ) -> PlanTuple: ...


def asking(min_a: FloatArray, max_a: FloatArray) -> BoolArray:
    return np.asarray((max_a > 0.0) & (max_a >= min_a - FIT_EPS_A), dtype=np.bool_)


def plan_summary(
    layout: Layout, limit_a: FloatArray, unmanaged_a: FloatArray, setpoints: FloatArray
) -> PlanTuple:
    """The kernel's outputs for `setpoints` decided some other way: the planned load per
    circuit and phase (the unmanaged load as given, plus the bays), where it binds (within
    BIND_TOL_A of the limit, or above it) and where the unmanaged load alone is over it."""
    phases = layout.circuit_phases
    planned = (unmanaged_a + circuit_load(layout, setpoints)) * phases
    binding = phases & (planned >= limit_a - BIND_TOL_A)
    infeasible = phases & (unmanaged_a > limit_a + FIT_EPS_A)
    return setpoints, planned, np.asarray(binding), np.asarray(infeasible)


class _Base:
    name = ""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def at(self, now: float) -> None:
        """Time-free policies ignore the clock."""


class Uncontrolled(_Base):
    """The shed without a controller: every bay that asks is on at its maximum, whatever the
    limits and the load (a socket on at its current, a wallbox at what it may take)."""

    name = "uncontrolled"

    def __call__(  # noqa: PLR0917
        self,
        limit_a: FloatArray,
        unmanaged_a: FloatArray,
        min_a: FloatArray,
        max_a: FloatArray,
        priority: IntArray,
        credit: FloatArray,
        on: BoolArray,
    ) -> PlanTuple:
        setpoints = np.where(asking(min_a, max_a), max_a, 0.0)
        return plan_summary(self.layout, limit_a, unmanaged_a, setpoints)


class FirstComeFirstServed(_Base):
    """evcc's circuits: bays in arrival order, each takes what it may (up to its `max_a`) of
    what is left on every circuit and phase it draws on, if that is at least its `min_a`; a bay
    that does not fit waits and later arrivals that fit go ahead of it. An admitted bay is never
    displaced by a later one (no rotation); when room shrinks, the latest arrivals lose first.

    Arrival is the first call at which a bay asks (ties: bay order); a bay that stops asking
    loses its place. `arrival` holds each bay's arrival number (inf: not asking)."""

    name = "fcfs"

    def __init__(self, layout: Layout) -> None:
        super().__init__(layout)
        self.arrival = np.full(layout.n_bays, np.inf)
        self._next = 0
        # Each bay's circuit-phases as flat indices into a [C, 3] array (circuit * 3 + phase).
        self._draws = [
            np.flatnonzero(layout.under[:, j][:, None] & layout.bay_phases[j][None, :])
            for j in range(layout.n_bays)
        ]

    def order(self) -> IntArray:
        """The bays that ask, first come first."""
        ranked = np.argsort(self.arrival, kind="stable")
        return np.asarray(ranked[np.isfinite(self.arrival[ranked])])

    def __call__(  # noqa: PLR0917
        self,
        limit_a: FloatArray,
        unmanaged_a: FloatArray,
        min_a: FloatArray,
        max_a: FloatArray,
        priority: IntArray,
        credit: FloatArray,
        on: BoolArray,
    ) -> PlanTuple:
        wants = asking(min_a, max_a)
        new = wants & ~np.isfinite(self.arrival)
        if new.any():
            self.arrival[new] = self._next
            self._next += 1
        self.arrival[~wants] = np.inf

        room = (limit_a - unmanaged_a).ravel()  # on a phase a circuit lacks: never drawn on
        setpoints = np.zeros(self.layout.n_bays)
        for j in self.order():
            cps = self._draws[j]
            x = min(float(max_a[j]), float(room[cps].min()))
            if x >= min_a[j] - FIT_EPS_A and x > 0.0:
                x = max(x, float(min_a[j]))
                setpoints[j] = x
                room[cps] -= x
        return plan_summary(self.layout, limit_a, unmanaged_a, setpoints)


def equal_shares(
    kernel: Allocator, limit_a: FloatArray, unmanaged_a: FloatArray, max_a: FloatArray
) -> FloatArray:
    """Every bay with `max_a` above 0 an equal share of what is left on each circuit and phase
    (max-min fair, capped at its `max_a`): chargectl's kernel with every minimum at 0, one
    class. Where the unmanaged load alone is over a limit, the bays under it get 0."""
    b = len(max_a)
    setpoints, _, _, _ = kernel(
        limit_a,
        unmanaged_a,
        np.zeros(b),
        max_a,
        np.zeros(b, dtype=np.int64),
        np.zeros(b),
        np.zeros(b, dtype=np.bool_),
    )
    return setpoints


class EqualSplit(_Base):
    """EVerest's energy manager: every bay that asks an equal share of the circuit limits, with
    no meter feedback (the unmanaged load is not subtracted: it is ignored, not estimated) and
    no rotation. A bay whose share is below its `min_a` gets 0 and its share is not given to
    the others (so sockets that cannot all have their current all stay off)."""

    name = "equal-split"

    def __init__(self, layout: Layout) -> None:
        super().__init__(layout)
        self._kernel = make_allocator(layout)

    def __call__(  # noqa: PLR0917
        self,
        limit_a: FloatArray,
        unmanaged_a: FloatArray,
        min_a: FloatArray,
        max_a: FloatArray,
        priority: IntArray,
        credit: FloatArray,
        on: BoolArray,
    ) -> PlanTuple:
        wants = asking(min_a, max_a)
        cap = np.where(wants, max_a, 0.0)
        share = equal_shares(self._kernel, limit_a, np.zeros_like(unmanaged_a), cap)
        setpoints = np.where(wants & (share >= min_a - FIT_EPS_A), share, 0.0)
        return plan_summary(self.layout, limit_a, unmanaged_a, setpoints)


class StopAll(_Base):
    """SmartEVSE: every bay that asks an equal share of what is left after the measured load.
    When some bay's share is below its minimum (a wallbox's 6 A, a socket's current), every bay
    is cut to its minimum at once (over the limit: nobody is chosen to pause); when that has
    lasted STOP_AFTER_TICKS ticks in a row, every bay under that supply stops for STOP_HOLD_S,
    new arrivals included, then all start again together.

    Per supply (root circuit): `short_ticks` counts consecutive short ticks, `stopped_until`
    ends the stop. A tick is a distinct `now` given to `at`; calls within one tick count once.
    """

    name = "stop-all"

    def __init__(self, layout: Layout) -> None:
        super().__init__(layout)
        self._kernel = make_allocator(layout)
        root = np.arange(layout.n_circuits)
        for c in range(layout.n_circuits):  # topological order: a parent's root is known
            if layout.parent[c] >= 0:
                root[c] = root[layout.parent[c]]
        self._roots = np.unique(root[layout.parent < 0])
        # [R, B]: the bays under each supply
        self._under_root = layout.under[self._roots]
        self.short_ticks = np.zeros(len(self._roots), dtype=np.int64)
        self.stopped_until = np.full(len(self._roots), -np.inf)
        self._now: float | None = None
        self._tick: float | None = None  # the tick whose shortage is being counted
        self._before = self.short_ticks.copy()  # the count before that tick
        self._short = np.zeros(len(self._roots), dtype=np.bool_)  # short at some call of it

    def at(self, now: float) -> None:
        self._now = now

    def __call__(  # noqa: PLR0917
        self,
        limit_a: FloatArray,
        unmanaged_a: FloatArray,
        min_a: FloatArray,
        max_a: FloatArray,
        priority: IntArray,
        credit: FloatArray,
        on: BoolArray,
    ) -> PlanTuple:
        if self._now is None:
            raise RuntimeError("stop-all needs the tick's time: call at(now) before the plan")
        now = self._now
        if now != self._tick:
            self._tick = now
            self._before = self.short_ticks.copy()
            self._short[:] = False

        wants = asking(min_a, max_a)
        cap = np.where(wants, max_a, 0.0)
        share = equal_shares(self._kernel, limit_a, unmanaged_a, cap)
        under = self._under_root
        short_bay = wants & (share < min_a - FIT_EPS_A)
        held = now < self.stopped_until
        self._short |= (under & short_bay[None, :]).any(axis=1) & ~held
        self.short_ticks = np.where(self._short, self._before + 1, 0)
        stop = self._short & (self.short_ticks >= STOP_AFTER_TICKS)
        self.stopped_until = np.where(stop, now + STOP_HOLD_S, self.stopped_until)
        self.short_ticks[stop] = 0
        held = now < self.stopped_until

        off = (under & held[:, None]).any(axis=0)
        at_min = (under & self._short[:, None]).any(axis=0)
        setpoints = np.where(at_min, min_a, share)
        setpoints = np.where(wants & ~off, setpoints, 0.0)
        return plan_summary(self.layout, limit_a, unmanaged_a, setpoints)


@dataclass(frozen=True)
class PolicyRow:
    name: str
    make: Callable[[Layout], Policy]
    peer: str  # whose published behaviour it reads
    summary: str


POLICIES: dict[str, PolicyRow] = {
    row.name: row
    for row in (
        PolicyRow("uncontrolled", Uncontrolled, "none", "every tapped bay on at its maximum"),
        PolicyRow("fcfs", FirstComeFirstServed, "evcc", "arrival order, never rotate"),
        PolicyRow("stop-all", StopAll, "SmartEVSE", "equal shares; short 3 ticks: all stop 60 s"),
        PolicyRow("equal-split", EqualSplit, "EVerest", "equal shares of the limit, no meter"),
    )
}


def make_policy(name: str, layout: Layout) -> Policy:
    try:
        row = POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; one of: {', '.join(POLICIES)}") from None
    return row.make(layout)


def peer_settings(settings: ControlSettings) -> ControlSettings:
    """The core's settings for a peer policy: none of chargectl's own protections around the
    allocation. No minimum on or off time (so no pins), every relay closes in the tick it is
    planned (no staggering), no thermal derating of the limits, a wallbox's `max_a` is its
    hardware maximum (no probing up from its draw), no meter-triggered shed between ticks.

    Still chargectl's in the core (a seam, not settings): the unmanaged estimate (held maxima,
    the worst case of a lost meter or a silent device), a socket counted at its measured current
    plus the ramp margin, the re-plan of a car still following a lower offer, the fail-safe
    masks' budget, and the safety cuts (alarms, faults, welded relays, pile alarms)."""
    return dataclasses.replace(
        settings,
        min_on_s=0.0,
        min_off_s=0.0,
        max_closes_per_tick=1 << 30,
        thermal_derate_ratio=math.inf,
        wallbox_probe_a=1e6,
        meter_poll_s=0.0,
    )
