"""Hand-made cases for corners of the kernel that random problems rarely reach."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from chargectl.alloc.allocator import plan
from chargectl.alloc.problem import Plan, Problem
from chargectl.alloc.reference import reference_plan
from tests.alloc.build import circuit, socket, wallbox
from tests.alloc.rules import check_rules

SOLVERS: dict[str, Callable[[Problem], Plan]] = {"kernel": plan, "reference": reference_plan}


def solve(solver: str, problem: Problem) -> Plan:
    result = SOLVERS[solver](problem)
    check_rules(problem, result)
    return result


@pytest.mark.parametrize("solver", SOLVERS)
def test_a_fill_level_that_moves_up_is_reordered(solver: str) -> None:
    # main would fill at level 10 while a, b, c all rise; a stops at 8, which moves main's
    # fill to 11, behind row's 10.5: row must fill first (c at 10.5), then main (b at 11.5).
    problem = Problem(
        (circuit("main", 30), circuit("row", 10.5, parent="main")),
        (wallbox("a", 6, 8), wallbox("b", 6, 16), wallbox("c", 6, 16, "row")),
    )
    assert solve(solver, problem).setpoints == pytest.approx({"a": 8, "b": 11.5, "c": 10.5})


@pytest.mark.parametrize("solver", SOLVERS)
def test_fit_has_a_nanoamp_of_slack(solver: str) -> None:
    # 0.1 + 0.2 is 0.30000000000000004 in binary floating point: still a fit.
    problem = Problem(
        (circuit("main", 0.3),),
        (socket("a", 0.1), socket("b", 0.2, credit=1.0)),
    )
    assert solve(solver, problem).setpoints == {"a": 0.1, "b": 0.2}


@pytest.mark.parametrize("solver", SOLVERS)
def test_one_limit_per_phase(solver: str) -> None:
    # L2 is the tight phase: the 3-phase wallbox is held by L2 while L1 has room, and a
    # socket on L1 still fits.
    problem = Problem(
        (circuit("main", (32, 10, 32), unmanaged=(0, 2, 0)),),
        (wallbox("w", 6, 16, phases=(1, 2, 3)), socket("s", 2.5, phase=1, credit=1.0)),
    )
    result = solve(solver, problem)
    assert result.setpoints == pytest.approx({"w": 8.0, "s": 2.5})
    assert result.binding["main"] == (False, True, False)


@pytest.mark.parametrize("solver", SOLVERS)
def test_a_socket_behind_a_wallbox_does_not_take_what_the_wallbox_rises_into(
    solver: str,
) -> None:
    # L1 is the tight phase. The three-phase car is ahead in order (less credit): it holds
    # 16 A on L1, so of the sockets behind it only two fit in the 4 A left, and the car gets
    # 16 A on all three phases, not 6 A plus what eight sockets leave on L1.
    sockets = [socket(f"s{i}", 2.0, phase=1, credit=1.0 + i) for i in range(8)]
    problem = Problem(
        (circuit("main", (20, 32, 32)),),
        (wallbox("car", 6, 16, phases=(1, 2, 3)), *sockets),
    )
    result = solve(solver, problem).setpoints
    assert result["car"] == pytest.approx(16.0)
    assert [result[f"s{i}"] for i in range(8)] == [2.0, 2.0] + [0.0] * 6


@pytest.mark.parametrize("solver", SOLVERS)
def test_a_socket_ahead_of_a_wallbox_keeps_its_place(solver: str) -> None:
    # The sockets have less credit: they are admitted first, the car gets what they leave.
    sockets = [socket(f"s{i}", 2.0, phase=1) for i in range(4)]
    problem = Problem(
        (circuit("main", (20, 32, 32)),),
        (*sockets, wallbox("car", 6, 16, phases=(1, 2, 3), credit=1.0)),
    )
    result = solve(solver, problem).setpoints
    assert result == pytest.approx({"s0": 2, "s1": 2, "s2": 2, "s3": 2, "car": 12})


@pytest.mark.parametrize("solver", SOLVERS)
def test_wallboxes_still_share_among_themselves(solver: str) -> None:
    # What a wallbox holds keeps out only fixed bays: four cars on 32 A all start at 6 A
    # and share equally, though the first two could each have held 16 A.
    cars = [wallbox(f"w{i}", 6, 16, credit=float(i)) for i in range(4)]
    problem = Problem((circuit("main", 32),), tuple(cars))
    assert solve(solver, problem).setpoints == pytest.approx({f"w{i}": 8.0 for i in range(4)})


@pytest.mark.parametrize("solver", SOLVERS)
def test_a_wallbox_holds_only_what_had_room_when_its_turn_came(solver: str) -> None:
    # w0 holds 16, w1 only the 4 left above it (at least its 6): the socket behind them
    # finds 20 - 16 - 6 < 0 held, so it waits, and the two cars share the 20 A.
    problem = Problem(
        (circuit("main", 20),),
        (wallbox("w0", 6, 16), wallbox("w1", 6, 16, credit=1.0), socket("s", 2, credit=2.0)),
    )
    assert solve(solver, problem).setpoints == pytest.approx({"w0": 10, "w1": 10, "s": 0})


@pytest.mark.parametrize("solver", SOLVERS)
def test_higher_class_takes_the_extra_first(solver: str) -> None:
    problem = Problem(
        (circuit("main", 24),),
        (wallbox("lo", 6, 16), wallbox("hi", 6, 16, priority=1, credit=9.0)),
    )
    # Both admitted at 6; the higher class rises first, up to what the lower one leaves.
    assert solve(solver, problem).setpoints == pytest.approx({"lo": 8.0, "hi": 16.0})


@pytest.mark.parametrize("solver", SOLVERS)
def test_a_lower_class_on_a_full_circuit_stays_at_its_minimum(solver: str) -> None:
    problem = Problem(
        (circuit("main", 40), circuit("row", 14, parent="main")),
        (
            wallbox("hi", 6, 16, "row", priority=2),
            wallbox("lo", 6, 16, "row", priority=1),
            wallbox("free", 6, 16, "main", priority=1),
        ),
    )
    result = solve(solver, problem)
    assert result.setpoints == pytest.approx({"hi": 8.0, "lo": 6.0, "free": 16.0})


@pytest.mark.parametrize("solver", SOLVERS)
def test_ties_go_to_the_bay_already_on_then_to_the_lower_id(solver: str) -> None:
    problem = Problem(
        (circuit("main", 4),),
        (socket("b", 2), socket("c", 2, on=True), socket("a", 2)),
    )
    assert solve(solver, problem).setpoints == {"a": 2.0, "b": 0.0, "c": 2.0}


@pytest.mark.parametrize("solver", SOLVERS)
def test_bays_that_cannot_run_are_left_off(solver: str) -> None:
    problem = Problem(
        (circuit("main", 32),),
        (wallbox("zero", 6, 0), wallbox("below-min", 6, 4), wallbox("ok", 6, 16)),
    )
    assert solve(solver, problem).setpoints == {"zero": 0.0, "below-min": 0.0, "ok": 16.0}


@pytest.mark.parametrize("solver", SOLVERS)
def test_an_infeasible_phase_blocks_only_that_phase_below_it(solver: str) -> None:
    # row's L1 is over its limit on unmanaged load alone: a bay on row's L2 is admitted
    # (rule 4 is per phase), and so is one on L2 of the circuit below row.
    problem = Problem(
        (
            circuit("main", (63, 63, 63), unmanaged=(20, 0, 0)),
            circuit("row", (16, 16, None), parent="main", unmanaged=(17, 0, 0)),
            circuit("leaf", (None, 10, None), parent="row"),
        ),
        (
            socket("l1", 2, "row", phase=1),
            socket("l2", 2, "row", phase=2),
            socket("leaf", 2, "leaf", phase=2),
            socket("m", 2, "main", phase=1),
        ),
    )
    result = solve(solver, problem)
    assert result.setpoints == {"l1": 0.0, "l2": 2.0, "leaf": 2.0, "m": 2.0}
    assert result.infeasible == (("row", 1),)
    assert result.planned_a["row"] == (17.0, 4.0, None)
    assert result.planned_a["leaf"] == (None, 2.0, None)


@pytest.mark.parametrize("solver", SOLVERS)
def test_an_infeasible_phase_of_an_ancestor_blocks_that_phase_below_it(solver: str) -> None:
    # main's L2 is infeasible; row's own L2 is fine, but a bay on it draws on main's L2 too.
    # A wallbox with no minimum would fit anywhere else: not on main's L2 either.
    problem = Problem(
        (
            circuit("main", (32, 32, 32), unmanaged=(0, 33, 0)),
            circuit("row", (16, 16, 16), parent="main"),
        ),
        (
            socket("r1", 2, "row", phase=1),
            socket("r2", 2, "row", phase=2),
            wallbox("w2", 0, 16, "row", phases=(2,)),
            wallbox("w3", 6, 16, "row", phases=(1, 2, 3)),
            wallbox("w13", 0, 8, "row", phases=(1, 3)),
        ),
    )
    result = solve(solver, problem)
    assert result.setpoints == pytest.approx(
        {"r1": 2.0, "r2": 0.0, "w2": 0.0, "w3": 0.0, "w13": 8.0}
    )
    assert result.infeasible == (("main", 2),)
    assert result.planned_a["main"] == pytest.approx((10.0, 33.0, 8.0))


@pytest.mark.parametrize("solver", SOLVERS)
def test_an_infeasible_phase_of_a_sub_circuit_leaves_its_parent_alone(solver: str) -> None:
    # leaf's L3 is infeasible; a 3-phase wallbox on main does not draw on leaf and rises to
    # what main's L3 leaves (leaf's unmanaged load is part of main's): 20 - 12 = 8.
    problem = Problem(
        (
            circuit("main", (20, 20, 20), unmanaged=(0, 0, 12)),
            circuit("leaf", (None, None, 10), parent="main", unmanaged=(0, 0, 12)),
        ),
        (wallbox("w", 6, 16, "main", phases=(1, 2, 3)), socket("s", 1, "leaf", phase=3)),
    )
    result = solve(solver, problem)
    assert result.setpoints == pytest.approx({"w": 8.0, "s": 0.0})
    assert result.infeasible == (("leaf", 3),)
    assert result.binding["main"] == (False, False, True)


@pytest.mark.parametrize("solver", SOLVERS)
def test_infeasible_means_more_than_a_nanoamp_over(solver: str) -> None:
    # Unmanaged load at the limit plus 1e-9 A is still feasible (and full); a hair more is not.
    problem = Problem(
        (
            circuit("main", (32, 32, 32)),
            circuit("edge", (10, 10, None), parent="main", unmanaged=(10 + 1e-9, 10 + 3e-9, 0)),
        ),
        (wallbox("w1", 0, 16, "edge", phases=(1,)), wallbox("w2", 0, 16, "edge", phases=(2,))),
    )
    result = solve(solver, problem)
    assert result.infeasible == (("edge", 2),)
    # w1 is admitted at 0 A (its minimum fits with the 1e-9 A of slack), w2 is not.
    assert result.setpoints["w1"] == pytest.approx(0.0, abs=1e-9)
    assert result.setpoints["w2"] == 0.0


@pytest.mark.parametrize("solver", SOLVERS)
def test_a_wallbox_with_no_minimum_rises_from_zero(solver: str) -> None:
    problem = Problem((circuit("main", 10),), (wallbox("a", 0, 16), wallbox("b", 0, 3)))
    assert solve(solver, problem).setpoints == pytest.approx({"a": 7.0, "b": 3.0})


@pytest.mark.parametrize("solver", SOLVERS)
def test_two_supplies(solver: str) -> None:
    problem = Problem(
        (circuit("left", 10), circuit("right", 20)),
        (wallbox("l", 6, 16, "left"), wallbox("r", 6, 16, "right")),
    )
    assert solve(solver, problem).setpoints == pytest.approx({"l": 10.0, "r": 16.0})


@pytest.mark.parametrize("solver", SOLVERS)
def test_empty_problem(solver: str) -> None:
    result = solve(solver, Problem((circuit("main", 10, unmanaged=3),), ()))
    assert result.setpoints == {}
    assert result.planned_a == {"main": (3.0, None, None)}
    assert result.binding == {"main": (False, None, None)}
