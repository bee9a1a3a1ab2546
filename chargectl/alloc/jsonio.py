"""The JSON problem format of `chargectl plan`, its validation, and the result's JSON.

```json
{"circuits": [{"id": "main", "parent": null, "limit_a": [63, 63, null],
               "unmanaged_a": [2.0, 0.5, 0]}],
 "bays": [{"id": "wb-1", "circuit": "main", "phases": [1, 1, 0], "min_a": 6, "max_a": 16,
           "priority": 0, "credit": 2.1, "on": false}]}
```
`parent`, `unmanaged_a` (zeros), `priority` (0), `credit` (0) and `on` (false) may be left
out. A phase a circuit lacks has `limit_a` null and `unmanaged_a` 0 or null. Every problem
raises `ProblemError` with the path into the document and the circuit or bay it concerns.
"""

from __future__ import annotations

import json
import math
from typing import Any

from chargectl.alloc.problem import (
    PHASES,
    PRIORITY_LIMIT,
    Plan,
    Problem,
    ProblemBay,
    ProblemCircuit,
    ProblemError,
    Topology,
)

_CIRCUIT_KEYS = {"id", "parent", "limit_a", "unmanaged_a"}
_BAY_KEYS = {"id", "circuit", "phases", "min_a", "max_a", "priority", "credit", "on"}


def loads_problem(text: str) -> Problem:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProblemError(f"not JSON: {exc}") from None
    return parse_problem(data)


def parse_problem(data: object) -> Problem:
    """A decoded JSON document to a validated `Problem` (values and structure)."""
    if not isinstance(data, dict):
        raise ProblemError("problem: expected an object with 'circuits' and 'bays'")
    _no_unknown_keys(data, {"circuits", "bays"}, "problem")
    circuits = tuple(
        _circuit(c, f"circuits[{i}]") for i, c in enumerate(_list(data, "circuits", "problem"))
    )
    bays = tuple(_bay(b, f"bays[{i}]") for i, b in enumerate(_list(data, "bays", "problem")))
    problem = Problem(circuits, bays)
    # Structure: unknown circuits, cycles, duplicates, phases a circuit lacks.
    Topology.build([c.spec() for c in circuits], [b.spec() for b in bays])
    return problem


def problem_to_json(problem: Problem) -> dict[str, Any]:
    return {
        "circuits": [
            {
                "id": c.id,
                "parent": c.parent,
                "limit_a": list(c.limit_a),
                "unmanaged_a": list(c.unmanaged_a),
            }
            for c in problem.circuits
        ],
        "bays": [
            {
                "id": b.id,
                "circuit": b.circuit,
                "phases": [1 if p in b.phases else 0 for p in PHASES],
                "min_a": b.min_a,
                "max_a": b.max_a,
                "priority": b.priority,
                "credit": b.credit,
                "on": b.on,
            }
            for b in problem.bays
        ],
    }


def plan_to_json(plan: Plan) -> dict[str, Any]:
    return {
        "setpoints": dict(plan.setpoints),
        "circuits": {
            cid: {"planned_a": list(plan.planned_a[cid]), "binding": list(plan.binding[cid])}
            for cid in plan.planned_a
        },
        "infeasible": [[cid, phase] for cid, phase in plan.infeasible],
    }


def plan_from_json(data: dict[str, Any]) -> Plan:
    """The inverse of `plan_to_json` (for tools and tests; trusts its input's shape)."""
    circuits = data["circuits"]
    return Plan(
        setpoints={k: float(v) for k, v in data["setpoints"].items()},
        planned_a={k: tuple(v["planned_a"]) for k, v in circuits.items()},
        binding={k: tuple(v["binding"]) for k, v in circuits.items()},
        infeasible=tuple((c, int(p)) for c, p in data["infeasible"]),
    )


# -- validation ----------------------------------------------------------------------------


def _circuit(obj: object, where: str) -> ProblemCircuit:
    d = _object(obj, where)
    cid = _id(d, where)
    where = f"{where} (circuit {cid!r})"
    _no_unknown_keys(d, _CIRCUIT_KEYS, where)
    parent = d.get("parent")
    if parent is not None and not isinstance(parent, str):
        raise ProblemError(f"{where}.parent: expected a circuit id or null, got {parent!r}")
    limits = _triple(d, "limit_a", where, required=True)
    limit_a = tuple(
        None if v is None else _amps(v, f"{where}.limit_a[{p}]") for p, v in enumerate(limits)
    )
    if all(v is None for v in limit_a):
        raise ProblemError(f"{where}.limit_a: carries no phase (every entry is null)")
    unmanaged_a: list[float] = []
    for p, v in enumerate(_triple(d, "unmanaged_a", where, required=False)):
        path = f"{where}.unmanaged_a[{p}]"
        if limit_a[p] is None:
            if v not in (None, 0):
                raise ProblemError(f"{path}: L{p + 1} has no limit (null), so must be 0 or null")
            unmanaged_a.append(0.0)
        else:
            unmanaged_a.append(0.0 if v is None else _amps(v, path))
    return ProblemCircuit(
        cid,
        parent,
        (limit_a[0], limit_a[1], limit_a[2]),
        (unmanaged_a[0], unmanaged_a[1], unmanaged_a[2]),
    )


def _bay(obj: object, where: str) -> ProblemBay:
    d = _object(obj, where)
    bid = _id(d, where)
    where = f"{where} (bay {bid!r})"
    _no_unknown_keys(d, _BAY_KEYS, where)
    circuit = d.get("circuit")
    if not isinstance(circuit, str):
        raise ProblemError(f"{where}.circuit: expected a circuit id, got {circuit!r}")
    mask = _triple(d, "phases", where, required=True)
    for p, v in enumerate(mask):
        if type(v) is not int or v not in (0, 1):
            raise ProblemError(f"{where}.phases[{p}]: expected 0 or 1, got {v!r}")
    phases = tuple(p for p in PHASES if mask[p - 1] == 1)
    if not phases:
        raise ProblemError(f"{where}.phases: draws on no phase (all 0)")
    priority = d.get("priority", 0)
    if type(priority) is not int or not 0 <= priority < PRIORITY_LIMIT:
        raise ProblemError(
            f"{where}.priority: expected an integer 0 .. {PRIORITY_LIMIT - 1}, got {priority!r}"
        )
    on = d.get("on", False)
    if not isinstance(on, bool):
        raise ProblemError(f"{where}.on: expected true or false, got {on!r}")
    return ProblemBay(
        id=bid,
        circuit=circuit,
        phases=phases,
        min_a=_amps(_required(d, "min_a", where), f"{where}.min_a"),
        max_a=_amps(_required(d, "max_a", where), f"{where}.max_a"),
        priority=priority,
        credit=_amps(d.get("credit", 0.0), f"{where}.credit"),
        on=on,
    )


def _object(obj: object, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ProblemError(f"{where}: expected an object, got {obj!r}")
    return obj


def _id(d: dict[str, Any], where: str) -> str:
    v = d.get("id")
    if not isinstance(v, str) or not v:
        raise ProblemError(f"{where}.id: expected a non-empty string, got {v!r}")
    return v


def _list(d: dict[str, Any], key: str, where: str) -> list[Any]:
    v = d.get(key)
    if not isinstance(v, list):
        raise ProblemError(f"{where}.{key}: expected a list, got {v!r}")
    return v


def _required(d: dict[str, Any], key: str, where: str) -> object:
    if key not in d:
        raise ProblemError(f"{where}.{key}: missing")
    return d[key]


def _triple(d: dict[str, Any], key: str, where: str, *, required: bool) -> list[Any]:
    if key not in d and not required:
        return [0, 0, 0]
    v = _required(d, key, where)
    if not isinstance(v, list) or len(v) != 3:
        raise ProblemError(f"{where}.{key}: expected 3 entries (L1, L2, L3), got {v!r}")
    return v


def _amps(v: object, where: str) -> float:
    """A finite number >= 0 (booleans are not numbers here)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ProblemError(f"{where}: expected a number, got {v!r}")
    x = float(v)
    if math.isnan(x) or math.isinf(x) or x < 0:
        raise ProblemError(f"{where}: expected a finite number >= 0, got {v!r}")
    return x


def _no_unknown_keys(d: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(d) - known)
    if unknown:
        raise ProblemError(
            f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})"
        )
