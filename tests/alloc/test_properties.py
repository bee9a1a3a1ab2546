"""Random problems: the kernel equals the reference, and both obey rules 1-4.

Runs compiled and (in `make test`) again with NUMBA_DISABLE_JIT=1, so coverage sees the
kernel's Python. The `slow` variant runs many more examples.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargectl.alloc.allocator import load_problem, plan, to_plan
from chargectl.alloc.problem import BIND_TOL_A, Plan, Problem
from chargectl.alloc.reference import reference_plan
from tests.alloc.build import problems
from tests.alloc.rules import check_rules

TOL = 1e-6
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_same(problem: Problem, got: Plan, want: Plan) -> None:
    assert got.infeasible == want.infeasible
    assert got.setpoints.keys() == want.setpoints.keys()
    for bid, x in want.setpoints.items():
        assert got.setpoints[bid] == pytest.approx(x, abs=TOL), bid
    limits = {c.id: c.limit_a for c in problem.circuits}
    for cid, planned in want.planned_a.items():
        assert got.planned_a[cid] == pytest.approx(planned, abs=TOL), cid
        for p, (mine, theirs) in enumerate(zip(got.binding[cid], want.binding[cid], strict=True)):
            lim, load = limits[cid][p], planned[p]
            if lim is None or load is None:
                assert mine is None and theirs is None
            elif abs(lim - load - BIND_TOL_A) > 1e-7:  # not a rounding coin-toss
                assert mine == theirs, (cid, p + 1)


def check(problem: Problem) -> None:
    got = plan(problem)
    want = reference_plan(problem)
    assert_same(problem, got, want)
    check_rules(problem, got)
    check_rules(problem, want)


@FAST
@given(problems())
def test_kernel_equals_reference_and_obeys_the_rules(problem: Problem) -> None:
    check(problem)


@FAST
@given(problems(max_bays=12, max_circuits=4))
def test_small_problems(problem: Problem) -> None:
    # Small problems make ties, exact fills and infeasible roots far more frequent.
    check(problem)


@pytest.mark.slow
@SLOW
@given(problems())
def test_kernel_equals_reference_many(problem: Problem) -> None:
    check(problem)


@FAST
@given(problems(max_bays=60), st.lists(st.randoms(use_true_random=False), min_size=1, max_size=4))
def test_successive_ticks_on_one_allocator(problem: Problem, rngs: list[random.Random]) -> None:
    # The kernel starts each admission sort from the last tick's order: the ticks must not
    # leak into each other. Each tick changes credits, on flags, priorities and limits.
    alloc = load_problem(problem)
    for rng in rngs:
        bays = tuple(
            replace(
                b,
                credit=rng.choice([b.credit, b.credit + rng.random(), 0.0]),
                on=rng.random() < 0.5,
                priority=rng.choice([b.priority, b.priority, 0, 3]),
            )
            for b in problem.bays
        )
        scale = rng.choice([1.0, 1.0, 0.5, 2.0])
        circuits = tuple(
            replace(c, limit_a=tuple(None if v is None else v * scale for v in c.limit_a))  # type: ignore[arg-type]
            for c in problem.circuits
        )
        tick = Problem(circuits, bays)
        ins = alloc.inputs
        for i, c in enumerate(circuits):
            ins.limit_a[i] = [0.0 if v is None else v for v in c.limit_a]
        for j, b in enumerate(bays):
            ins.credit[j], ins.on[j], ins.priority[j] = b.credit, b.on, b.priority
        got = to_plan(alloc.topo, alloc.run())
        assert_same(tick, got, reference_plan(tick))
