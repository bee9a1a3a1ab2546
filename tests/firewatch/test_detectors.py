"""The detectors on the simulator's healthy chargers (every profile, several states of charge,
paused and resumed) and on anomalies, and at the edge of each threshold."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from chargectl.firewatch.curve import Curve, curve_from_ticks
from chargectl.firewatch.detectors import (
    Finding,
    Kind,
    ProtectionCut,
    Severity,
    check,
    energy_beyond_pack,
    erratic_power,
    no_taper,
    over_power,
    repeated_protection_cuts,
    rise_after_taper,
    socket_heat,
)
from chargectl.firewatch.settings import FirewatchSettings
from chargectl.sim.physics.chargers import PROFILE_NAMES, PROFILES, ChargerBank
from chargectl.sim.physics.thermal import SocketThermal

S = FirewatchSettings()
W, C = Severity.WARNING, Severity.CRITICAL
DT = 5.0  # s per simulated tick
HOURS = 13.0  # longer than a pile's 10..12 h session limit
TICKS = np.arange(0.0, HOURS * 3600.0, DT)
Bools = npt.NDArray[np.bool_]


# --- the simulator's chargers, stepped directly ---


def _rotation(on_s: float, off_s: float, phase_s: float) -> Callable[[int], Bools]:
    return lambda k: ((TICKS + phase_s + 37.0 * k) % (on_s + off_s)) < on_s


def _random_rotation(k: int) -> Bools:
    """The controller's rotation under varying demand: on 15..40 min, off 2..10 min."""
    rng = np.random.default_rng(k)
    ticks = TICKS
    on = np.ones(ticks.size, dtype=np.bool_)
    at, state = 0.0, True
    while at < ticks[-1]:
        d = rng.uniform(900.0, 2400.0) if state else rng.uniform(120.0, 600.0)
        on[(ticks >= at) & (ticks < at + d)] = state
        at, state = at + d, not state
    return on


PAUSES: dict[str, Callable[[int], Bools]] = {
    "never": lambda k: np.ones(TICKS.size, dtype=np.bool_),
    # min_on 900 s, min_off 120 s: the tightest rotation the controller does
    "rotation 15/2 min": _rotation(900.0, 120.0, 40.0),
    "rotation 15/30 min": _rotation(900.0, 1800.0, 0.0),
    "supply dips of 20 s": lambda k: ((TICKS + 61.0 * k) % 2820.0) >= 20.0,
    "started 7.5 min late": lambda k: TICKS >= 450.0,
    "random rotation": _random_rotation,
}
SOCS = (0.0, 0.3, 0.6, 0.85, 0.92, 1.0)


def _simulate(
    plugs: list[tuple[str | None, float]],
    energized: list[Bools],
    change: Callable[[ChargerBank, float], None] | None = None,
) -> list[Curve]:
    """Step one ChargerBank (and socket temperatures at 38 C ambient) over TICKS."""
    n = len(plugs)
    bank, heat = ChargerBank(n), SocketThermal(n, ambient_c=38.0)
    for i, (name, soc) in enumerate(plugs):
        if name is not None:
            bank.plug(i, name, soc)
    on = np.array(energized)
    watts, temp = np.zeros((n, TICKS.size)), np.zeros((n, TICKS.size))
    for k, t in enumerate(TICKS):
        if change is not None:
            change(bank, float(t))
        amps, w = bank.power(DT, on[:, k], 220.0)
        bank.charge(DT, w)
        heat.step(DT, amps)
        watts[:, k], temp[:, k] = w, heat.temp_c
    return [
        curve_from_ticks(TICKS, watts[i], temp[i], session_id=f"s{i}", bay=f"b{i}", card="04ab")
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def healthy() -> dict[tuple[str, float, str], Curve]:
    cases = [(p, soc, pause) for p in PROFILE_NAMES for soc in SOCS for pause in PAUSES]
    curves = _simulate(
        [(p, soc) for p, soc, _ in cases],
        [PAUSES[pause](k) for k, (_, _, pause) in enumerate(cases)],
    )
    return dict(zip(cases, curves, strict=True))


def test_healthy_charging_of_every_profile_finds_nothing(
    healthy: dict[tuple[str, float, str], Curve],
) -> None:
    assert len(healthy) == 9 * 6 * 6
    found = {case: check(curve, S) for case, curve in healthy.items()}
    assert {case: f for case, f in found.items() if f} == {}


def test_the_healthy_set_holds_restarts_after_the_taper(
    healthy: dict[tuple[str, float, str], Curve],
) -> None:
    """A full lead-acid pack under rotation returns to CC after every pause (chargers.py:
    restart_cc_s 120 s, then the taper with tau 600 s): the case a rise detector must pass."""
    cv = healthy[("lead72", 1.0, "rotation 15/2 min")]
    full_w = PROFILES["lead72"].full_w
    back_at_cc = (cv.mean_w > 0.99 * full_w) & (cv.t > 3600.0)
    tapered = (cv.mean_w > 0) & (cv.mean_w < 0.3 * full_w)  # exp(-780 / 600) = 0.27
    assert back_at_cc.sum() >= 40 and tapered.sum() >= 40
    assert check(cv, S) == []


# --- anomalies in the simulator ---


def _kinds(found: list[Finding]) -> list[tuple[Kind, Severity, float, float]]:
    return [(f.kind, f.severity, f.since_s, f.detected_s) for f in found]


def test_a_pack_that_never_tapers() -> None:
    def never_cv(bank: ChargerBank, t: float) -> None:
        bank.cv_soc[0] = 2.0  # the charger never sees the pack's voltage rise

    (cv,) = _simulate([("li48", 0.0)], [np.ones(TICKS.size, dtype=np.bool_)], never_cv)
    # li48: 190.5 W, class up to 350 W: warning after 9.5 h, critical after 11.5 h of CC
    assert _kinds(no_taper(cv, S)) == [
        (Kind.NO_TAPER, W, 34200.0, 34200.0),
        (Kind.NO_TAPER, C, 41400.0, 41400.0),
    ]
    # 190.5 W for 13 h is 2,477 Wh: under the class's 2,800 Wh; no other sign
    assert _kinds(check(cv, S)) == _kinds(no_taper(cv, S))
    assert no_taper(cv, S)[0].seen == (
        "190 W, its constant-current level (190 W), for 9.5 h without tapering; "
        "a up to 350 W charger's pack reaches constant voltage sooner"
    )


def test_a_short_developing_after_the_taper() -> None:
    def short(bank: ChargerBank, t: float) -> None:
        bank.appliance_w[0] = 120.0 if t >= 4 * 3600.0 else 0.0

    # li72 from 60 %: CC to 90 % in 1.8 h, floats at about 3.5 h; the short starts at 4 h
    (cv,) = _simulate([("li72", 0.6)], [np.ones(TICKS.size, dtype=np.bool_)], short)
    found = check(cv, S)
    assert _kinds(found)[0] == (Kind.RISE_AFTER_TAPER, C, 14400.0, 15000.0)
    assert found[0].seen == (
        "135 W for 10 min after the charge had tapered to 15 W (constant current 488 W)"
    )
    assert (found[0].session_id, found[0].bay, found[0].card) == ("s0", "b0", "04ab")


def test_a_short_while_a_72_v_lithium_pack_still_tapers_high() -> None:
    """li72 tapers from 488 W over hours: a 60 W short at 95 % comes in at about 250 W, and the
    decay hides it from the trough (it is back at the pre-short level 10 min on). The step up
    in constant voltage, held, is the sign."""

    def short(bank: ChargerBank, t: float) -> None:
        if t == 0.0:
            bank.set_cell_short(0, 60.0, at_soc=0.95)

    (cv,) = _simulate([("li72", 0.7)], [np.ones(TICKS.size, dtype=np.bool_)], short)
    (f,) = rise_after_taper(cv, S)
    assert (f.kind, f.severity, f.since_s, f.detected_s - f.since_s) == (
        Kind.RISE_AFTER_TAPER,
        C,
        5820.0,
        600.0,
    )
    assert f.seen.startswith("power stepped up from 247 W to 301 W in the taper (where it only")


def _taper(step: float, back: float | None = None) -> list[float]:
    """200 W CC for an hour, then a taper by 2 % a minute; `step` W added from minute 80,
    taken off again 5 min later when `back`."""
    out = [200.0] * 60 + [140.0 * 0.98**m for m in range(60)]
    return [w + (step if m >= 80 and (back is None or m < 85) else 0.0) for m, w in enumerate(out)]


def test_a_step_in_the_taper_edge() -> None:
    # minute 79 is at 140 * 0.98**19 = 95.3 W: a step needs 25 W (15 % is 14 W) over it, and
    # the decay takes 1.9 W of the added watts
    assert rise_after_taper(_curve(_taper(27.0)), S) != []
    assert rise_after_taper(_curve(_taper(26.8)), S) == []
    assert rise_after_taper(_curve(_taper(40.0, back=True)), S) == []  # it came and went
    # the step inside minute 80: a partial minute (not steady) between the two levels
    mean, peak = _taper(40.0), _taper(40.0)
    mean[80] -= 30.0
    (f,) = rise_after_taper(_curve(mean, peak), S)
    assert (f.since_s, f.detected_s) == (80 * 60.0, 90 * 60.0)
    # to the CC level: a restart (its allowance decays), not a step
    assert rise_after_taper(_curve(_taper(0.0)[:80] + [200.0] * 3 + _taper(0.0)[83:]), S) == []


@pytest.mark.parametrize(
    ("heater_w", "expected"),
    [
        (640.0, []),
        (800.0, [(Kind.OVER_POWER, W, 0.0, 120.0)]),
        (1000.0, [(Kind.OVER_POWER, W, 0.0, 120.0), (Kind.OVER_POWER, C, 0.0, 60.0)]),
    ],
)
def test_a_heater_on_a_socket(heater_w: float, expected: list[object]) -> None:
    def heater(bank: ChargerBank, t: float) -> None:
        bank.appliance_w[0] = heater_w

    (cv,) = _simulate([(None, 0.0)], [np.ones(TICKS.size, dtype=np.bool_)], heater)
    assert _kinds(over_power(cv, S)) == expected


def test_supply_dips_on_a_tapered_lead_acid_pack_are_no_erratic_power() -> None:
    """Found by benchmarks/firewatch.py over 5,000 healthy sessions (lead72, the pile's power
    read every 10 s): after a 20 s supply dip a tapered pack goes back to CC (restart_cc_s
    120 s), decays (tau 600 s) and steps down to float; a dip every 26 min gives two swing
    minutes per dip, four within 30 min. Both are stage changes (the level moves), not a
    contact that drops out and comes back to where it was."""
    decay = [301.0, 301.0, 284.0, 257.0, 233.0, 211.0, 191.0, 173.0, 156.0, 141.0, 128.0]
    decay += [116.0, 105.0, 95.0, 86.0, 78.0, 70.0, 63.0]
    cycle_mean = [*decay, 23.0, 20.0, 20.0, 37.0]  # the step to float, float, the dip
    cycle_peak = [*decay, 60.0, 20.0, 20.0, 301.0]
    mean = [301.0] * 60 + cycle_mean * 4 + [301.0] * 3
    peak = [301.0] * 60 + cycle_peak * 4 + [301.0] * 3
    assert erratic_power(_curve(mean, peak), S) == []
    # the same minutes coming back to the level they left: a poor contact
    flaky = [301.0] * 60 + ([301.0, 150.0] * 6) + [301.0] * 3
    flaky_peak = [301.0] * len(flaky)
    assert _kinds(erratic_power(_curve(flaky, flaky_peak), S)) == [
        (Kind.ERRATIC_POWER, W, 61 * 60.0, 68 * 60.0)
    ]
    # the last minute waits for the next: a stage change or a swing is not known yet
    assert erratic_power(_curve(flaky[:68], flaky_peak[:68]), S) == []


def test_a_poor_contact() -> None:
    """li60 from 30 % (CC); from 1 h its contact drops out for 30 s every 3 minutes."""
    t = TICKS
    dropping = (t >= 3600.0) & (t < 3600.0 + 4 * 180.0) & ((t - 3600.0) % 180.0 >= 15.0)
    dropping &= (t - 3600.0) % 180.0 < 45.0
    (cv,) = _simulate([("li60", 0.3)], [~dropping])
    found = check(cv, S)
    assert _kinds(found) == [(Kind.ERRATIC_POWER, W, 3600.0, 4200.0)]
    assert (
        found[0].seen == "4 minutes within 10 min with power jumping to 234 W over a mean of 117 W"
    )


# --- at the edge of each threshold: synthetic curves ---


def _curve(
    mean: list[float], peak: list[float] | None = None, temp: list[float] | None = None
) -> Curve:
    n = len(mean)
    return Curve(
        "s9",
        "p2-7",
        "04c3d2e1",
        np.arange(n, dtype=np.float64) * 60.0,
        np.array(mean, dtype=np.float64),
        np.array(mean if peak is None else peak, dtype=np.float64),
        np.full(n, np.nan) if temp is None else np.array(temp, dtype=np.float64),
    )


def test_no_taper_edge() -> None:
    minutes = int(9.5 * 60)  # a 200 W charger (class up to 350 W): warning at 9.5 h
    assert no_taper(_curve([200.0] * (minutes - 1) + [100.0] * 5), S) == []
    assert _kinds(no_taper(_curve([200.0] * minutes), S)) == [(Kind.NO_TAPER, W, 34200.0, 34200.0)]
    # a pause does not count; the taper ends the count
    paused = [200.0] * 100 + [0.0] * 30 + [200.0] * (minutes - 100)
    assert _kinds(no_taper(_curve(paused), S)) == [(Kind.NO_TAPER, W, 36000.0, 36000.0)]
    tapered = [200.0] * 100 + [120.0] + [200.0] * minutes
    assert no_taper(_curve(tapered), S) == []


def test_energy_beyond_pack_edge() -> None:
    # 300 W (class up to 350 W, 2,800 Wh): 560 minutes are 2,800 Wh exactly
    assert energy_beyond_pack(_curve([300.0] * 559), S) == []
    found = energy_beyond_pack(_curve([300.0] * 560), S)
    assert _kinds(found) == [(Kind.ENERGY_BEYOND_PACK, W, 33600.0, 33600.0)]
    assert found[0].seen == (
        "2,800 Wh drawn while charging, beyond any pack of a up to 350 W charger "
        "(2,800 Wh at the socket)"
    )
    # float-level minutes (<= 25 W) do not count
    assert energy_beyond_pack(_curve([300.0] * 559 + [25.0] * 600), S) == []


def _tapered(rise_w: float, minutes: int) -> list[float]:
    """200 W CC for an hour, 20 W float for an hour, then `rise_w` for `minutes`."""
    return [200.0] * 60 + [20.0] * 60 + [rise_w] * minutes + [20.0] * 5


def test_rise_after_taper_edge() -> None:
    # allowed: the 20 W trough; a rise needs 1.5 x 20 = 30 W and 20 + 25 = 45 W, for 10 min
    assert rise_after_taper(_curve(_tapered(44.9, 30)), S) == []
    assert rise_after_taper(_curve(_tapered(45.0, 9)), S) == []
    assert _kinds(rise_after_taper(_curve(_tapered(45.0, 10)), S)) == [
        (Kind.RISE_AFTER_TAPER, C, 7200.0, 7800.0)
    ]


def test_a_restart_after_a_pause_is_not_a_rise() -> None:
    """Power back at CC after a pause, decaying with the lead-acid restart's constants."""
    decay = [200.0 * np.exp(-max(m * 60.0 - 120.0, 0.0) / 600.0) for m in range(20)]
    back = [max(d, 20.0) for d in decay]
    assert rise_after_taper(_curve([200.0] * 60 + [20.0] * 60 + [0.0] * 3 + back), S) == []
    # the same decay without the pause: the jump to the CC level is taken as a restart too
    assert rise_after_taper(_curve([200.0] * 60 + [20.0] * 60 + back), S) == []
    # held at CC, it is a rise once the restart's allowance (CC for 120 s after the sample
    # it was seen in, then tau 600 s) is below 200 / 1.5 W: from 243 s later, the sample at
    # 7,860 s; critical 10 minutes later
    held = [200.0] * 60 + [20.0] * 60 + [0.0] * 3 + [200.0] * 30
    assert _kinds(rise_after_taper(_curve(held), S)) == [(Kind.RISE_AFTER_TAPER, C, 7860.0, 8460.0)]


@pytest.mark.parametrize(
    ("level", "minutes", "expected"),
    [
        (649.9, 10, []),
        (650.0, 1, []),
        (650.0, 2, [(Kind.OVER_POWER, W, 0.0, 120.0)]),
        (899.9, 3, [(Kind.OVER_POWER, W, 0.0, 120.0)]),
        (900.0, 1, [(Kind.OVER_POWER, C, 0.0, 60.0)]),
    ],
)
def test_over_power_edge(level: float, minutes: int, expected: list[object]) -> None:
    assert _kinds(over_power(_curve([level] * minutes + [100.0] * 3), S)) == expected


@pytest.mark.parametrize(
    ("temps", "expected"),
    [
        ([49.9] * 10, []),
        ([40.0] * 3 + [50.0] + [40.0] * 3, [(Kind.SOCKET_HEAT, W, 180.0, 240.0)]),
        (
            [40.0] * 3 + [55.0] * 2,
            [(Kind.SOCKET_HEAT, W, 180.0, 240.0), (Kind.SOCKET_HEAT, C, 180.0, 240.0)],
        ),
        ([30.0 + 0.99 * m for m in range(20)], []),  # 0.99 K/min, never 50 C
        ([30.0 + 1.01 * m for m in range(8)], [(Kind.SOCKET_HEAT, W, 0.0, 360.0)]),
        ([20.0 + 2.99 * m for m in range(8)], [(Kind.SOCKET_HEAT, W, 0.0, 360.0)]),
        (
            [20.0 + 3.01 * m for m in range(8)],
            [(Kind.SOCKET_HEAT, W, 0.0, 360.0), (Kind.SOCKET_HEAT, C, 0.0, 360.0)],
        ),
        (
            [np.nan] * 5 + [60.0],
            [(Kind.SOCKET_HEAT, W, 300.0, 360.0), (Kind.SOCKET_HEAT, C, 300.0, 360.0)],
        ),
    ],
)
def test_socket_heat_edge(temps: list[float], expected: list[object]) -> None:
    cv = _curve([150.0] * len(temps), temp=temps)
    assert _kinds(socket_heat(cv, S)) == expected


def test_socket_heat_says_what_it_saw() -> None:
    cv = _curve([150.0] * 8, temp=[30.0 + 1.2 * m for m in range(8)])
    assert (
        socket_heat(cv, S)[0].seen
        == "socket warmed 30.0 -> 36.0 °C in 5 min (1.2 K/min; level 1 K/min)"
    )


def _swings(at: list[int], ratio: float = 2.0, minutes: int = 60) -> Curve:
    peak = [200.0] * minutes
    mean = [200.0 / ratio if m in at else 200.0 for m in range(minutes)]
    return _curve(mean, peak)


def test_erratic_power_edge() -> None:
    assert erratic_power(_swings([5, 10, 15]), S) == []
    assert _kinds(erratic_power(_swings([5, 10, 15, 34]), S)) == [
        (Kind.ERRATIC_POWER, W, 300.0, 2100.0)
    ]
    assert erratic_power(_swings([5, 10, 15, 35]), S) == []  # 30 min apart: outside the window
    assert erratic_power(_swings([5, 10, 15, 20], ratio=1.49), S) == []
    # next to a pause: a pause or resume inside the minute, not a poor contact
    paused = _swings([5, 7, 9, 11])
    mean = paused.mean_w.copy()
    mean[[6, 10]] = 0.0
    assert erratic_power(dataclasses.replace(paused, mean_w=mean), S) == []


def _cut(
    t_h: float,
    bay: str = "p1-1",
    session: str = "a",
    reason: str = "over_power",
    card: str = "04aa",
) -> ProtectionCut:
    return ProtectionCut(t_h * 3600.0, bay, session, card, t_h * 3600.0 - 1000.0, reason)


def test_repeated_protection_cuts() -> None:
    assert repeated_protection_cuts([_cut(1.0), _cut(25.0)], S) == []  # 24 h apart
    assert repeated_protection_cuts([_cut(1.0), _cut(2.0, bay="p1-2")], S) == []
    found = repeated_protection_cuts([_cut(24.9, reason="over_temp"), _cut(1.0)], S)
    assert [(f.kind, f.severity, f.bay, f.since_s, f.detected_s, f.seen) for f in found] == [
        (
            Kind.REPEATED_PROTECTION_CUTS,
            C,
            "p1-1",
            2600.0,
            88640.0,
            "cut by the pile's own protection 2 times within 23.9 h (over_power, over_temp;"
            " one card)",
        )
    ]
    other = repeated_protection_cuts([_cut(1.0, session="a"), _cut(3.0, session="b")], S)
    assert [(f.session_id, f.since_s, f.severity) for f in other] == [("b", 0.0, C)]
    # just inside and just outside the window
    day = S.cuts_window_s / 3600.0
    assert len(repeated_protection_cuts([_cut(1.0), _cut(1.0 + day - 1e-6)], S)) == 1
    assert repeated_protection_cuts([_cut(1.0), _cut(1.0 + day)], S) == []


def test_repeated_cuts_of_different_cards_only_warn() -> None:
    """Two residents' chargers cut at one socket: the socket is as likely as either pack."""
    cuts = [_cut(1.0, session="a"), _cut(2.0, session="b", card="04bb")]
    (f,) = repeated_protection_cuts(cuts, S)
    assert (f.severity, f.card, f.session_id) == (Severity.WARNING, "04bb", "b")
    assert f.seen.endswith("(over_power, over_power; different or unknown cards)")
    unknown = [_cut(1.0, card=""), _cut(2.0, card="")]
    assert [f.severity for f in repeated_protection_cuts(unknown, S)] == [Severity.WARNING]


def test_check_orders_by_detection_and_a_silent_curve_finds_nothing() -> None:
    assert check(_curve([0.0] * 30), S) == []
    assert check(_curve([]), S) == []
    cv = _curve([1000.0] * 3, temp=[52.0, 52.0, 52.0])
    assert _kinds(check(cv, S)) == [
        (Kind.OVER_POWER, C, 0.0, 60.0),
        (Kind.SOCKET_HEAT, W, 0.0, 60.0),
        (Kind.OVER_POWER, W, 0.0, 120.0),
    ]
