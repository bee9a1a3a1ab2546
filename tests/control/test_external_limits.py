"""Caps set from above (circuits/limit): only ever lower, end by themselves on the injected
clock, a new one replaces the old, the configured limit clears; every refusal changes nothing.
And the core plans under a cap."""

from __future__ import annotations

import math

import numpy as np
import pytest

from chargectl.control.external_limits import (
    MAX_TTL_S,
    ExternalLimits,
    LimitRefused,
    UnknownCircuit,
)

IDS = ("main", "row-a", "row-b")
CONFIG = (60.0, 40.0, 32.0)


def fresh() -> ExternalLimits:
    return ExternalLimits(IDS, CONFIG)


def test_a_cap_lowers_every_phase_of_its_circuit_until_it_runs_out() -> None:
    ext = fresh()
    cap = ext.set("row-a", 25, 60, now=100.0)
    assert cap is not None and (cap.circuit, cap.limit_a, cap.until) == ("row-a", 25.0, 160.0)
    limit = np.array([[60.0] * 3, [40.0, 0.0, 0.0], [32.0] * 3])
    capped = ext.apply(159.9, limit)
    assert capped.tolist() == [[60.0] * 3, [25.0, 0.0, 0.0], [32.0] * 3]
    assert ext.in_force(159.9)["row-a"].left_s(159.9) == pytest.approx(0.1)
    assert ext.apply(160.0, limit).tolist() == limit.tolist()  # run out: forgotten
    assert ext.in_force(160.0) == {}


def test_a_cap_never_raises_a_limit_already_lower() -> None:
    ext = fresh()
    ext.set("main", 50, 10, now=0.0)
    derated = np.array([[45.0] * 3, [40.0] * 3, [32.0] * 3])  # a hot breaker: lower already
    assert ext.apply(1.0, derated)[0].tolist() == [45.0] * 3


def test_a_new_cap_replaces_the_old_and_the_configured_limit_clears_it() -> None:
    ext = fresh()
    ext.set("main", 20, 600, now=0.0)
    ext.set("main", 35.5, 5, now=1.0)  # higher, shorter: replaces
    assert (ext.in_force(2.0)["main"].limit_a, ext.in_force(2.0)["main"].until) == (35.5, 6.0)
    assert ext.set("main", 60, 5, now=3.0) is None
    assert ext.in_force(3.0) == {}
    assert ext.set("main", 60.0, 5, now=3.0) is None  # clearing twice: the same


def test_zero_amperes_is_a_cap() -> None:
    cap = fresh().set("row-b", 0, 1, now=0.0)
    assert cap is not None and cap.limit_a == 0.0


@pytest.mark.parametrize(
    ("circuit", "limit_a", "ttl_s", "message"),
    [
        ("row-z", 10, 60, "unknown circuit 'row-z'; known: main, row-a, row-b"),
        (None, 10, 60, "unknown circuit 'None'"),
        ("row-a", 40.5, 60, "limit_a 40.5 A is above row-a's configured limit of 40 A"),
        ("row-a", -1, 60, "limit_a must be at least 0 A, got -1"),
        ("row-a", math.nan, 60, "limit_a must be a finite number, got nan"),
        ("row-a", math.inf, 60, "limit_a must be a finite number, got inf"),
        ("row-a", "20", 60, "limit_a must be a number, got str"),
        ("row-a", True, 60, "limit_a must be a number, got bool"),
        ("row-a", None, 60, "limit_a must be a number, got null"),
        ("row-a", 20, 0, "ttl_s must be above 0 and at most 86400 s, got 0"),
        ("row-a", 20, -5, "ttl_s must be above 0 and at most 86400 s, got -5"),
        ("row-a", 20, MAX_TTL_S + 1, "ttl_s must be above 0 and at most 86400 s, got 86401"),
        ("row-a", 20, 10**30, "ttl_s 10000000000000000000 is out of range"),
        ("row-a", 20, math.nan, "ttl_s must be a finite number, got nan"),
        ("row-a", 20, [60], "ttl_s must be a number, got list"),
        ("row-a", 40, 0, "ttl_s must be above 0"),  # a clear checks its ttl too
    ],
)  # fmt: skip
def test_a_bad_cap_is_refused_and_changes_nothing(
    circuit: object, limit_a: object, ttl_s: object, message: str
) -> None:
    ext = fresh()
    before = ext.set("row-a", 30, 100, now=0.0)
    with pytest.raises(LimitRefused) as info:
        ext.set(circuit, limit_a, ttl_s, now=1.0)
    assert message in str(info.value)
    assert ext.in_force(1.0) == {"row-a": before}
    if circuit not in IDS:
        assert isinstance(info.value, UnknownCircuit)


def test_the_core_plans_under_a_cap_inside_min_on_and_again_to_the_limit_after_it() -> None:
    from tests.control.test_core import make, physical, want

    _shed, lay, core, obs = make(ports=8, row_limit=16.0, main_limit=30.0)
    demand = want(lay, [f"pa/{i}" for i in range(1, 9)])
    row = lay.circuit_ids.index("row-a")
    for t in range(4):
        core.step(float(t), obs, demand)
        physical(lay, core, obs, 2.0)
    before = int(core.on.sum())
    assert before >= 5  # 16 A at 2.5 A a socket (2 A + the ramp margin)
    core.external.set("row-a", 7.0, 30.0, now=4.0)
    d = core.step(4.5, obs, demand)  # well inside min_on: the pins do not hold it
    assert d.limit_a[row, 0] == 7.0 and d.external_caps["row-a"].limit_a == 7.0
    assert (d.planned_a[row] <= 7.0 + 1e-9).all()
    assert 0 < int(d.relay_on.sum()) < before
    physical(lay, core, obs, 2.0)
    d = core.step(5.0, obs, demand, shed_only=True)
    assert (d.planned_a[row] <= 7.0 + 1e-9).all()
    for t in range(6, 200, 5):  # past the cap's end and min_off: back to the row's limit
        physical(lay, core, obs, 2.0)
        d = core.step(float(t), obs, demand)
    assert d.external_caps == {} and d.limit_a[row, 0] == 16.0
    assert int(d.relay_on.sum()) >= before
    assert d.planned_a[row, 0] > 16.0 - 2.5  # the row filled again: no room for one more
