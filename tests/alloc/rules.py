"""Rules 1-4 of issue 3 checked directly on a result (not by re-solving the problem)."""

from __future__ import annotations

import math

from chargectl.alloc.problem import FIT_EPS_A, Plan, Problem, ProblemBay

TOL = 1e-6  # numerical slack on top of the rules' own 1e-9


def check_rules(problem: Problem, plan: Plan) -> None:
    circuits = {c.id: c for c in problem.circuits}

    def ancestors(cid: str) -> list[str]:
        out: list[str] = []
        at: str | None = cid
        while at is not None:
            out.append(at)
            at = circuits[at].parent
        return out

    def cps(bay: ProblemBay) -> list[tuple[str, int]]:
        return [(a, p) for a in ancestors(bay.circuit) for p in bay.phases]

    def limit(cp: tuple[str, int]) -> float:
        lim = circuits[cp[0]].limit_a[cp[1] - 1]
        assert lim is not None
        return lim

    def unmanaged(cp: tuple[str, int]) -> float:
        return circuits[cp[0]].unmanaged_a[cp[1] - 1]

    all_cps = [(c.id, p) for c in problem.circuits for p in c.phases]
    x = plan.setpoints
    assert set(x) == {b.id for b in problem.bays}

    # Setpoints: 0, or within [min, max].
    for b in problem.bays:
        assert x[b.id] == 0.0 or b.min_a - TOL <= x[b.id] <= b.max_a + TOL, b

    # Planned loads are what the setpoints add up to.
    load = {cp: unmanaged(cp) for cp in all_cps}
    for b in problem.bays:
        for cp in cps(b):
            load[cp] += x[b.id]
    for cid, p in all_cps:
        got = plan.planned_a[cid][p - 1]
        assert got is not None
        assert abs(got - load[cid, p]) <= TOL

    # Rule 4: exactly the circuit-phases whose unmanaged load alone is over the limit. A bay
    # that draws on one of them (on its circuit or any circuit above) is off, whatever its
    # other phases; bays on the other phases below that circuit are not concerned.
    infeasible = {cp for cp in all_cps if unmanaged(cp) > limit(cp) + FIT_EPS_A}
    assert set(plan.infeasible) == infeasible

    def blocked(b: ProblemBay) -> bool:
        return any(cp in infeasible for cp in cps(b))

    for b in problem.bays:
        if blocked(b):
            assert x[b.id] == 0.0, b

    # Rule 1: never over a limit. An infeasible circuit-phase is over it before any bay:
    # nothing at all is added to it.
    for cp in all_cps:
        if cp in infeasible:
            assert load[cp] == unmanaged(cp), cp
        else:
            assert load[cp] <= limit(cp) + FIT_EPS_A + TOL, cp

    # Rule 2: walking the admission order, a bay is on exactly when its minimum fits on top
    # of the minimums of the bays on before it and, for a fixed bay (min == max), on top of
    # what they hold: a fixed bay its current, one that may rise as much of its max as had
    # room when its turn came. (A valid bay with min 0 always fits: it may be admitted and
    # still sit at 0 A.)
    ranked = sorted(problem.bays, key=lambda b: (-b.priority, b.credit, not b.on, b.id))
    admitted: set[str] = set()
    mins = {cp: unmanaged(cp) for cp in all_cps}
    held = dict(mins)
    for b in ranked:
        valid = b.max_a > 0 and b.max_a >= b.min_a and not blocked(b)
        fits = valid and all(mins[cp] + b.min_a <= limit(cp) + FIT_EPS_A for cp in cps(b))
        room = min((limit(cp) - held[cp] for cp in cps(b)), default=math.inf)
        if b.min_a == b.max_a:
            fits = fits and b.min_a <= room + FIT_EPS_A
        on = x[b.id] > 0 or (valid and b.min_a == 0)
        assert on == fits, b
        if on:
            admitted.add(b.id)
            for cp in cps(b):
                mins[cp] += b.min_a
                held[cp] += max(b.min_a, min(b.max_a, room))

    # Rule 3: every admitted bay below its max has a bottleneck: a full circuit-phase on
    # which no bay of its class got more than the same level would give it, and every bay of
    # a lower class sits at its minimum.
    def full(cp: tuple[str, int]) -> bool:
        return load[cp] >= limit(cp) - TOL

    def clamp(level: float, b: ProblemBay) -> float:
        return min(max(level, b.min_a), b.max_a)

    on_cp: dict[tuple[str, int], list[ProblemBay]] = {cp: [] for cp in all_cps}
    for b in problem.bays:
        if b.id in admitted:
            for cp in cps(b):
                on_cp[cp].append(b)
    for b in problem.bays:
        if b.id not in admitted or x[b.id] >= b.max_a - TOL:
            continue

        def bottleneck(cp: tuple[str, int], b: ProblemBay = b) -> bool:
            return full(cp) and all(
                x[o.id] <= clamp(x[b.id], o) + TOL
                if o.priority == b.priority
                else o.priority > b.priority or abs(x[o.id] - o.min_a) <= TOL
                for o in on_cp[cp]
            )

        assert any(bottleneck(cp) for cp in cps(b)), b
