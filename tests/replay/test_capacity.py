"""The capacity planner: the shed scaled to a socket count (a valid config the simulator
builds), the sweep on a local process pool and on a Dask cluster (the same rows), and the
summary and answer over seeds. The replay itself is a fake here: `fake_run`, deterministic
from (sockets, seed), top-level so that it pickles into the workers."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from chargectl.config.check import check_shed
from chargectl.config.load import load_shed
from chargectl.config.schema import Shed
from chargectl.replay.capacity import (
    largest_ok,
    parse_range,
    scaled_shed,
    socket_count,
    sweep,
    table,
)
from chargectl.sim.world import World
from chargectl.topology import topology_of

ROOT = Path(__file__).resolve().parents[2]
CAMPUS = ROOT / "deploy" / "examples" / "campus.yaml"
SMALL = ROOT / "deploy" / "examples" / "small.yaml"
ROW_A = ["pile-a1", "pile-a2", "pile-a3", "pile-a4", "pile-a5"]
SCENARIO = str(ROOT / "sim" / "scenarios" / "evening-peak.yaml")  # campus, seed 11


@pytest.fixture(scope="module")
def campus() -> Shed:
    return load_shed(CAMPUS)


@pytest.fixture(scope="module")
def small() -> Shed:
    return load_shed(SMALL)


def piles(shed: Shed) -> list[str]:
    return list(topology_of(shed).pile_bays)


def assert_valid(shed: Shed) -> None:
    errors = [str(p) for p in check_shed(shed) if p.severity == "error"]
    assert errors == []
    units = Counter((d.bus, d.unit) for d in shed.devices)
    assert max(units.values()) == 1
    World(shed)  # the simulator builds it


# ---------------------------------------------------------------- scaled_shed


@pytest.mark.parametrize("sockets", [201, 220, 300, 1000])
def test_campus_grows_both_rows_on_their_own_bus_and_lightest_phase(
    campus: Shed, sockets: int
) -> None:
    out = scaled_shed(campus, sockets)
    want = -(-sockets // 20) * 20  # the least multiple of a 20-socket pile
    assert socket_count(out) == want
    added = [d for d in out.devices if d.id not in {c.id for c in campus.devices}]
    assert len(added) == (want - 200) // 20
    # Round robin over the rows, a row-a pile first; each on its row's bus, next free unit.
    assert [d.circuit for d in added] == ["row-a", "row-b"] * (len(added) // 2) + ["row-a"] * (
        len(added) % 2
    )
    bus_of = {"row-a": "line-a", "row-b": "line-b"}
    assert all(d.bus == bus_of[str(d.circuit)] for d in added)
    assert all(d.kind == "pile" and d.ports == 20 for d in added)
    assert added[0].id == "pile-a5-x1" and added[0].unit == 6 and added[0].phases == (3,)
    # Phases stay balanced: per row, socket counts per phase differ by at most one pile.
    for row in ("row-a", "row-b"):
        per_phase = Counter(d.phases[0] for d in out.devices if d.circuit == row)
        assert max(per_phase.values()) - min(per_phase.values()) <= 1
    assert [d.id for d in out.devices[: len(campus.devices)]] == [d.id for d in campus.devices]
    assert out.sim == campus.sim
    assert_valid(out)


def test_campus_skips_a_unit_taken_by_a_meter(campus: Shed) -> None:
    out = scaled_shed(campus, 360)  # 8 more piles: 4 per row, units 6..9 on each line
    units = sorted(d.unit for d in out.devices if d.bus == "line-a" and d.kind == "pile")
    assert units == list(range(1, 10))
    out = scaled_shed(campus, 400)  # 5 per row: unit 10 is the row meter's
    units = sorted(d.unit for d in out.devices if d.bus == "line-a" and d.kind == "pile")
    assert units == [*range(1, 10), 11]
    assert_valid(out)


@pytest.mark.parametrize(
    ("sockets", "left"),
    [
        (
            199,
            [*ROW_A, "pile-b1", "pile-b2", "pile-b3", "pile-b4", "pile-b5"],
        ),
        (
            180,
            [*ROW_A, "pile-b1", "pile-b2", "pile-b3", "pile-b4"],
        ),
        (140, ["pile-a1", "pile-a2", "pile-a3", "pile-a4", "pile-b1", "pile-b2", "pile-b3"]),
        (21, ["pile-a1", "pile-b1"]),
        (20, ["pile-a1"]),
        (1, ["pile-a1"]),
    ],
)
def test_campus_shrinks_from_the_fuller_row_and_keeps_wallboxes_and_meters(
    campus: Shed, sockets: int, left: list[str]
) -> None:
    out = scaled_shed(campus, sockets)
    assert piles(out) == left
    assert socket_count(out) == 20 * len(left)
    others = [d.id for d in campus.devices if d.kind != "pile"]
    assert [d.id for d in out.devices if d.kind != "pile"] == others
    # The charger in pile-b3's bay goes with its pile; the wallbox's car stays.
    bays = [c.bay for c in out.sim.chargers]
    assert ("pile-b3/7" in bays) == ("pile-b3" in left)
    assert out.sim.cars == campus.sim.cars
    assert_valid(out)


def test_same_count_is_the_same_shed(campus: Shed, small: Shed) -> None:
    assert scaled_shed(campus, 200) is campus
    assert scaled_shed(small, 12) is small


def test_small_grows_on_its_one_phase_and_shrinks_to_one_pile(small: Shed) -> None:
    out = scaled_shed(small, 30)
    assert piles(out) == ["pile-a", "pile-a-x1", "pile-a-x2"]
    assert socket_count(out) == 36
    added = out.devices[len(small.devices) :]
    assert [(d.unit, d.phases, d.circuit, d.bus) for d in added] == [
        (2, (1,), "main", "line-1"),
        (3, (1,), "main", "line-1"),
    ]
    assert_valid(out)
    assert scaled_shed(small, 5) is small  # never below one pile


def test_fixed_port_template_counts_sockets_from_the_topology(small: Shed) -> None:
    ten = dataclasses.replace(
        small,
        devices=tuple(
            (
                dataclasses.replace(d, kind="voltbay10", ports=10, port_power_limit_w=1500)
                if d.id == "pile-a"
                else d
            )
            for d in small.devices
        ),
    )
    assert_valid(ten)
    assert socket_count(ten) == 10
    out = scaled_shed(ten, 25)
    assert socket_count(out) == 30
    assert_valid(out)


def test_a_bus_out_of_unit_ids_is_a_clear_error(small: Shed) -> None:
    # 245 units are free on line-1 (1 pile, 1 meter); 12 sockets each.
    assert socket_count(scaled_shed(small, 246 * 12)) == 246 * 12
    with pytest.raises(ValueError, match=r"bus 'line-1' has no free Modbus unit id \(1\.\.247\)"):
        scaled_shed(small, 246 * 12 + 1)


def test_a_shed_without_piles_or_zero_sockets_is_refused(small: Shed) -> None:
    meter_only = dataclasses.replace(
        small, devices=tuple(d for d in small.devices if d.kind != "pile"), sim=small.sim
    )
    with pytest.raises(ValueError, match="no pile"):
        scaled_shed(meter_only, 10)
    with pytest.raises(ValueError, match="must be >= 1"):
        scaled_shed(small, 0)


# ---------------------------------------------------------------- sweep


def fake_run(scenario_path: str, sockets: int | None, seed: int) -> dict[str, Any]:
    """Served ratio falls with sockets and varies with the seed; 300 sockets trip; 20
    sockets see no session at all."""
    assert sockets is not None
    if sockets == 20:
        return {"served_ratio": None, "wait_p95_s": None, "trips": 0, "sessions": 0}
    return {
        "served_ratio": 1.2 - sockets / 1000 - (seed % 5) / 100,
        "wait_p95_s": sockets * 10.0 + seed,
        "trips": 1 if sockets >= 300 and seed % 5 == 0 else 0,
        "sessions": 10,
        "seed": seed,
    }


def failing_run(scenario_path: str, sockets: int | None, seed: int) -> dict[str, Any]:
    raise RuntimeError(f"replay failed at {sockets} sockets, seed {seed}")


COUNTS = [20, 150, 200, 240, 300]
SEEDS = 5  # 11..15: seed % 5 is 1, 2, 3, 4, 0


def expected_rows() -> list[dict[str, Any]]:
    rows = [
        {
            "asked": 20,
            "sockets": 20,
            "runs": 5,
            "served_ratio_p5": 1.0,
            "served_ratio_p95": 1.0,
            "wait_p95_s_p5": None,
            "wait_p95_s_p95": None,
            "trips_max": 0,
            "ok": True,
        }
    ]
    for asked, sockets in ((150, 160), (200, 200), (240, 240), (300, 300)):
        base = 1.2 - sockets / 1000
        # Five values base - 0.04 .. base: p5 is 0.2 of the way from the lowest to the next.
        low, high = base - 0.04 + 0.2 * 0.01, base - 0.2 * 0.01
        waits_low, waits_high = sockets * 10 + 11 + 0.2, sockets * 10 + 15 - 0.2
        rows.append(
            {
                "asked": asked,
                "sockets": sockets,
                "runs": 5,
                "served_ratio_p5": pytest.approx(low),
                "served_ratio_p95": pytest.approx(high),
                "wait_p95_s_p5": pytest.approx(waits_low),
                "wait_p95_s_p95": pytest.approx(waits_high),
                "trips_max": 1 if sockets == 300 else 0,
                "ok": low >= 0.95 and sockets < 300,
            }
        )
    return rows


def test_sweep_on_a_process_pool_summarises_each_count() -> None:
    progress: list[tuple[int, int]] = []
    rows = sweep(
        SCENARIO,
        COUNTS,
        SEEDS,
        run=fake_run,
        workers=2,
        on_done=lambda done, total: progress.append((done, total)),
    )
    assert rows == expected_rows()
    assert [r["ok"] for r in rows] == [True, True, True, False, False]
    assert largest_ok(rows) == 200
    assert progress == [(i, 25) for i in range(1, 26)]
    text = table(rows)
    assert "served p5" in text.splitlines()[0]
    assert text.endswith("with 0 trips: 200")


def test_sweep_on_a_dask_cluster_gives_the_same_rows() -> None:
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
    )
    try:
        progress: list[tuple[int, int]] = []
        rows = sweep(
            SCENARIO,
            COUNTS,
            SEEDS,
            run=fake_run,
            dask_address=cluster.scheduler_address,
            on_done=lambda done, total: progress.append((done, total)),
        )
    finally:
        cluster.close()
    assert rows == sweep(SCENARIO, COUNTS, SEEDS, run=fake_run, workers=2)
    assert rows == expected_rows()
    assert progress[-1] == (25, 25)


def test_sweep_counts_scaling_to_one_shed_are_run_once() -> None:
    calls: list[tuple[int, int]] = []
    rows = sweep(
        SCENARIO,
        [141, 150, 160],
        2,
        run=fake_run,
        workers=1,
        on_done=lambda done, total: calls.append((done, total)),
    )
    assert [(r["asked"], r["sockets"]) for r in rows] == [(141, 160), (150, 160), (160, 160)]
    assert calls[-1] == (2, 2)


def test_a_failing_run_fails_the_sweep() -> None:
    with pytest.raises(RuntimeError, match="replay failed at 200 sockets"):
        sweep(SCENARIO, [200], 2, run=failing_run, workers=1)


def test_a_missing_served_ratio_with_sessions_is_an_error() -> None:
    with pytest.raises(ValueError, match="no served_ratio"):
        sweep(SCENARIO, [200], 1, run=no_ratio_run, workers=1)


def no_ratio_run(scenario_path: str, sockets: int | None, seed: int) -> dict[str, Any]:
    return {"served_ratio": None, "wait_p95_s": 5.0, "trips": 0, "sessions": 3}


def row(sockets: int, ok: bool) -> dict[str, Any]:
    return {"sockets": sockets, "ok": ok}


def test_largest_ok_needs_every_smaller_count_ok() -> None:
    assert largest_ok([row(40, True), row(20, True), row(60, False)]) == 40
    assert largest_ok([row(20, True), row(40, False), row(60, True)]) == 20
    assert largest_ok([row(20, False), row(40, True)]) is None
    assert largest_ok([]) is None


# ---------------------------------------------------------------- parse_range


def test_parse_range() -> None:
    assert parse_range("100:200:50") == [100, 150, 200]
    assert parse_range("100:190:50") == [100, 150]
    assert parse_range(" 120 ") == [120]
    assert parse_range("5:5:1") == [5]
    assert parse_range("1:200:1") == list(range(1, 201))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "whole numbers expected"),
        ("a:b:c", "whole numbers expected"),
        ("1.5", "whole numbers expected"),
        ("100:200", "expected A:B:STEP or a single count"),
        ("1:2:3:4", "expected A:B:STEP or a single count"),
        ("200:100:10", "needs A <= B, got 200 > 100"),
        ("100:200:0", "STEP must be >= 1, got 0"),
        ("0:10:1", "counts start at 1, got 0"),
        ("-5", "counts start at 1, got -5"),
        ("1:201:1", "201 counts, at most 200"),
    ],
)
def test_parse_range_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"^--sockets: ") as info:
        parse_range(text)
    assert message in str(info.value)
