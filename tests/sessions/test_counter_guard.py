"""Energy you can bill: a counter step is believed only within what the bay's power allows over
the time since the last believed reading; a glitch either way is set aside (counted, logged once
per episode) and the true value after it is believed again; a reset counter ends the session as
`fault` with what it had billed, never a negative or a 4-billion Wh step."""

from __future__ import annotations

import logging

import pytest

from chargectl.sessions.counterguard import SLACK_S, CounterGuard, Verdict, allowance_wh
from chargectl.sessions.machine import BayObservation
from chargectl.sessions.manager import TapOutcome
from chargectl.sessions.records import U32, SessionEnd, SessionSettle, counter_delta
from tests.sessions.rig import ALICE, BOB, Rig

LIMITS = {"p/1": 2500.0, "p/2": 2500.0}


def guard(max_w: float | None = 3600.0) -> CounterGuard:
    g = CounterGuard("p/1", max_w, confirm_s=60.0)
    g.seed(1000, 0.0)
    return g


def test_allowance_is_the_bay_power_over_the_time_since() -> None:
    assert allowance_wh(3600.0, 0.0) == 3600 * SLACK_S / 3600 + 1
    assert allowance_wh(3600.0, 3600.0) == 3600 + 10 + 1
    assert allowance_wh(None, 5.0) == U32 // 2 - 1


def test_a_step_within_the_allowance_is_believed() -> None:
    g = guard()
    assert g.take(1020, 10.0) is Verdict.BELIEVED  # 20 Wh in 10 s at 3600 W + slack: ok
    assert g.take(1051, 20.0) is Verdict.SET_ASIDE  # 31 Wh in 10 s: more than 3600 W can do
    assert g.value == 1020 and g.anomalies == 1
    assert g.take(1041, 20.0) is Verdict.BELIEVED  # the true value again
    assert (g.value, g.since) == (1041, 20.0)


def test_the_wrap_is_a_forward_step() -> None:
    g = CounterGuard("p/1", 3600.0, confirm_s=60.0)
    g.seed(U32 - 5, 0.0)
    assert g.take(3, 5.0) is Verdict.BELIEVED and g.value == 3


def test_an_unchanged_reading_does_not_restart_the_time() -> None:
    """The counter is repeated every tick between slow reads: the allowance counts from when a
    value was first seen."""
    g = guard(360.0)  # 0.1 Wh/s
    for t in range(1, 60):
        assert g.take(1000, float(t)) is Verdict.BELIEVED
    assert g.take(1007, 60.0) is Verdict.BELIEVED  # 6 Wh over 60 s at 360 W (+ slack, + 1)


def test_a_backward_step_is_set_aside_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    g = guard()
    with caplog.at_level(logging.WARNING, "chargectl.sessions"):
        for t in range(1, 6):
            assert g.take(900, float(t)) is Verdict.SET_ASIDE
    assert g.anomalies == 1  # one value, seen five times
    assert len([r for r in caplog.records if "set aside" in r.message]) == 1
    assert "behind" in caplog.records[0].message


def test_a_new_series_for_confirm_s_is_a_reset() -> None:
    g = guard(360.0)
    t = 0.0
    reading = 3
    while True:
        t += 10.0
        reading += 1
        v = g.take(reading, t)
        if v is Verdict.REBASED:
            break
        assert v is Verdict.SET_ASIDE
    assert t == 70.0  # first seen at 10 s, confirmed 60 s later
    assert (g.value, g.rebases) == (reading, 1)


def test_a_series_that_jumps_about_is_never_taken() -> None:
    g = guard(360.0)
    for i in range(100):
        assert g.take(5_000_000 + (i % 2) * 900_000, 10.0 * i + 1) is Verdict.SET_ASIDE
    assert g.value == 1000 and g.rebases == 0


def test_without_a_limit_forward_steps_are_believed_as_before() -> None:
    g = guard(None)
    assert g.take(1_001_000, 1.0) is Verdict.BELIEVED
    assert g.take(1_000_999, 2.0) is Verdict.SET_ASIDE


@pytest.mark.parametrize("offset", [1_000_000, -400, U32 // 2 + 7])
def test_a_glitch_replayed_either_way_bills_the_true_energy(
    offset: int, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig(max_power_w=LIMITS)
    bay = rig.bays["p/1"]
    bay.profile = lambda t: 700.0
    rig.tap("p/1", ALICE)
    true_start = int(bay.counter)
    with caplog.at_level(logging.WARNING, "chargectl.sessions"):
        for _ in range(3):  # three episodes of a few seconds, a minute apart
            rig.run(60)
            bay.offset = offset % U32
            rig.run(4)
            bay.offset = 0
        rig.run(30)
    assert rig.mgr.readout().counter_anomalies >= 3
    assert len([r for r in caplog.records if "set aside" in r.message]) == 3
    s = rig.mgr.session_at("p/1")
    assert s is not None and s.energy_wh <= counter_delta(true_start, int(bay.counter))
    rig.run(6)
    assert rig.tap("p/1", ALICE).outcome is TapOutcome.STOPPED
    rig.run(40)  # settle
    (settle,) = rig.ledger.of(SessionSettle)
    truth = counter_delta(true_start, int(bay.counter))
    assert abs(settle.energy_wh - truth) <= 1, (settle.energy_wh, truth)


def test_a_long_unseen_stretch_is_believed_when_the_bay_could_have_drawn_it() -> None:
    rig = Rig(max_power_w=LIMITS)
    bay = rig.bays["p/1"]
    bay.profile = lambda t: 2000.0  # a pile in failsafe keeps it on while nobody reads it
    rig.tap("p/1", ALICE)
    rig.run(10)
    bay.answers = False
    rig.run(900)
    bay.answers = True
    rig.run(2)
    s = rig.mgr.session_at("p/1")
    assert s is not None and abs(s.energy_wh - (2000 * 912 / 3600)) <= 2
    assert rig.mgr.readout().counter_anomalies == 0


def test_a_replaced_pile_ends_the_session_as_fault_and_the_next_counts_from_it() -> None:
    rig = Rig(max_power_w=LIMITS, counters={"p/1": 50_000, "p/2": 0})
    bay = rig.bays["p/1"]
    bay.profile = lambda t: 360.0
    rig.tap("p/1", ALICE)
    rig.run(100)
    billed = rig.mgr.session_at("p/1").energy_wh  # type: ignore[union-attr]
    assert billed == int(bay.counter) - 50_000 > 0
    bay.counter = 0.0  # a new pile: its counters start at 0
    rig.run(59)
    assert rig.mgr.session_at("p/1") is not None  # a glitch gets the benefit of the doubt
    rig.run(3)
    assert rig.mgr.session_at("p/1") is None
    (end,) = rig.ledger.of(SessionEnd)
    assert (end.reason, end.energy_wh) == ("fault", billed)
    rig.run(40)
    (settle,) = rig.ledger.of(SessionSettle)
    assert settle.energy_wh == billed  # nothing of the new counter settles onto it
    assert rig.mgr.readout().counter_resets == 1
    start = int(bay.counter)
    assert rig.tap("p/1", BOB).outcome is TapOutcome.STARTED
    rig.run(100)
    s = rig.mgr.session_at("p/1")
    assert s is not None and s.counter_start == start and s.energy_wh == int(bay.counter) - start


def test_a_value_out_of_range_is_counted_and_ignored() -> None:
    rig = Rig(max_power_w=LIMITS)
    rig.bays["p/1"].profile = lambda t: 100.0
    rig.tap("p/1", ALICE)
    rig.mgr.update(rig.now + 1, rig.wall + 1, {})
    rig.run(5)
    before = rig.mgr.session_at("p/1").energy_wh  # type: ignore[union-attr]
    obs = BayObservation(True, 100.0, U32 + 5, None, False)
    rig.mgr.update(rig.now + 1, rig.wall + 1, {"p/1": obs})
    assert rig.mgr.session_at("p/1").energy_wh == before  # type: ignore[union-attr]
    assert rig.mgr.readout().counter_anomalies == 1
