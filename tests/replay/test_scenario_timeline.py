"""A scenario's timeline: pure and seeded, arrivals following the rate by time of day, bays
never double-booked, unmanaged load per step, faults' start and end events."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pytest

from chargectl.replay.scenario import SHIPPED, load_scenario, parse_scenario
from chargectl.replay.scenario_timeline import SWAP_S, Timeline, expand
from chargectl.replay.scenario_types import Scenario
from chargectl.sim.actions import check
from chargectl.sim.physics.chargers import PROFILES
from chargectl.topology import topology_of

CAMPUS = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "campus.yaml"


def scenario(body: str, duration: str = "24h", start: str = "06:00", seed: int = 4) -> Scenario:
    head = f"shed: {CAMPUS}\nstart: '{start}'\nduration: {duration}\nseed: {seed}\n"
    return parse_scenario(head + body, Path("/tmp/s.yaml"))


def test_same_seed_same_timeline_and_another_seed_another() -> None:
    s = load_scenario(SHIPPED / "faults.yaml")
    assert expand(s) == expand(s)
    other = expand(dataclasses.replace(s, seed=s.seed + 1))
    assert other.arrivals != expand(s).arrivals
    assert other.fault_events == expand(s).fault_events  # faults are not drawn


def test_counts_per_hour_follow_the_profile_over_a_long_run() -> None:
    # A week of a profile with a quiet night and a peak; sockets enough that none is turned
    # away (a stay of 1 minute). Counts per hour of day are Poisson: within 4 sigma.
    rates = {0: 2.0, 6: 10.0, 18: 40.0, 22: 5.0}
    rate_yaml = "".join(f"    - {{at: '{h:02d}:00', per_hour: {r}}}\n" for h, r in rates.items())
    s = scenario(
        f"arrivals:\n  rate:\n{rate_yaml}  mix: [{{profile: li48}}]\n  stay: [1m, 1m]\n",
        duration="168h",
        start="00:00",
    )
    t = expand(s)
    assert t.turned_away == ()
    hours = np.floor(np.array([a.at for a in t.arrivals]) / 3600.0) % 24
    counts = np.bincount(hours.astype(int), minlength=24)
    for h in range(24):
        expected = 7 * s.arrivals.per_hour(h * 3600.0)
        assert abs(counts[h] - expected) <= 4 * np.sqrt(expected) + 1, (h, counts[h], expected)
    assert counts[18:22].mean() > 3 * counts[6:18].mean()  # the evening peak shows


def test_no_bay_holds_two_arrivals_at_once_and_the_rest_are_turned_away() -> None:
    t = expand(load_scenario(SHIPPED / "oversubscribed.yaml"))
    by_bay: dict[str, list[tuple[float, float]]] = {}
    for a in t.arrivals:
        by_bay.setdefault(a.bay, []).append((a.at, a.leave_at))
    for spans in by_bay.values():
        for (_, leave), (at, _) in itertools.pairwise(spans):
            assert leave + SWAP_S <= at  # one plug out, then the next one in
    assert t.turned_away  # the shed fills up
    assert len({a.uid for a in t.arrivals}) == len(t.arrivals)


def test_arrivals_carry_what_the_simulator_takes() -> None:
    t = expand(load_scenario(SHIPPED / "evening-peak.yaml"))
    cars = [a for a in t.arrivals if a.car is not None]
    bikes = [a for a in t.arrivals if a.charger is not None]
    assert cars and bikes and len(cars) + len(bikes) == len(t.arrivals)
    topo = topology_of(load_scenario(SHIPPED / "evening-peak.yaml").shed)
    for a in t.arrivals:
        check(a.plug_action())
        check({"do": "tap", "bay": a.bay, "uid": a.uid})
        assert topo.bays[topo.bay_index[a.bay]].is_socket == (a.charger is not None)
        assert a.at < a.tap_at < a.at + 30 and a.leave_at > a.at
    early = [a for a in bikes if a.stops_early]
    assert 0.03 < len(early) / len(bikes) < 0.2  # share 0.1
    assert all(a.leave_at - a.at <= 3 * 3600 for a in early)
    assert all(0.1 <= a.soc <= 0.6 for a in bikes)


def test_unmanaged_load_per_step_follows_the_profile_round_midnight() -> None:
    s = scenario(
        "unmanaged:\n  - circuit: row-a\n    profile:\n"
        "      - {at: '00:00', amps: [1, 1, 1]}\n"
        "      - {at: '18:00', amps: [3, 2, 1]}\n",
        duration="24h",
        start="12:00",
    )
    t = expand(s)
    assert [(x.at, x.amps) for x in t.load_steps] == [
        (0.0, (1.0, 1.0, 1.0)),
        (6 * 3600.0, (3.0, 2.0, 1.0)),
        (12 * 3600.0, (1.0, 1.0, 1.0)),
    ]
    series = t.load_series(3600.0)["row-a"]
    assert series.shape == (24, 3)
    assert series[5].tolist() == [1, 1, 1] and series[6].tolist() == [3, 2, 1]
    assert series[12].tolist() == [1, 1, 1]
    assert t.load_at(7 * 3600.0) == {"row-a": (3.0, 2.0, 1.0)}
    check(t.load_steps[1].action())


def test_faults_start_and_end_as_simulator_actions_and_the_crash_restarts() -> None:
    s = load_scenario(SHIPPED / "faults.yaml")
    t = expand(s)
    kinds = [(e.action["do"], e.starts) for e in t.fault_events]
    assert ("crash", True) in kinds and ("restart", False) in kinds
    assert ("welded", False) not in kinds  # welded for the rest of the replay
    # Staff clear the latched alarm after the restart, and the hot socket: a start only.
    assert ("clear_alarm", True) in kinds and ("clear_fault", True) in kinds
    for e in t.fault_events:
        if e.action["do"] not in ("crash", "restart", "clear_alarm", "clear_fault"):
            check(e.action)
    meter = [e for e in t.fault_events if e.action["do"] == "meter_gone"]
    assert [e.at for e in meter] == [2.5 * 3600, 2.5 * 3600 + 600]
    assert meter[1].action == {"do": "meter_gone", "device": "meter-main", "active": False}
    crash = [e.at for e in t.fault_events if e.action["do"] in ("crash", "restart")]
    assert crash == [4 * 3600 + 40 * 60, 4 * 3600 + 42 * 60]
    staff = [(e.at, dict(e.action)) for e in t.fault_events if e.action["do"].startswith("clear")]
    assert staff == [
        (4 * 3600 + 55 * 60, {"do": "clear_alarm"}),
        (5.5 * 3600, {"do": "clear_fault", "bay": "pile-b2/4"}),
    ]


def _peak_demand_ratio(s: Scenario, t: Timeline) -> float:
    """The worst phase's demand at full charge (chargers' CC current at the socket, cars at
    their maximum) over the root circuit's limit, at the busiest 5 minutes."""
    topo = topology_of(s.shed)
    volts = s.shed.shed.voltage_v
    times = np.arange(0.0, s.duration_s, 300.0)
    load = np.zeros((len(times), 3))
    for a in t.arrivals:
        bay = topo.bays[topo.bay_index[a.bay]]
        on = (times >= a.at) & (times < a.leave_at)
        if a.charger is not None:
            p = PROFILES[a.charger.profile]
            phases, amps = bay.phases, p.full_w / (volts * p.power_factor)
        else:
            assert a.car is not None
            phases = bay.phases if a.car.phases == 3 else bay.phases[:1]
            amps = a.car.max_a
        for ph in phases:
            load[on, ph - 1] += amps
    return float(load.max() / topo.circuits[0].limit_a)


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [("oversubscribed", 2.6, 3.5), ("evening-peak", 1.3, 2.6), ("estate", 1.5, 3.0)],
)
def test_shipped_demand_against_capacity(name: str, low: float, high: float) -> None:
    s = load_scenario(SHIPPED / f"{name}.yaml")
    assert low <= _peak_demand_ratio(s, expand(s)) <= high


def test_evening_peak_arrivals_peak_between_18_and_22() -> None:
    s = load_scenario(SHIPPED / "evening-peak.yaml")
    t = expand(s)
    tod = (s.start_s + np.array([a.at for a in t.arrivals] + list(t.turned_away))) % 86400
    evening = ((tod >= 18 * 3600) & (tod < 22 * 3600)).sum()
    assert evening > 0.5 * len(tod)


def test_winter_sessions_are_lead_acid_and_long() -> None:
    s = load_scenario(SHIPPED / "winter-lead-acid.yaml")
    t = expand(s)
    lead = [a for a in t.arrivals if a.charger and PROFILES[a.charger.profile].chemistry == "lead"]
    assert len(lead) > 0.9 * len(t.arrivals)
    assert min(PROFILES[a.charger.profile].hours_to_float for a in lead if a.charger) > 5
