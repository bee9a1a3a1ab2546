"""The report's figures on small recordings built by hand, each number worked out in the test."""

from __future__ import annotations

import time

import numpy as np
import pytest

from chargectl.replay.recording import Mark, Recording, SessionRecord, empty
from chargectl.replay.report import energy_bound, goals, report, table


def recording(
    n: int,
    *,
    circuits: tuple[str, ...] = ("main",),
    phases: tuple[tuple[int, ...], ...] = ((1,),),
    limit_a: tuple[float, ...] = (16.0,),
    tick_s: float = 1.0,
    duration_s: float | None = None,
) -> Recording:
    """`n` ticks at 0, tick_s, 2 tick_s, ...; everything else zero (breakers closed)."""
    rec = empty(
        scenario="test",
        policy="chargectl",
        seed=1,
        tick_s=tick_s,
        duration_s=n * tick_s if duration_s is None else duration_s,
        circuits=circuits,
        phases=phases,
        limit_a=np.asarray(limit_a),
        n=n,
    )
    rec.times[:] = np.arange(n) * tick_s
    return rec


def session(
    id: int,
    tap_at: float,
    *,
    car: bool = False,
    first_current_at: float | None = None,
    end_at: float | None = None,
    end_reason: str | None = None,
    leave_at: float | None = None,
    soc_start: float = 0.0,
    soc_end: float = 0.0,
    wanted_wh: float = 500.0,
    max_w: float = 100.0,
    delivered_wh: float = 0.0,
    ledger_wh: float = 0.0,
    switches: int = 0,
    full: bool = False,
) -> SessionRecord:
    return SessionRecord(
        id=id,
        card=f"{id:08X}",
        bay=f"bay-{id}",
        car=car,
        plug_at=tap_at,
        tap_at=tap_at,
        first_current_at=first_current_at,
        end_at=end_at,
        end_reason=end_reason,
        leave_at=leave_at,
        soc_start=soc_start,
        soc_end=soc_end,
        wanted_wh=wanted_wh,
        max_w=max_w,
        delivered_wh=delivered_wh,
        ledger_wh=ledger_wh,
        switches=switches,
        full=full,
    )


def test_keys_in_order_and_undefined_figures_on_an_empty_recording() -> None:
    rep = report(recording(0))
    assert list(rep) == [
        "scenario", "policy", "seed", "simulated_s", "wall_s", "speedup", "ticks", "trips",
        "overload_s", "max_load_ratio", "breaker_peak_thermal", "energy_delivered_kwh",
        "energy_bound_kwh", "served_ratio", "sessions", "sessions_full", "wait_p50_s",
        "wait_p95_s", "car_wait_p95_s", "jain_fairness", "switches_per_session_p95",
        "idle_capacity_while_waiting", "ledger_mismatch_wh", "turned_away",
    ]  # fmt: skip
    assert rep["speedup"] is None
    assert rep["max_load_ratio"] is None
    assert rep["breaker_peak_thermal"] is None
    assert rep["served_ratio"] is None
    assert rep["wait_p50_s"] is None
    assert rep["switches_per_session_p95"] is None
    assert rep["idle_capacity_while_waiting"] is None
    assert rep["jain_fairness"] == 1.0
    assert rep["overload_s"] == 0.0
    assert rep["energy_bound_kwh"] == 0.0


def test_time_trips_and_speedup() -> None:
    rec = recording(100, tick_s=0.5)
    rec.wall_s = 2.0
    rec.marks = [Mark(3.0, "trip", "main"), Mark(4.0, "fault", "meter", 9.0)]
    rec.turned_away = 3
    rep = report(rec)
    assert rep["simulated_s"] == 50.0
    assert rep["speedup"] == 25.0
    assert rep["ticks"] == 100
    assert rep["trips"] == 1
    assert rep["turned_away"] == 3


def test_overload_counts_two_circuits_over_at_once_once() -> None:
    rec = recording(4, circuits=("main", "row-a"), phases=((1, 2, 3), (2,)), limit_a=(32, 16))
    rec.over_s[:] = [[0.5, 0.0], [1.0, 0.4], [0.0, 0.7], [0.0, 0.0]]
    # per tick the most: 0.5 + 1.0 + 0.7 + 0 (the sum would say 2.6)
    assert report(rec)["overload_s"] == 2.2


def test_load_ratio_and_thermal_only_over_carried_phases() -> None:
    rec = recording(3, circuits=("row-a", "main"), phases=((2,), (1, 2, 3)), limit_a=(10, 20))
    rec.peak_amps[1, 0, 1] = 12.0  # 1.2 of row-a's limit
    rec.peak_amps[0, 1, 2] = 30.0  # 1.5 of main's
    rec.peak_amps[2, 0, 0] = 100.0  # row-a does not carry L1: not counted
    rec.thermal[1, 1, 0] = 0.8
    rec.thermal[2, 0, 2] = 5.0  # not carried
    rep = report(rec)
    assert rep["max_load_ratio"] == 1.5
    assert rep["breaker_peak_thermal"] == 0.8


def test_waits_count_a_never_served_session_until_it_left() -> None:
    rec = recording(10, tick_s=100.0, duration_s=1000.0)
    rec.sessions = [
        session(1, 0.0, first_current_at=30.0),
        session(2, 10.0, first_current_at=70.0),  # 60
        session(3, 100.0, leave_at=400.0),  # never got current: 300
        session(4, 0.0, wanted_wh=0.0),  # wanted nothing, got nothing: not a wait
        session(5, 50.0, car=True, first_current_at=50.0),  # 0
    ]
    rep = report(rec)
    # waits 0, 30, 60, 300: linear p50 = (30 + 60) / 2; p95 at rank 2.85 = 60 + 0.85 * 240
    assert rep["wait_p50_s"] == 45.0
    assert rep["wait_p95_s"] == 264.0
    assert rep["car_wait_p95_s"] == 0.0


def test_a_never_served_session_waits_until_its_end_or_the_replays() -> None:
    rec = recording(10, tick_s=100.0, duration_s=1000.0)
    rec.sessions = [
        session(1, 100.0, end_at=250.0, leave_at=400.0),  # ended first: 150
        session(2, 600.0),  # open at the end: 400
    ]
    rep = report(rec)
    assert rep["wait_p50_s"] == 275.0


def test_jain_fairness_over_the_sessions_that_met_the_shortage() -> None:
    rec = recording(6)
    rec.waiting[2] = 1  # a shortage at t = 2
    rec.sessions = [
        session(1, 0.0, end_at=5.0, soc_end=1.0),  # x = 1
        session(2, 1.0, leave_at=4.0, soc_start=0.5, soc_end=0.75),  # x = 0.5
        session(3, 2.0, soc_end=0.25),  # open to the end, x = 0.25
        session(4, 3.0),  # came after the shortage
        session(5, 0.0, end_at=2.0),  # [0, 2) ended before it
    ]
    # (1 + 0.5 + 0.25)^2 / (3 * (1 + 0.25 + 0.0625)) = 3.0625 / 3.9375 = 7/9
    assert report(rec)["jain_fairness"] == 0.7778


def test_jain_fairness_is_one_with_a_single_or_only_unserved_sessions() -> None:
    rec = recording(4)
    rec.waiting[:] = 1
    rec.sessions = [session(1, 0.0, soc_end=0.3)]
    assert report(rec)["jain_fairness"] == 1.0
    rec.sessions = [session(1, 0.0), session(2, 1.0)]  # both got nothing
    assert report(rec)["jain_fairness"] == 1.0


def test_energy_bound_serves_the_earliest_leaving_first() -> None:
    # Ticks of an hour, so W per tick are Wh. A leaves after the first tick, B stays.
    rec = recording(2, tick_s=3600.0)
    rec.capacity_w[:] = [150.0, 100.0]
    rec.sessions = [
        session(1, 0.0, wanted_wh=100.0, max_w=100.0, delivered_wh=150.0),  # B, tapped first
        session(2, 0.0, wanted_wh=100.0, max_w=100.0, leave_at=3600.0),  # A
    ]
    # EDF: tick 0 A 100, B 50; tick 1 B its last 50: 200 Wh. First come first served would
    # give B 100 and A 50, then nothing: 150.
    assert energy_bound(rec) == 200.0
    rep = report(rec)
    assert rep["energy_bound_kwh"] == 0.2
    assert rep["energy_delivered_kwh"] == 0.15
    assert rep["served_ratio"] == 0.75


def test_energy_bound_respects_each_sessions_power_and_presence() -> None:
    rec = recording(3, tick_s=3600.0, duration_s=3 * 3600.0)
    rec.capacity_w[:] = 1000.0
    rec.sessions = [
        session(1, 0.0, wanted_wh=1000.0, max_w=10.0),  # 10 Wh a tick, 3 ticks
        session(2, 1800.0, wanted_wh=25.0, max_w=100.0),  # from tick 1, wants 25
        session(3, 0.0, wanted_wh=500.0, max_w=100.0, leave_at=0.0),  # never present
    ]
    assert energy_bound(rec) == pytest.approx(55.0)


def test_energy_bound_is_a_greedy_fill_not_the_pooled_optimum() -> None:
    # Pots of 1 then 2 Wh. Both present throughout; A leaves first and wants 1, B wants 2, each
    # at most 1 Wh a tick. EDF gives A the first tick's 1 and B 1 of the second's 2: 2 Wh.
    # Holding A back (B, then A and B) would deliver 3.
    rec = recording(2, tick_s=3600.0, duration_s=3 * 3600.0)
    rec.capacity_w[:] = [1.0, 2.0]
    rec.sessions = [
        session(1, 0.0, wanted_wh=1.0, max_w=1.0, leave_at=7200.0),
        session(2, 0.0, wanted_wh=2.0, max_w=1.0),
    ]
    assert energy_bound(rec) == 2.0


def test_served_ratio_is_capped_at_one() -> None:
    rec = recording(1, tick_s=3600.0)
    rec.capacity_w[:] = 100.0
    rec.sessions = [session(1, 0.0, wanted_wh=100.0, delivered_wh=120.0)]
    assert report(rec)["served_ratio"] == 1.0


def test_energy_bound_is_fast_on_a_busy_day() -> None:
    rng = np.random.default_rng(3)
    rec = recording(30_000, tick_s=2.88)
    rec.capacity_w[:] = rng.uniform(2000.0, 8000.0, 30_000)
    taps = np.sort(rng.uniform(0.0, 80_000.0, 1000))
    rec.sessions = [
        session(i, float(t), leave_at=float(t + rng.uniform(1800, 30_000)), wanted_wh=400.0)
        for i, t in enumerate(taps)
    ]
    started = time.perf_counter()
    energy_bound(rec)
    assert time.perf_counter() - started < 1.0


def test_switches_idle_capacity_and_ledger() -> None:
    rec = recording(3)
    rec.waiting[:] = [0, 1, 2]
    rec.unused_ratio[:] = [0.5, 0.1, 0.3]
    rec.sessions = [
        session(1, 0.0, switches=2, delivered_wh=100.0, ledger_wh=100.5, full=True),
        session(2, 0.0, switches=4, delivered_wh=50.0, ledger_wh=49.0),
    ]
    rep = report(rec)
    assert rep["idle_capacity_while_waiting"] == 0.2  # mean of 0.1 and 0.3
    assert rep["switches_per_session_p95"] == 3.9  # 2 + 0.95 * 2
    assert rep["ledger_mismatch_wh"] == 1.5
    assert rep["sessions"] == 2
    assert rep["sessions_full"] == 1


def good_report() -> dict[str, object]:
    return {
        **report(recording(10)),
        "trips": 0,
        "overload_s": 2.0,
        "served_ratio": 0.96,
        "jain_fairness": 0.95,
        "switches_per_session_p95": 6.0,
        "idle_capacity_while_waiting": 0.05,
        "ledger_mismatch_wh": 3.0,
        "sessions": 3,
    }


def test_goals_met() -> None:
    assert all(goals(good_report(), disturbances=2).values())


@pytest.mark.parametrize(
    ("field", "value", "goal"),
    [
        ("trips", 1, "no trips"),
        ("overload_s", 2.5, "overload within a tick per disturbance"),
        ("served_ratio", 0.94, "served at least 95% of the bound"),
        ("jain_fairness", 0.89, "fair sharing in shortage"),
        ("switches_per_session_p95", 6.5, "few relay switches"),
        ("idle_capacity_while_waiting", 0.09, "little idle capacity"),
        ("ledger_mismatch_wh", 3.1, "ledger within 1 Wh per session"),
    ],
)
def test_each_goal_missed(field: str, value: float, goal: str) -> None:
    result = goals({**good_report(), field: value}, disturbances=2)
    assert [name for name, met in result.items() if not met] == [goal]


def test_undefined_figures_meet_their_goals() -> None:
    assert all(goals(report(recording(0)), disturbances=0).values())


def test_table_side_by_side() -> None:
    a = report(recording(10))
    b = {**a, "policy": "fcfs", "overload_s": 12.5, "served_ratio": 0.91234}
    lines = table([a, b]).splitlines()
    assert lines[0].split() == ["chargectl", "fcfs"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows["overload_s"] == ["0", "12.5"]
    assert rows["served_ratio"] == ["-", "0.912"]
    assert rows["ticks"] == ["10", "10"]
    assert len({len(line) for line in lines}) == 1  # right-aligned columns
    assert table([]) == ""
