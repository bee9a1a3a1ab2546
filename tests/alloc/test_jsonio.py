"""The JSON problem format: round trips and every kind of bad input."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings

from chargectl.alloc.allocator import plan
from chargectl.alloc.jsonio import (
    loads_problem,
    parse_problem,
    plan_from_json,
    plan_to_json,
    problem_to_json,
)
from chargectl.alloc.problem import Problem, ProblemError
from tests.alloc.build import problems

DOC: dict[str, Any] = {
    "circuits": [
        {"id": "main", "parent": None, "limit_a": [63, 63, 63], "unmanaged_a": [2.0, 0.5, 0.0]},
        {"id": "row-a", "parent": "main", "limit_a": [40, None, None], "unmanaged_a": [0, 0, 0]},
    ],
    "bays": [
        {
            "id": "pile-a/1",
            "circuit": "row-a",
            "phases": [1, 0, 0],
            "min_a": 1.4,
            "max_a": 1.4,
            "priority": 0,
            "credit": 0.35,
            "on": True,
        },
        {
            "id": "wallbox-1",
            "circuit": "main",
            "phases": [1, 1, 1],
            "min_a": 6,
            "max_a": 16,
            "priority": 0,
            "credit": 2.1,
            "on": False,
        },
    ],
}


def test_the_issue_example_parses_and_plans() -> None:
    problem = parse_problem(DOC)
    assert problem.circuits[1].phases == (1,)
    assert problem.bays[1].phases == (1, 2, 3)
    out = plan_to_json(plan(problem))
    assert out["setpoints"] == {"pile-a/1": 1.4, "wallbox-1": 16.0}
    row = out["circuits"]["row-a"]
    assert row == {"planned_a": [1.4, None, None], "binding": [False, None, None]}
    assert out["infeasible"] == []


def test_optional_fields_default() -> None:
    problem = loads_problem(
        '{"circuits": [{"id": "m", "limit_a": [10, null, null]}],'
        ' "bays": [{"id": "b", "circuit": "m", "phases": [1, 0, 0], "min_a": 2, "max_a": 2}]}'
    )
    assert problem.circuits[0].parent is None
    assert problem.circuits[0].unmanaged_a == (0.0, 0.0, 0.0)
    bay = problem.bays[0]
    assert (bay.priority, bay.credit, bay.on) == (0, 0.0, False)


def test_max_below_min_is_not_an_error() -> None:
    doc = copy.deepcopy(DOC)
    doc["bays"][1]["max_a"] = 4  # a car that wants less than 6 A: left off, not refused
    assert plan(parse_problem(doc)).setpoints["wallbox-1"] == 0.0


@settings(max_examples=40, deadline=None)
@given(problems(max_bays=30))
def test_problem_round_trip(problem: Problem) -> None:
    text = json.dumps(problem_to_json(problem))
    assert loads_problem(text) == problem


@settings(max_examples=20, deadline=None)
@given(problems(max_bays=30))
def test_plan_round_trip(problem: Problem) -> None:
    result = plan(problem)
    assert plan_from_json(json.loads(json.dumps(plan_to_json(result)))) == result


def _bad(path: str, value: object) -> dict[str, Any]:
    """DOC with one value replaced (or removed, for value ...)."""
    doc = copy.deepcopy(DOC)
    *head, last = path.split(".")
    at: Any = doc
    for key in head:
        at = at[int(key)] if key.isdigit() else at[key]
    if value is ...:
        del at[last]
    elif last.isdigit():
        at[int(last)] = value
    else:
        at[last] = value
    return doc


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "problem: expected an object"),
        (_bad("bays", {}), "problem.bays: expected a list"),
        (_bad("extra", 1), "problem: unknown key 'extra'"),
        (_bad("circuits.1.parent", "nowhere"), "circuit 'row-a': unknown parent circuit 'nowhere'"),
        (_bad("circuits.0.parent", "row-a"), "circuit 'main': parents form a cycle"),
        (_bad("circuits.1.id", "main"), "circuit 'main': duplicate circuit id"),
        (_bad("bays.1.id", "pile-a/1"), "bay 'pile-a/1': duplicate bay id"),
        (_bad("bays.0.circuit", "row-z"), "bay 'pile-a/1': unknown circuit 'row-z'"),
        (_bad("bays.0.phases", [0, 1, 0]), "bay 'pile-a/1': draws on L2 but its circuit 'row-a'"),
        (_bad("bays.0.phases", [2, 0, 0]), r"bays\[0\] \(bay 'pile-a/1'\).phases\[0\]: expected 0"),
        (_bad("bays.0.phases", [True, 0, 0]), r"phases\[0\]: expected 0 or 1, got True"),
        (_bad("bays.0.phases", [0, 0, 0]), "bay 'pile-a/1'.*draws on no phase"),
        (_bad("bays.0.phases", [1, 0]), r"phases: expected 3 entries \(L1, L2, L3\)"),
        (_bad("bays.1.min_a", -6), r"bay 'wallbox-1'\).min_a: expected a finite number >= 0"),
        (_bad("bays.1.max_a", float("nan")), r"bay 'wallbox-1'\).max_a: expected a finite"),
        (_bad("bays.1.max_a", "16"), r"max_a: expected a number, got '16'"),
        (_bad("bays.1.min_a", ...), r"bay 'wallbox-1'\).min_a: missing"),
        (_bad("bays.1.credit", float("inf")), r"bay 'wallbox-1'\).credit: expected a finite"),
        (_bad("bays.1.priority", 1.5), r"priority: expected an integer 0 \.\. 2147483647, got 1.5"),
        (_bad("bays.1.priority", -1), r"priority: expected an integer 0 \.\. 2147483647, got -1"),
        (_bad("bays.1.priority", 2**31), r"priority: expected an integer 0 .*, got 2147483648"),
        (_bad("bays.1.on", 1), r"bay 'wallbox-1'\).on: expected true or false"),
        (_bad("bays.1.colour", "red"), r"bay 'wallbox-1'\): unknown key 'colour'"),
        (_bad("bays.1.id", ""), r"bays\[1\].id: expected a non-empty string"),
        (_bad("circuits.0.limit_a.1", -1), r"circuit 'main'\).limit_a\[1\]: expected a finite"),
        (_bad("circuits.0.limit_a", [None, None, None]), "circuit 'main'.*carries no phase"),
        (_bad("circuits.0.unmanaged_a.2", float("nan")), r"unmanaged_a\[2\]: expected a finite"),
        (_bad("circuits.1.unmanaged_a.1", 3), r"circuit 'row-a'\).unmanaged_a\[1\]: L2 has no"),
        (_bad("circuits.1.parent", 7), r"circuit 'row-a'\).parent: expected a circuit id"),
        (
            _bad("circuits.1.limit_a", [None, 40, None]),
            "bay 'pile-a/1': draws on L1 but its circuit 'row-a' has no L1",
        ),
        (
            {
                "circuits": [
                    {"id": "main", "limit_a": [63, None, 63]},
                    {"id": "row-a", "parent": "main", "limit_a": [None, 40, None]},
                ],
                "bays": [],
            },
            "circuit 'row-a': carries L2 but its parent 'main' does not",
        ),
    ],
)
def test_bad_problems_name_what_and_where(doc: object, message: str) -> None:
    with pytest.raises(ProblemError, match=message):
        parse_problem(doc)


def test_not_json() -> None:
    with pytest.raises(ProblemError, match="not JSON"):
        loads_problem("{circuits: []}")


def test_json_nan_literal_is_refused() -> None:
    text = json.dumps(DOC).replace("16", "NaN", 1)
    with pytest.raises(ProblemError, match=r"max_a: expected a finite number >= 0, got nan"):
        loads_problem(text)
