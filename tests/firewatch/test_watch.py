"""FireWatch on synthetic tick streams: hard thresholds act in the tick that shows them, slow
signs at the minute they become certain, nothing is reported twice."""

from __future__ import annotations

import math

import numpy as np
import pytest

from chargectl.firewatch.detectors import Finding, Kind, Severity
from chargectl.firewatch.settings import FirewatchSettings
from chargectl.firewatch.watch import FireWatch, Running

S = FirewatchSettings()
DT = 5.0
BAYS = ("p1/1", "p1/2")
A = Running("7", "04a1b2", 100.0)
B = Running("8", "04c3d4", 100.0)
NAN = math.nan


def run(
    watch: FireWatch,
    seconds: float,
    watts: float | list[float],
    *,
    start: float = 100.0,
    temp: float = NAN,
    sessions: tuple[Running | None, ...] = (A, None),
) -> list[tuple[float, Finding]]:
    """Tick from `start` for `seconds`; bay 0 draws `watts` (a list: one value per tick)."""
    out = []
    n = int(seconds / DT)
    for i in range(n):
        now = start + i * DT
        w = watts[i] if isinstance(watts, list) else watts
        for f in watch.tick(now, sessions, np.array([w, NAN]), np.array([temp, NAN])):
            out.append((now, f))
    return out


def test_hard_over_power_acts_in_the_same_tick() -> None:
    w = FireWatch(BAYS, S)
    assert run(w, 600, 300.0) == []
    found = w.tick(700.0, (A, None), np.array([1200.0, NAN]), np.array([NAN, NAN]))
    assert [(f.kind, f.severity, f.bay, f.card, f.session_id) for f in found] == [
        (Kind.OVER_POWER, Severity.CRITICAL, "p1/1", "04a1b2", "7")
    ]
    assert found[0].detected_s == 600.0
    # the same power goes on: not reported again (the curve's own over_power critical too)
    assert all(f.severity is not Severity.CRITICAL for _, f in run(w, 300, 1200.0, start=705.0))


def test_just_below_the_hard_levels_is_not_critical_at_once() -> None:
    w = FireWatch(BAYS, S)
    found = w.tick(100.0, (A, None), np.array([899.0, NAN]), np.array([54.9, NAN]))
    assert found == []


def test_hard_temperature_acts_in_the_same_tick() -> None:
    w = FireWatch(BAYS, S)
    found = w.tick(100.0, (A, None), np.array([200.0, NAN]), np.array([55.0, NAN]))
    assert [(f.kind, f.severity) for f in found] == [(Kind.SOCKET_HEAT, Severity.CRITICAL)]


def test_no_reading_is_no_finding() -> None:
    w = FireWatch(BAYS, S)
    assert run(w, 600, NAN) == []


def test_over_power_warning_at_the_minute_it_becomes_certain() -> None:
    """700 W from the start: warned once two whole minutes are at it, when the third begins."""
    w = FireWatch(BAYS, S)
    found = run(w, 400, 700.0)
    assert [(now, f.kind, f.severity) for now, f in found] == [
        (100.0 + 120.0, Kind.OVER_POWER, Severity.WARNING)
    ]


def test_no_taper_warns_then_is_critical_once_each() -> None:
    """A 300 W charger that never tapers: warned at 9.5 h, critical at 11.5 h of CC, at the
    first tick after the minute that completed it; each only once (energy beyond the pack
    warns too, at 2,800 Wh)."""
    w = FireWatch(BAYS, S, max_minutes=800)
    found = run(w, 12 * 3600, 300.0)
    got = [(now - 100.0, f.kind, f.severity) for now, f in found]
    assert [g for g in got if g[1] is Kind.NO_TAPER] == [
        (9.5 * 3600, Kind.NO_TAPER, Severity.WARNING),
        (11.5 * 3600, Kind.NO_TAPER, Severity.CRITICAL),
    ]


def test_a_new_session_starts_a_new_curve_and_may_be_reported_again() -> None:
    w = FireWatch(BAYS, S)
    assert len(run(w, 10, 1000.0)) == 1
    assert run(w, 10, 1000.0, start=120.0) == []
    again = run(w, 10, 1000.0, start=200.0, sessions=(B, None))
    assert [f.session_id for _, f in again] == ["8"]


def test_a_bay_without_a_session_is_forgotten() -> None:
    w = FireWatch(BAYS, S)
    assert len(run(w, 10, 1000.0)) == 1
    assert run(w, 10, 1000.0, start=120.0, sessions=(None, None)) == []
    assert len(run(w, 10, 1000.0, start=140.0)) == 1  # the same id again: a fresh curve


def test_the_curve_is_bounded() -> None:
    w = FireWatch(BAYS, S, max_minutes=3)
    run(w, 600, 300.0)
    track = w._tracks[0]
    assert track is not None and track.n == 3


def _ticks(
    watch: FireWatch, now: float, running: tuple[Running | None, ...], codes: list[int]
) -> list[Finding]:
    return watch.tick(
        now, running, np.array([300.0, NAN]), np.array([NAN, NAN]), fault=np.array(codes)
    )


def test_two_pile_cuts_of_one_card_within_a_day_are_critical() -> None:
    """The pile latches over-power (1); staff reset it (0); it latches over-temperature (2) in
    a later session of the same card. The session is named though the sessions' rules ended it
    in the tick that saw the fault (the watch runs after them)."""
    w = FireWatch(BAYS, S)
    assert _ticks(w, 100.0, (A, None), [0, 0]) == []
    assert _ticks(w, 700.0, (None, None), [1, 0]) == []  # cut 1: A (ended this tick)
    assert _ticks(w, 800.0, (None, None), [0, 0]) == []  # staff reset the pile's fault
    a2 = Running("9", A.card, 5000.0)
    assert _ticks(w, 5000.0, (a2, None), [0, 0]) == []
    found = _ticks(w, 5600.0, (None, None), [2, 0])
    assert [(f.kind, f.severity, f.bay, f.card, f.session_id) for f in found] == [
        (Kind.REPEATED_PROTECTION_CUTS, Severity.CRITICAL, "p1/1", A.card, "9")
    ]
    assert (found[0].since_s, found[0].detected_s) == (0.0, 600.0)  # the first in another session
    assert "(over_power, over_temp; one card)" in found[0].seen
    assert _ticks(w, 5700.0, (None, None), [2, 0]) == []  # the latch stays: no new cut


def test_two_cuts_of_different_cards_warn_and_a_day_apart_nothing() -> None:
    w = FireWatch(BAYS, S)
    _ticks(w, 100.0, (A, B), [0, 0])
    _ticks(w, 200.0, (A, B), [0, 1])  # B cut at p1/2
    _ticks(w, 300.0, (A, None), [0, 0])
    c = Running("10", "04eeff", 400.0)
    _ticks(w, 400.0, (A, c), [0, 0])
    (f,) = _ticks(w, 500.0, (A, c), [0, 1])
    assert (f.severity, f.bay, f.card) == (Severity.WARNING, "p1/2", "04eeff")
    # p1/1: one cut now, one a day later: not within the window
    _ticks(w, 600.0, (A, None), [1, 0])
    _ticks(w, 700.0, (None, None), [0, 0])
    later = 600.0 + S.cuts_window_s
    _ticks(w, later - 10.0, (A, None), [0, 0])
    assert _ticks(w, later, (A, None), [1, 0]) == []


def test_a_latch_from_before_or_a_bay_not_read_is_no_cut() -> None:
    w = FireWatch(BAYS, S)
    assert _ticks(w, 100.0, (A, None), [1, 0]) == []  # latched before the watch began
    assert _ticks(w, 200.0, (A, None), [-1, 0]) == []  # the pile not read
    assert _ticks(w, 300.0, (A, None), [1, 0]) == []  # read again: the same latch
    assert _ticks(w, 400.0, (A, None), [0, 0]) == []
    assert _ticks(w, 500.0, (A, None), [1, 0]) == []  # one cut
    assert _ticks(w, 600.0, (A, None), [3, 0]) == []  # welded (3): not a protection cut
    (f,) = _ticks(w, 700.0, (A, None), [2, 0])
    assert f.severity is Severity.CRITICAL
    with pytest.raises(ValueError, match=r"fault: shape \(3,\)"):
        _ticks(w, 800.0, (A, None), [0, 0, 0])


def _slow(watch: FireWatch, now: float, w: float, va: float) -> list[Finding]:
    return watch.tick(
        now, (A, None), np.array([w, NAN]), np.array([NAN, NAN]), va=np.array([va, NAN])
    )


def test_a_heater_joining_a_charger_is_seen_in_its_first_tick_between_slow_readings() -> None:
    """A charger at power factor 0.6 (300 W, 500 VA); the pile's power is read every 10 ticks.
    A 1,000 W heater joins between readings: its tick's VA at the session's power factor is
    900 W or more, critical at once, not at the next reading."""
    w = FireWatch(BAYS, S)
    for k in range(30):
        assert _slow(w, 100.0 + k, 300.0 + (k // 10), 500.0) == []  # read at k = 0, 10, 20
    (f,) = _slow(w, 130.5, 302.0, 500.0 + 1000.0)  # the reading still the charger's
    assert (f.kind, f.severity) == (Kind.OVER_POWER, Severity.CRITICAL)
    assert f.seen.startswith("900 W at the socket (current x voltage at power factor 0.60)")


def test_a_low_power_factor_charger_is_never_judged_by_its_va() -> None:
    """li72 at power factor 0.5: 488 W, 976 VA (over 900) every tick, readings now and then;
    and where no reading comes at all (the rules judge VA: w == va) nothing is learnt."""
    w = FireWatch(BAYS, S)
    for k in range(200):
        assert _slow(w, 100.0 + k, 488.0 + (k // 10) % 2, 976.0) == []
    w2 = FireWatch(BAYS, S)
    assert _slow(w2, 100.0, 600.0, 600.0) == []  # the fallback: VA is all there is
    assert _slow(w2, 101.0, 300.0, 600.0) == []  # a reading at PF 0.5
    assert _slow(w2, 102.0, 300.0, 1790.0) == []  # 1,790 VA x 0.5 = 895 W: under 900
    (f,) = _slow(w2, 103.0, 300.0, 1800.0)
    assert f.seen.startswith("900 W")


def test_curve_checks_are_spread_over_ticks_when_many_minutes_end_together() -> None:
    """20 sessions tapped in one tick, each drawing 700 W: the over-power warning (two whole
    minutes) is due for all in the same tick; 8 are checked a tick, in turn."""
    bays = [f"p/{k}" for k in range(20)]
    runs = [Running(str(k), f"04{k:06x}", 0.0) for k in range(20)]
    w = FireWatch(bays, S, checks_per_tick=8)
    watts, temps = np.full(20, 700.0), np.full(20, NAN)
    per_tick = [len(w.tick(float(t), runs, watts, temps)) for t in range(126)]
    assert per_tick[120:123] == [8, 8, 4] and sum(per_tick) == 20
