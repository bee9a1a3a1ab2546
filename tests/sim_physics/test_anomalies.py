"""The simulator's fire-risk anomalies (issue 12, item 4): the physics of each on the
ChargerBank or the World, each caught by chargectl.firewatch's detectors, and each one a
fault a replay scenario can schedule."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from chargectl.firewatch.curve import Curve, curve_from_ticks
from chargectl.firewatch.detectors import Kind, Severity, check
from chargectl.firewatch.settings import FirewatchSettings
from chargectl.replay.scenario import ScenarioError, parse_scenario
from chargectl.replay.scenario_timeline import expand
from chargectl.sim.actions import ActionError, apply
from chargectl.sim.actions import check as check_action
from chargectl.sim.physics.chargers import PROFILES, STAGE_FLOAT, ChargerBank
from chargectl.sim.runner import Simulator

from .sheds import CAMPUS, small_shed

S = FirewatchSettings()
W, C = Severity.WARNING, Severity.CRITICAL
DT = 5.0  # s per tick of the bank-level runs
Change = Callable[[ChargerBank, float], None]


def _bank_run(
    plugs: list[tuple[str, float]], hours: float, change: Change | None = None, seed: int = 0
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], ChargerBank]:
    """Step a ChargerBank with every socket powered: (tick times, watts[socket, tick], bank)."""
    n = len(plugs)
    bank = ChargerBank(n, seed=seed)
    for i, (name, soc) in enumerate(plugs):
        bank.plug(i, name, soc)
    ticks = np.arange(0.0, hours * 3600.0, DT)
    watts = np.zeros((n, ticks.size))
    on = np.ones(n, dtype=np.bool_)
    for k, t in enumerate(ticks):
        if change is not None:
            change(bank, float(t))
        _, w = bank.power(DT, on, 220.0)
        bank.charge(DT, w)
        watts[:, k] = w
    return ticks, watts, bank


def _curve(t: npt.ArrayLike, w: npt.ArrayLike, c: npt.ArrayLike | None = None) -> Curve:
    return curve_from_ticks(t, w, c, session_id="s1", bay="pile/1", card="04ab")


def _found(curve: Curve) -> list[tuple[Kind, Severity]]:
    return [(f.kind, f.severity) for f in check(curve, S)]


# --- a pack that never tapers ---


def test_a_pack_that_never_tapers_holds_cc_hours_past_its_cv_time() -> None:
    li48 = PROFILES["li48"]
    cv_h = 0.9 * li48.capacity_ah / li48.charge_a  # 6 h from empty to cv_soc

    def fault(bank: ChargerBank, t: float) -> None:
        if t == 0.0:
            bank.set_no_taper(1, True)

    t, w, bank = _bank_run([("li48", 0.0), ("li48", 0.0)], 12.0, fault)
    late = t >= (cv_h + 4.0) * 3600.0
    assert np.all(w[1, late] == pytest.approx(li48.full_w))  # CC, 4 h past the CV point
    assert np.all(w[0, late] < 0.1 * li48.full_w)  # its healthy twin floats
    assert bank.soc[1] == 1.0
    # Healed, it tapers and floats within minutes; unplugged and plugged, it is a new pack.
    bank.set_no_taper(1, False)
    for _ in range(200):
        _, ww = bank.power(DT, np.ones(2, dtype=np.bool_), 220.0)
        bank.charge(DT, ww)
    assert bank.stage[1] == STAGE_FLOAT
    bank.set_no_taper(1, True)
    bank.unplug(1)
    bank.plug(1, "li48", 0.95)
    assert not bank.no_taper[1]


def test_the_detectors_see_a_pack_that_never_tapers() -> None:
    t, w, _ = _bank_run([("li48", 0.0)], 12.0, lambda b, t: b.set_no_taper(0, True))
    # li48 at 190.5 W is in the class up to 350 W: 9.5 h of CC warns, 11.5 h is critical.
    found = check(_curve(t, w[0]), S)
    assert [(f.kind, f.severity, f.since_s) for f in found] == [
        (Kind.NO_TAPER, W, 9.5 * 3600.0),
        (Kind.NO_TAPER, C, 11.5 * 3600.0),
    ]


# --- a cell short late in the charge ---


def _short_run(
    watts: float, after_s: float, grow_w_s: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float]:
    """li72 from 60 %, twice: healthy (0) and with a short at 99 % (1). Also when the healthy
    one reached 99 % (the short's trigger)."""
    trigger: list[float] = []

    def fault(bank: ChargerBank, t: float) -> None:
        if t == 0.0:
            bank.set_cell_short(1, watts, at_soc=0.99, after_s=after_s, grow_w_s=grow_w_s)
        if not trigger and bank.soc[0] >= 0.99:
            trigger.append(t)

    t, w, _ = _bank_run([("li72", 0.6), ("li72", 0.6)], 6.0, fault)
    return t, w, trigger[0]


def test_a_cell_short_draws_its_watts_after_the_taper_and_grows() -> None:
    t, w, at = _short_run(80.0, 1800.0, 1.0 / 60.0)
    # CC to 90 % in 1.8 h, then the taper (tau 36 min) to 99 % in 1.4 h
    assert 3.0 * 3600.0 < at < 3.3 * 3600.0
    extra = w[1] - w[0]
    starts = at + 1800.0
    assert np.all(np.abs(extra[t < starts - DT]) < 1e-9)  # nothing before it develops
    after = t >= starts + DT
    grown = 80.0 + (t[after] - starts) / 60.0  # 1 W more per minute
    assert extra[after] == pytest.approx(grown, abs=1.0 / 60.0 * 2 * DT)
    assert w[0, -1] == pytest.approx(PROFILES["li72"].float_w)  # the twin floats at 15 W


def test_the_detectors_see_a_late_short_as_a_rise_after_the_taper() -> None:
    t, w, at = _short_run(80.0, 1800.0, 0.0)
    found = check(_curve(t, w[1]), S)
    assert [(f.kind, f.severity) for f in found] == [(Kind.RISE_AFTER_TAPER, C)]
    # Held for the detector's 10 min from the minute the short began in (a step up inside
    # the taper) or, at the latest, its first whole minute.
    starts = at + 1800.0
    assert starts - 60.0 < found[0].since_s <= starts + 120.0
    assert found[0].detected_s - found[0].since_s == S.rise_hold_s
    assert check(_curve(t, w[0]), S) == []


# --- a modified high-power pack ---


def test_a_modified_pack_draws_its_watts_in_cc_then_tapers() -> None:
    def fault(bank: ChargerBank, t: float) -> None:
        if t == 0.0:
            bank.set_cc_w(0, 1200.0)

    t, w, bank = _bank_run([("li48", 0.2)], 3.0, fault)
    assert np.all(w[0, (t > 10.0) & (t < 1800.0)] == pytest.approx(1200.0))
    # 6.3x the profile's 190.5 W: from 20 % to 90 % in 1.1 h instead of 4.7 h; then the taper
    assert bank.soc[0] > 0.99 and w[0, -1] < 100.0
    bank.set_cc_w(0, 0.0)
    assert bank.full_w[0] == pytest.approx(PROFILES["li48"].full_w)


# --- a poor contact: erratic power ---


def _contact_run(depth: float, seed: int) -> npt.NDArray[np.float64]:
    def fault(bank: ChargerBank, t: float) -> None:
        if t == 0.0:
            bank.set_contact(0, depth)

    _, w, _ = _bank_run([("li60", 0.3)], 1.0, fault, seed=seed)
    return w[0, 1:] / PROFILES["li60"].full_w  # after the first tick's ramp


def test_a_poor_contact_swings_power_by_its_depth_seeded() -> None:
    share = _contact_run(0.6, seed=7)
    assert share.min() >= 0.4 - 1e-12 and share.max() <= 1.0 + 1e-12
    assert share.mean() == pytest.approx(0.7, abs=0.02)  # 1 - depth / 2
    swings = np.abs(np.diff(share))
    assert swings.max() > 0.55 and swings.max() <= 0.6  # sample to sample, up to the depth
    assert np.array_equal(share, _contact_run(0.6, seed=7))  # reproducible
    assert not np.array_equal(share, _contact_run(0.6, seed=8))


def test_a_poor_contact_is_the_sockets_and_stays_through_a_new_plug() -> None:
    bank = ChargerBank(1)
    bank.plug(0, "li48", 0.2)
    bank.set_contact(0, 0.5)
    bank.unplug(0)
    bank.plug(0, "lead48", 0.2)
    assert bank.contact_depth[0] == 0.5
    bank.set_contact(0, 0.0)
    assert bank.contact[0] == 1.0
    with pytest.raises(ValueError, match=r"depth must be within 0\.\.1"):
        bank.set_contact(0, 1.5)


def test_pack_faults_need_a_charger_to_start_and_end_quietly_without_one() -> None:
    bank = ChargerBank(1)
    for start in (
        lambda: bank.set_no_taper(0, True),
        lambda: bank.set_cell_short(0, 50.0),
        lambda: bank.set_cc_w(0, 900.0),
    ):
        with pytest.raises(ValueError, match="no charger plugged"):
            start()
    bank.set_no_taper(0, False)
    bank.set_cell_short(0, 0.0)
    bank.set_cc_w(0, 0.0)
    bank.plug(0, "li60", 0.5)
    bank.set_cell_short(0, 50.0)
    bank.set_cc_w(0, 900.0)
    bank.unplug(0)
    assert bank.short_w[0] == 0.0 and not bank.no_taper[0]
    bank.plug(0, "li60", 0.5)
    assert bank.full_w[0] == pytest.approx(PROFILES["li60"].full_w)


# --- in the World, through the simulator's actions ---

WORLD_S = 12 * 60  # seconds recorded


@pytest.fixture(scope="module")
def world_run() -> dict[str, tuple[Curve, float]]:
    """Four sockets of one pile, each with one anomaly, started by the actions the control API
    and scenarios use; per-second watts and temperatures: a curve per bay, and its final temp."""
    sim = Simulator(small_shed(), virtual=True)
    w = sim.world
    pm = w.models["pile"]
    apply(sim, {"do": "plug", "bay": "pile/1", "profile": "li48", "soc": 0.2})
    apply(sim, {"do": "modified_pack", "bay": "pile/1", "watts": 1000})
    apply(sim, {"do": "heater", "bay": "pile/2", "watts": 1200})
    apply(sim, {"do": "hot", "bay": "pile/3"})  # 60 K above normal
    apply(sim, {"do": "plug", "bay": "pile/4", "profile": "li60", "soc": 0.3})
    apply(sim, {"do": "poor_contact", "bay": "pile/4", "depth": 0.8, "extra_c": 15})
    for port in range(4):
        assert pm.write_holding(16 + port, [1]) is None  # type: ignore[union-attr]
    n = WORLD_S
    watts, temps = np.zeros((4, n)), np.zeros((4, n))
    for k in range(n):
        w.advance(1.0)
        watts[:, k] = w.chargers.watts[:4]
        temps[:, k] = w.thermal.temp_c[:4]
    t = np.arange(n, dtype=np.float64)
    return {f"pile/{i + 1}": (_curve(t, watts[i], temps[i]), float(temps[i, -1])) for i in range(4)}


def test_the_world_runs_each_anomaly(world_run: dict[str, tuple[Curve, float]]) -> None:
    mod, heater, hot, contact = (world_run[f"pile/{i}"] for i in range(1, 5))
    assert mod[0].mean_w[1:] == pytest.approx(1000.0, rel=0.02)  # the supply wanders a little
    assert heater[0].mean_w[1:] == pytest.approx(1200.0, rel=0.04)  # resistive: V^2
    assert hot[0].mean_w.max() == 0.0 and hot[1] > 25.0 + 60.0 * 0.9  # 12 min, tau 5 min
    assert contact[1] > 25.0 + 15.0 * 0.9
    ratio = contact[0].peak_w[1:] / contact[0].mean_w[1:]
    assert np.all(ratio > 1.5)  # depth 0.8: mean 0.6 of the peak


@pytest.mark.parametrize(
    ("bay", "expected"),
    [
        # 1000 W: critical after a minute, the warning after two; 4.8 A warms the socket
        # 10 K (1.3 K/min over 5 min)
        ("pile/1", [(Kind.OVER_POWER, C), (Kind.OVER_POWER, W), (Kind.SOCKET_HEAT, W)]),
        ("pile/2", [(Kind.OVER_POWER, C), (Kind.OVER_POWER, W), (Kind.SOCKET_HEAT, W)]),
        ("pile/3", [(Kind.SOCKET_HEAT, C), (Kind.SOCKET_HEAT, W)]),
        ("pile/4", [(Kind.ERRATIC_POWER, W), (Kind.SOCKET_HEAT, W)]),
    ],
)
def test_the_detectors_see_each_anomaly_in_the_world(
    world_run: dict[str, tuple[Curve, float]],
    bay: str,
    expected: list[tuple[Kind, Severity]],
) -> None:
    assert _found(world_run[bay][0]) == expected


def test_pack_actions_refuse_an_empty_socket_and_a_plug_clears_them() -> None:
    sim = Simulator(small_shed(), virtual=True)
    with pytest.raises(ActionError, match=r"pile/2: no taper: no charger plugged"):
        apply(sim, {"do": "no_taper", "bay": "pile/2"})
    apply(sim, {"do": "no_taper", "bay": "pile/2", "active": False})  # an ending: nothing to do
    with pytest.raises(ActionError, match="unknown socket bay"):
        apply(sim, {"do": "cell_short", "bay": "pile/99"})
    apply(sim, {"do": "plug", "bay": "pile/2", "soc": 0.95})
    apply(sim, {"do": "cell_short", "bay": "pile/2", "watts": 60, "grow_w_per_min": 6})
    ch = sim.world.chargers
    assert ch.short_w[1] == 60.0 and ch.short_grow_w_s[1] == pytest.approx(0.1)
    apply(sim, {"do": "unplug", "bay": "pile/2"})
    assert ch.short_w[1] == 0.0
    # The poor contact's heat and `hot` add up and heal on their own.
    apply(sim, {"do": "hot", "bay": "pile/3", "extra_c": 20})
    apply(sim, {"do": "poor_contact", "bay": "pile/3", "extra_c": 10})
    assert sim.world.thermal.extra_c[2] == 30.0
    apply(sim, {"do": "hot", "bay": "pile/3", "extra_c": 0})
    assert sim.world.thermal.extra_c[2] == 10.0
    apply(sim, {"do": "poor_contact", "bay": "pile/3", "active": False})
    assert sim.world.thermal.extra_c[2] == 0.0 and ch.contact_depth[2] == 0.0


# --- in replay scenarios ---

SCENARIO = f"""\
shed: {CAMPUS}
start: 18:00
duration: 4h
seed: 3
arrivals:
  rate:
    - {{at: "00:00", per_hour: 10}}
  mix:
    - {{profile: li48, share: 1, soc: [0.1, 0.5]}}
faults:
  - {{at: "18:30", for: 1h, do: no_taper, bay: pile-a1/1}}
  - {{at: "18:30", for: 2h, do: cell_short, bay: pile-a1/2, watts: 90, at_soc: 0.97,
      after_s: 600, grow_w_per_min: 2}}
  - {{at: "18:30", for: 30m, do: modified_pack, bay: pile-a1/3, watts: 1200}}
  - {{at: "18:30", for: 30m, do: heater, bay: pile-a1/4, watts: 1500}}
  - {{at: "18:30", for: 30m, do: poor_contact, bay: pile-a1/5, depth: 0.7, extra_c: 12}}
  - {{at: "18:30", for: 30m, do: hot, bay: pile-a1/6, extra_c: 30}}
  - {{at: "19:00", do: cell_short, bay: pile-a1/7}}
"""


def test_a_scenario_schedules_every_anomaly_and_its_end() -> None:
    s = parse_scenario(SCENARIO, Path("/tmp/s.yaml"), display_name="s.yaml")
    assert [f.kind for f in s.faults] == [
        "no_taper",
        "cell_short",
        "modified_pack",
        "heater",
        "poor_contact",
        "hot",
        "cell_short",
    ]
    events = expand(s).fault_events
    ends = {e.fault: e.action for e in events if not e.starts}
    assert ends == {
        0: {"do": "no_taper", "bay": "pile-a1/1", "active": False},
        1: {
            "do": "cell_short",
            "bay": "pile-a1/2",
            "watts": 0.0,
            "at_soc": 0.97,
            "after_s": 600,
            "grow_w_per_min": 2,
        },
        2: {"do": "modified_pack", "bay": "pile-a1/3", "watts": 0.0},
        3: {"do": "heater", "bay": "pile-a1/4", "watts": 0.0},
        4: {"do": "poor_contact", "bay": "pile-a1/5", "depth": 0.7, "extra_c": 12, "active": False},
        5: {"do": "hot", "bay": "pile-a1/6", "extra_c": 0.0},
    }
    for e in events:  # every start and end is a valid action of the simulator
        check_action(e.action)


@pytest.mark.parametrize(
    ("fault", "problem"),
    [
        ("{do: cell_short, bay: pile-a1/2, at_soc: 1.5}", "faults[0].at_soc: 0..1, got 1.5"),
        ("{do: poor_contact, bay: pile-a1/2, depth: -0.1}", "faults[0].depth: 0..1, got -0.1"),
        ("{do: modified_pack, bay: pile-a1/2, watts: -5}", "faults[0].watts: must be >= 0"),
        ("{do: no_taper, bay: wb-1}", "faults[0].bay: 'no_taper' needs a pile's socket"),
        ("{do: no_taper, bay: pile-a1/2, active: true}", "faults[0].active: unknown parameter"),
    ],
)
def test_a_scenario_refuses_bad_anomaly_parameters(fault: str, problem: str) -> None:
    text = SCENARIO.split("faults:", maxsplit=1)[0] + f"faults:\n  - {{at: '19:00', {fault[1:]}\n"
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(text, Path("/tmp/s.yaml"), display_name="s.yaml")
    assert any(problem in str(p) for p in exc.value.problems), exc.value.problems
