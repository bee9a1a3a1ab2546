"""Session rules as the piles do them: active power where the device reports it (VA only where
it does not), "had load" on a sustained run of 10-s averages, the first-30-minutes no-load rule."""

from __future__ import annotations

from chargectl.sessions.records import Checkpoint, LedgerState, OpenSession, SessionEnd
from tests.sessions.rig import ALICE, Rig, settings


def ended(rig: Rig) -> tuple[str, float]:
    (end,) = rig.ledger.of(SessionEnd)
    return end.reason, end.end


def test_one_inrush_sample_is_not_a_load() -> None:
    rig = Rig()
    rig.bays["p/1"].profile = lambda t: 1500.0 if t < 1 else 0.0
    rig.tap("p/1", ALICE)
    took = rig.run_until_idle("p/1", 1000)
    reason, _ = ended(rig)
    assert reason == "no_load" and 118 <= took <= 125


def test_a_sustained_load_counts_and_the_session_goes_on() -> None:
    rig = Rig()
    rig.bays["p/1"].profile = lambda t: 150.0
    rig.tap("p/1", ALICE)
    rig.run(3600)
    s = rig.mgr.session_at("p/1")
    assert s is not None and s.had_load and s.had_first_load


def test_a_flat_standby_draw_under_30_w_ends_as_no_load_at_30_min() -> None:
    rig = Rig()
    rig.bays["p/1"].profile = lambda t: 22.0
    rig.tap("p/1", ALICE)
    took = rig.run_until_idle("p/1", 4000)
    assert ended(rig)[0] == "no_load" and 1800 <= took <= 1810


def test_the_first_load_rule_is_configurable_and_can_be_off() -> None:
    rig = Rig(settings=settings(no_load_first_w=20.0, no_load_first_s=600.0))
    rig.bays["p/1"].profile = lambda t: 15.0
    rig.tap("p/1", ALICE)
    took = rig.run_until_idle("p/1", 4000)
    assert ended(rig)[0] == "no_load" and 600 <= took <= 610
    rig = Rig(settings=settings(no_load_first_s=0.0, full_hold_s=36000.0))
    rig.bays["p/1"].profile = lambda t: 15.0
    rig.tap("p/1", ALICE)
    rig.run(7200)
    assert rig.mgr.session_at("p/1") is not None


def test_thirty_watts_reached_after_a_slow_start_counts() -> None:
    rig = Rig()
    rig.bays["p/1"].profile = lambda t: 10.0 if t < 1200 else 60.0
    rig.tap("p/1", ALICE)
    rig.run(3600)
    assert rig.mgr.session_at("p/1") is not None


def test_an_idle_charger_is_unplugged_on_its_active_power_not_its_va() -> None:
    """The audit's case: a charger left on without a battery draws 1 W but shows 4 VA. On VA it
    ended `full` after 135 min; on the pile's own watts it is `unplugged` within the window."""
    rig = Rig()
    bay = rig.bays["p/1"]
    bay.profile = lambda t: 120.0 if t < 600 else 1.0
    bay.va_per_w, bay.idle_va = 1.0, 3.5
    rig.tap("p/1", ALICE)
    took = rig.run_until_idle("p/1", 4 * 3600)
    assert ended(rig)[0] == "unplugged" and 600 + 300 <= took <= 600 + 300 + 20


def test_va_is_the_fallback_where_no_power_is_reported() -> None:
    rig = Rig()
    bay = rig.bays["p/1"]
    bay.reports_power = False
    bay.profile = lambda t: 120.0 if t < 600 else 1.0
    bay.va_per_w, bay.idle_va = 1.0, 3.5
    rig.tap("p/1", ALICE)
    took = rig.run_until_idle("p/1", 4 * 3600)
    # 4.5 VA is above unplugged_w: the session runs until the full-charge rule ends it.
    assert ended(rig)[0] == "full" and took >= 600 + 1800 + 2700


def test_a_restart_keeps_the_first_load() -> None:
    rig = Rig()
    rig.bays["p/1"].profile = lambda t: 100.0
    rig.tap("p/1", ALICE)
    rig.run(400)
    cp = rig.ledger.of(Checkpoint)[-1]
    assert cp.had_load and cp.had_first_load and cp.elapsed_s >= 360
    rec = OpenSession(
        cp.id, ALICE, "p/1", rig.wall - 400, cp.counter_start, cp.counter_last,
        peak_w=cp.peak_w, closed_s=cp.closed_s, had_load=True, had_first_load=True,
        elapsed_s=cp.elapsed_s, checkpoint_at=cp.at,
    )  # fmt: skip
    again = Rig(state=LedgerState((rec,), 9, {}), counters={"p/1": cp.counter_last, "p/2": 0})
    again.bays["p/1"].profile = lambda t: 12.0  # now a trickle: under 30 W
    again.run(3600)
    assert again.mgr.session_at("p/1") is not None
