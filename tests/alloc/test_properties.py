"""Random problems: the kernel equals the reference, and both obey rules 1-4.

Runs compiled and (in `make test`) again with NUMBA_DISABLE_JIT=1, so coverage sees the
kernel's Python. The `slow` variant runs many more examples.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from chargectl.alloc.allocator import plan
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
