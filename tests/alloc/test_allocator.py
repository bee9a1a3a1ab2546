"""The per-tick API: arrays filled in place, the controller's call shape, value checks."""

from __future__ import annotations

import numpy as np
import pytest

from chargectl.alloc.allocator import Allocator, load_problem, plan, to_plan, warm
from chargectl.alloc.problem import Problem, ProblemError
from chargectl.alloc.reference import reference_plan
from tests.alloc.build import circuit, socket, wallbox

PROBLEM = Problem(
    (
        circuit("main", (32, 32, 32), unmanaged=(1, 1, 1)),
        circuit("row", (16, None, None), parent="main"),
    ),
    (
        socket("s1", 2.0, "row"),
        socket("s2", 2.0, "row", credit=1.0),
        wallbox("w", 6, 16, "main", phases=(1, 2, 3), credit=2.0),
    ),
)


def test_a_tick_refills_the_same_arrays() -> None:
    alloc = load_problem(PROBLEM)
    first = alloc.run()
    assert first is alloc.result
    assert first.setpoints.tolist() == [2.0, 2.0, 16.0]
    # The controller derates main (a hot breaker) in place: the wallbox gives way.
    alloc.inputs.limit_a[0, :] = 12.0
    second = alloc.run()
    assert second is first
    assert second.setpoints.tolist() == pytest.approx([2.0, 2.0, 7.0])
    lowered = Problem(
        (circuit("main", (12, 12, 12), unmanaged=(1, 1, 1)), PROBLEM.circuits[1]), PROBLEM.bays
    )
    assert to_plan(alloc.topo, second) == reference_plan(lowered)


def test_the_controllers_call_shape_returns_fresh_arrays() -> None:
    alloc = load_problem(PROBLEM)
    ins = alloc.inputs
    args = (ins.limit_a, ins.unmanaged_a, ins.min_a, ins.max_a, ins.priority, ins.credit, ins.on)
    setpoints, planned, binding, infeasible = alloc(*args)
    assert setpoints.tolist() == [2.0, 2.0, 16.0]
    assert planned[0].tolist() == [21.0, 17.0, 17.0]
    assert planned[1].tolist() == [4.0, 0.0, 0.0]  # 0 on the phases row lacks
    assert binding.tolist() == [[False] * 3, [False] * 3]
    assert not infeasible.any()
    again = alloc(*args)
    assert again[0] is not setpoints


def test_the_call_converts_dtypes_and_checks_shapes() -> None:
    alloc = load_problem(PROBLEM)
    setpoints, *_ = alloc(
        [[32, 32, 32], [16, 0, 0]],
        np.zeros((2, 3), dtype=np.float32),
        [2, 2, 6],
        [2, 2, 16],
        [0, 0, 0],
        [0, 1, 0],
        [0, 0, 0],
    )
    assert setpoints.tolist() == [2.0, 2.0, 16.0]
    with pytest.raises(ProblemError, match=r"min_a: shape \(2,\), expected \(3,\)"):
        alloc(*(np.zeros((2, 3)),) * 2, np.zeros(2), *(np.zeros(3),) * 4)


@pytest.mark.parametrize(
    ("field", "index", "value", "message"),
    [
        ("limit_a", (1, 0), np.nan, "circuit 'row': limit_a must be a finite number >= 0"),
        ("limit_a", (0, 2), -1.0, "circuit 'main': limit_a must be"),
        ("unmanaged_a", (0, 1), np.inf, "circuit 'main': unmanaged_a must be"),
        ("min_a", 1, np.nan, "bay 's2': min_a must be"),
        ("max_a", 2, -0.5, "bay 'w': max_a must be"),
        ("credit", 0, np.nan, "bay 's1': credit must be"),
        ("priority", 2, -1, r"bay 'w': priority must be 0 \.\. 2147483647"),
        ("priority", 0, 2**31, r"bay 's1': priority must be 0 \.\. 2147483647"),
    ],
)
def test_bad_tick_values_are_refused(
    field: str, index: int | tuple[int, int], value: float, message: str
) -> None:
    alloc = load_problem(PROBLEM)
    getattr(alloc.inputs, field)[index] = value
    with pytest.raises(ProblemError, match=message):
        alloc.run()


def test_values_on_a_missing_phase_are_ignored() -> None:
    alloc = load_problem(PROBLEM)
    alloc.inputs.limit_a[1, 1:] = np.nan  # row has no L2, L3
    alloc.inputs.unmanaged_a[1, 1:] = -5.0
    assert alloc.run().setpoints.tolist() == [2.0, 2.0, 16.0]


def test_an_allocator_with_no_bays() -> None:
    alloc = load_problem(Problem((circuit("main", 10, unmanaged=12),), ()))
    out = alloc.run()
    assert out.infeasible.tolist() == [[True, False, False]]
    assert out.planned_a.tolist() == [[12.0, 0.0, 0.0]]


def test_warm_returns_its_time() -> None:
    assert 0.0 < warm() < 60.0


def test_plan_keys_by_id() -> None:
    result = plan(PROBLEM)
    assert result.setpoints == {"s1": 2.0, "s2": 2.0, "w": 16.0}
    assert result.planned_a == {"main": (21.0, 17.0, 17.0), "row": (4.0, None, None)}
    assert isinstance(Allocator(load_problem(PROBLEM).topo).run().setpoints, np.ndarray)
