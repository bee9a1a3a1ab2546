"""The reference allocator: the rules of issue 3 in plain Python, for clarity, not speed.

Tests use it as the oracle for the kernel, so it is written independently of kernel.py:
dicts keyed by (circuit, phase), no arrays, no events. Max-min fairness is computed the
textbook way: while some bay of the class can still rise, find the circuit-phase that fills
first if every rising bay sits at clamp(level, min, max), freeze the bays on it, repeat.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

from chargectl.alloc.problem import BIND_TOL_A, FIT_EPS_A, Plan, Problem, ProblemBay

CP = tuple[str, int]  # (circuit id, phase 1..3)


def reference_plan(problem: Problem) -> Plan:
    circuits = {c.id: c for c in problem.circuits}
    limit: dict[CP, float] = {}
    unmanaged: dict[CP, float] = {}
    for c in problem.circuits:
        for p in c.phases:
            lim = c.limit_a[p - 1]
            assert lim is not None
            limit[c.id, p] = lim
            unmanaged[c.id, p] = c.unmanaged_a[p - 1]

    def ancestors(cid: str) -> list[str]:
        """The circuit and every circuit above it."""
        out = []
        at: str | None = cid
        while at is not None:
            out.append(at)
            at = circuits[at].parent
        return out

    def draws_on(bay: ProblemBay) -> list[CP]:
        return [(a, p) for a in ancestors(bay.circuit) for p in bay.phases]

    # Rule 4: unmanaged load alone over a limit. Nothing may be added to such a
    # circuit-phase, so a bay that draws on it (on any phase, through any circuit) stays off;
    # the circuit's other phases are not concerned.
    infeasible = [cp for cp in limit if unmanaged[cp] > limit[cp] + FIT_EPS_A]
    infeasible_set = set(infeasible)

    # Rule 2: admission at the minimum, in order; a fixed bay (min == max) must also fit
    # with the bays before it at what they hold (a wallbox: as much of its max as had room).
    ranked = sorted(problem.bays, key=lambda b: (-b.priority, b.credit, not b.on, b.id))
    load = dict(unmanaged)
    held = dict(unmanaged)
    admitted: list[ProblemBay] = []
    for bay in ranked:
        if bay.max_a <= 0 or bay.max_a < bay.min_a:
            continue
        cps = draws_on(bay)
        if infeasible_set.intersection(cps):
            continue
        if any(load[cp] + bay.min_a > limit[cp] + FIT_EPS_A for cp in cps):
            continue
        room = min(limit[cp] - held[cp] for cp in cps)
        if bay.min_a == bay.max_a and bay.min_a > room + FIT_EPS_A:
            continue
        admitted.append(bay)
        for cp in cps:
            load[cp] += bay.min_a
            held[cp] += max(bay.min_a, min(bay.max_a, room))

    # Rule 3: max-min fair extra current, class by class, lower classes at their minimum.
    x = {b.id: b.min_a for b in admitted}
    for cls in sorted({b.priority for b in admitted}, reverse=True):
        rising = [b for b in admitted if b.priority == cls and b.min_a < b.max_a]
        while rising:
            fixed = _fixed_load(unmanaged, admitted, rising, x, draws_on)
            fills: list[tuple[float, CP]] = []
            for cp, lim in limit.items():
                on_cp = [b for b in rising if cp in draws_on(b)]
                if on_cp:
                    fills.append((_fill_level(lim - fixed[cp], on_cp), cp))
            level, first = min(fills)
            if level == math.inf:
                for b in rising:
                    x[b.id] = b.max_a
                break
            frozen = [b for b in rising if first in draws_on(b)]
            for b in frozen:
                x[b.id] = _clamp(level, b)
            rising = [b for b in rising if b not in frozen]

    setpoints = {b.id: x.get(b.id, 0.0) for b in problem.bays}
    final = dict(unmanaged)
    for bay in problem.bays:
        for cp in draws_on(bay):
            final[cp] += setpoints[bay.id]
    planned: dict[str, tuple[float | None, ...]] = {}
    binding: dict[str, tuple[bool | None, ...]] = {}
    for c in problem.circuits:
        planned[c.id] = tuple(final.get((c.id, p)) for p in (1, 2, 3))
        binding[c.id] = tuple(
            final[c.id, p] >= limit[c.id, p] - BIND_TOL_A if (c.id, p) in limit else None
            for p in (1, 2, 3)
        )
    return Plan(setpoints, planned, binding, tuple(infeasible))


def _clamp(level: float, bay: ProblemBay) -> float:
    return min(max(level, bay.min_a), bay.max_a)


def _fixed_load(
    unmanaged: dict[CP, float],
    admitted: list[ProblemBay],
    rising: list[ProblemBay],
    x: dict[str, float],
    draws_on: Callable[[ProblemBay], list[CP]],
) -> dict[CP, float]:
    """Per circuit-phase: unmanaged plus every admitted bay that is not rising."""
    fixed = dict(unmanaged)
    for b in admitted:
        if b not in rising:
            for cp in draws_on(b):
                fixed[cp] += x[b.id]
    return fixed


def _fill_level(room: float, bays: list[ProblemBay]) -> float:
    """The lowest level at which sum(clamp(level, min, max)) over `bays` reaches `room`
    (inf if it never does). The sum is piecewise linear, so walk its breakpoints."""
    total = sum(b.min_a for b in bays)  # the sum at level 0 (min >= 0)
    if total >= room:
        return 0.0
    points = sorted({0.0, *(b.min_a for b in bays), *(b.max_a for b in bays)})
    for lo, hi in itertools.pairwise(points):
        slope = sum(1 for b in bays if b.min_a <= lo < b.max_a)
        at_hi = total + slope * (hi - lo)
        if at_hi >= room:
            return lo + (room - total) / slope
        total = at_hi
    return math.inf
