"""The worked examples of issue 3, on the kernel and on the reference."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from chargectl.alloc.allocator import plan
from chargectl.alloc.problem import Plan, Problem
from chargectl.alloc.reference import reference_plan
from tests.alloc.build import circuit, socket, wallbox

SOLVERS: dict[str, Callable[[Problem], Plan]] = {"kernel": plan, "reference": reference_plan}

EXAMPLES: dict[str, tuple[Problem, dict[str, float], tuple[tuple[str, int], ...]]] = {
    "A": (
        Problem(
            (circuit("main", 20, unmanaged=2),),
            (
                wallbox("w1", 6, 16),
                wallbox("w2", 6, 8, credit=1.0),
                socket("s1", 1.5, credit=0.5, on=True),
            ),
        ),
        {"w1": 8.5, "w2": 8.0, "s1": 1.5},
        (),
    ),
    "B": (
        Problem(
            (circuit("main", 3),),
            (socket("p0", 2, priority=0), socket("p1", 2, priority=1, credit=5.0)),
        ),
        {"p0": 0.0, "p1": 2.0},
        (),
    ),
    "C": (
        Problem(
            (circuit("main", (16, 16, 16)),),
            (socket("s", 3), wallbox("w", 6, 16, phases=(1, 2, 3), credit=1.0)),
        ),
        {"s": 3.0, "w": 13.0},
        (),
    ),
    "D": (
        Problem(
            # main's unmanaged load includes row-a's (by definition).
            (circuit("main", 40, unmanaged=11), circuit("row-a", 10, parent="main", unmanaged=11)),
            (socket("a1", 2, "row-a"), socket("m1", 2, "main")),
        ),
        {"a1": 0.0, "m1": 2.0},
        (("row-a", 1),),
    ),
    "E": (
        Problem(
            (circuit("main", 20), circuit("A", 12, parent="main"), circuit("B", 12, parent="main")),
            (wallbox("a1", 6, 16, "A"), wallbox("a2", 6, 16, "A"), wallbox("b1", 6, 16, "B")),
        ),
        {"a1": 6.0, "a2": 6.0, "b1": 8.0},
        (),
    ),
    "F": (
        Problem(
            (circuit("main", 10),),
            (wallbox("x", 6, 16), wallbox("y", 6, 16, on=True)),
        ),
        {"x": 0.0, "y": 10.0},
        (),
    ),
    "G": (
        Problem(
            # row's L1 is over its limit on unmanaged load alone (a silent pile's worst case);
            # main's unmanaged load includes it. leaf's own L1 is fine, but it hangs on row.
            (
                circuit("main", (40, 40, 40), unmanaged=(17, 0, 0)),
                circuit("row", (16, 16, 16), parent="main", unmanaged=(17, 0, 0)),
                circuit("leaf", (10, 10, None), parent="row"),
            ),
            (
                socket("r1", 2, "row", phase=1),
                socket("r2", 2, "row", phase=2),
                socket("r3", 2, "row", phase=3),
                wallbox("w2", 6, 16, "row", phases=(2,)),
                wallbox("w3", 6, 16, "row", phases=(1, 2, 3)),
                socket("leaf1", 2, "leaf", phase=1),
                socket("leaf2", 2, "leaf", phase=2),
                socket("m1", 2, "main", phase=1),
                wallbox("wm", 6, 32, "main", phases=(1, 2, 3)),
            ),
        ),
        # On row's L2 and L3 (and leaf's L2) bays charge as usual: w2 fills row's L2 at 12.
        # Nothing is added to row's L1: not r1, not leaf1, not the 3-phase w3. wm on main
        # is held by main's L1, which carries row's 17 A: 17 + 2 + 21 = 40.
        {
            "r1": 0.0,
            "r2": 2.0,
            "r3": 2.0,
            "w2": 12.0,
            "w3": 0.0,
            "leaf1": 0.0,
            "leaf2": 2.0,
            "m1": 2.0,
            "wm": 21.0,
        },
        (("row", 1),),
    ),
}


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("name", EXAMPLES)
def test_worked_example(solver: str, name: str) -> None:
    problem, setpoints, infeasible = EXAMPLES[name]
    result = SOLVERS[solver](problem)
    assert result.setpoints == pytest.approx(setpoints, abs=1e-9)
    assert result.infeasible == infeasible


@pytest.mark.parametrize("solver", SOLVERS)
def test_example_a_circuit_report(solver: str) -> None:
    result = SOLVERS[solver](EXAMPLES["A"][0])
    assert result.planned_a == {"main": pytest.approx((20.0, None, None))}
    assert result.binding == {"main": (True, None, None)}


@pytest.mark.parametrize("solver", SOLVERS)
def test_example_c_phases(solver: str) -> None:
    result = SOLVERS[solver](EXAMPLES["C"][0])
    # L1 carries the socket and the wallbox and is full; L2 and L3 have 3 A to spare.
    assert result.planned_a["main"] == pytest.approx((16.0, 13.0, 13.0))
    assert result.binding["main"] == (True, False, False)


@pytest.mark.parametrize("solver", SOLVERS)
def test_example_d_infeasible_circuit_is_reported_and_binding(solver: str) -> None:
    result = SOLVERS[solver](EXAMPLES["D"][0])
    assert result.planned_a["row-a"] == (11.0, None, None)
    assert result.binding["row-a"] == (True, None, None)
    assert result.planned_a["main"] == pytest.approx((13.0, None, None))


@pytest.mark.parametrize("solver", SOLVERS)
def test_example_e_sub_circuit_binds_first(solver: str) -> None:
    result = SOLVERS[solver](EXAMPLES["E"][0])
    assert result.binding == {
        "main": (True, None, None),
        "A": (True, None, None),
        "B": (False, None, None),
    }


@pytest.mark.parametrize("solver", SOLVERS)
def test_example_g_an_infeasible_phase_blocks_only_that_phase(solver: str) -> None:
    result = SOLVERS[solver](EXAMPLES["G"][0])
    # row's L1 stays at its unmanaged load: over the limit, so nothing is added to it.
    assert result.planned_a["row"] == pytest.approx((17.0, 16.0, 2.0))
    assert result.binding["row"] == (True, True, False)
    assert result.planned_a["leaf"] == pytest.approx((0.0, 2.0, None))
    assert result.planned_a["main"] == pytest.approx((40.0, 37.0, 23.0))
    assert result.binding["main"] == (True, False, False)
