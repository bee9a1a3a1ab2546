"""Energy from the bays' own counters: wrap, settle, restart restore; and the manager's guards."""

from __future__ import annotations

import pytest

from chargectl.config.schema import SessionSettings
from chargectl.sessions.cards import Card
from chargectl.sessions.errors import SessionsError, UnknownBay
from chargectl.sessions.machine import BayObservation, Lamp
from chargectl.sessions.manager import SessionManager, TapOutcome
from chargectl.sessions.records import (
    U32,
    Checkpoint,
    LedgerState,
    OpenSession,
    SessionEnd,
    SessionSettle,
    SessionStart,
)
from tests.sessions.rig import ALICE, BOB, WALL0, FakeLedger, Rig, settings


def test_counter_wrap_during_a_session() -> None:
    rig = Rig(counters={"p/1": U32 - 30, "p/2": 5})
    rig.bays["p/1"].profile = lambda t: 360.0
    rig.tap("p/1", ALICE)
    rig.run(1200)  # 120 Wh: the counter passes 2^32
    assert rig.bays["p/1"].counter < 1000
    credit = rig.mgr.demand()["p/1"].credit_wh
    assert 118 <= credit <= 120
    rig.tap("p/1", ALICE)
    assert rig.ledger.of(SessionEnd)[0].energy_wh == credit


def test_a_counter_going_backwards_is_ignored() -> None:
    rig = Rig()
    rig.bays["p/1"].profile = lambda t: 360.0
    rig.tap("p/1", ALICE)
    rig.run(100)
    before = rig.mgr.demand()["p/1"].credit_wh
    rig.bays["p/1"].counter -= 500  # a garbage reading
    rig.step()
    assert rig.mgr.demand()["p/1"].credit_wh == before
    assert rig.mgr.readout().counter_anomalies == 1


def test_energy_after_the_end_settles_onto_the_ended_session() -> None:
    rig = Rig()
    rig.bays["p/1"].profile = lambda t: 3600.0  # 1 Wh per second
    rig.tap("p/1", ALICE)
    rig.run(100)
    # The slow poll: the counter the manager saw is stale when the session ends.
    rig.bays["p/1"].answers = False
    rig.run(5)
    rig.tap("p/1", ALICE)
    (end,) = rig.ledger.of(SessionEnd)
    rig.bays["p/1"].answers = True
    rig.run(40)
    (settle,) = rig.ledger.of(SessionSettle)
    assert settle.energy_wh > end.energy_wh
    assert settle.energy_wh == settle.counter_last - 1000
    ev = rig.mgr.drain_events()
    assert [(e.reason, e.energy_wh) for e in ev.settled] == [("user_stop", settle.energy_wh)]
    assert ev.ended == {"user_stop": 1}
    assert ev.taps == {"started": 1, "stopped": 1}
    assert rig.mgr.drain_events().settled == ()


def test_a_new_session_at_the_bay_waits_until_the_previous_one_settled() -> None:
    """The counter the manager saw at the end is a slow poll old: what flowed until the relay
    opened belongs to the first card. The second session is held (relay open, lamp yellow)
    until the settle time is over and starts from the counter as it is then."""
    rig = Rig()
    rig.bays["p/1"].profile = lambda t: 3600.0  # 1 Wh per second
    rig.tap("p/1", ALICE)
    rig.run(100)
    rig.bays["p/1"].answers = False  # the slow poll: no fresh reading for a while
    rig.run(5)
    rig.tap("p/1", ALICE)
    rig.tap("p/1", BOB)
    assert rig.ledger.of(SessionStart)[1].counter_start is None
    assert not rig.mgr.demand()["p/1"].wants_current
    rig.bays["p/1"].answers = True
    rig.run(10)
    assert not rig.mgr.demand()["p/1"].wants_current
    assert rig.mgr.lamp("p/1") is Lamp.WAITING
    assert rig.mgr.drain_events().settled == ()
    rig.run(18)
    assert not rig.mgr.demand()["p/1"].wants_current
    rig.run(2)  # settle_s (30 s) after the end
    assert [e.id for e in rig.mgr.drain_events().settled] == [1]
    assert rig.mgr.demand()["p/1"].wants_current
    (settle,) = rig.ledger.of(SessionSettle)
    assert settle.energy_wh == settle.counter_last - 1000 >= 105  # the tail is the first card's
    second = rig.mgr.session_at("p/1")
    assert second is not None and second.counter_start == settle.counter_last
    rig.run(60)
    rig.tap("p/1", BOB)
    ends = rig.ledger.of(SessionEnd)
    assert ends[1].counter_start == settle.counter_last
    assert ends[1].energy_wh == ends[1].counter_last - settle.counter_last >= 59


def test_a_held_session_that_ends_settles_its_predecessor_first() -> None:
    rig = Rig()
    rig.bays["p/1"].profile = lambda t: 3600.0
    rig.tap("p/1", ALICE)
    rig.run(50)
    rig.tap("p/1", ALICE)
    rig.tap("p/1", BOB)
    rig.run(6)  # past the tap debounce
    rig.tap("p/1", BOB)  # changed their mind while held
    assert [e.id for e in rig.mgr.drain_events().settled] == [1]
    ends = rig.ledger.of(SessionEnd)
    assert [(e.id, e.reason, e.energy_wh) for e in ends] == [
        (1, "user_stop", ends[0].energy_wh),
        (2, "user_stop", 0),
    ]
    assert ends[1].counter_start == ends[1].counter_last == ends[0].counter_last
    assert not rig.mgr.demand()["p/1"].wants_current


def test_counter_unknown_at_the_tap_starts_from_the_first_reading() -> None:
    rig = Rig(counters={"p/1": None, "p/2": None})
    rig.bays["p/1"].answers = False
    rig.tap("p/1", ALICE)
    assert rig.ledger.of(SessionStart)[0].counter_start is None
    rig.bays["p/1"].hold_open = True
    rig.run(3)
    rig.bays["p/1"].answers = True
    rig.bays["p/1"].hold_open = False
    rig.bays["p/1"].profile = lambda t: 360.0
    rig.run(100)
    s = rig.mgr.session_at("p/1")
    assert s is not None and s.counter_start == 1000
    rig.run(60)
    cp = rig.ledger.of(Checkpoint)[-1]
    assert cp.counter_start == 1000


def open_session(**kw: object) -> OpenSession:
    base: dict[str, object] = {
        "id": 7,
        "card": ALICE,
        "bay": "p/1",
        "start": WALL0 - 3600,
        "counter_start": 1000,
        "counter_last": 1500,
    }
    base.update(kw)
    return OpenSession(**base)  # type: ignore[arg-type]


def test_restore_resumes_with_the_counter_now() -> None:
    state = LedgerState((open_session(),), 8, {})
    rig = Rig(state=state, counters={"p/1": 1700, "p/2": 50})
    s = rig.mgr.session_at("p/1")
    assert s is not None and s.id == 7 and s.card == ALICE
    d = rig.mgr.demand()["p/1"]
    assert d.wants_current and d.credit_wh == 700  # the energy while the daemon was down counts
    (cp,) = rig.ledger.of(Checkpoint)
    assert (cp.id, cp.counter_last, cp.energy_wh) == (7, 1700, 700)
    rig.bays["p/1"].profile = lambda t: 360.0
    rig.run(100)
    rig.tap("p/1", ALICE)
    end = rig.ledger.of(SessionEnd)[0]
    assert end.id == 7 and end.energy_wh == int(rig.bays["p/1"].counter) - 1000
    assert rig.tap("p/2", BOB).session == 8  # ids go on from the ledger's


def test_restore_across_a_wrap() -> None:
    state = LedgerState((open_session(counter_start=U32 - 50, counter_last=U32 - 10),), 8, {})
    rig = Rig(state=state, counters={"p/1": 100, "p/2": 0})
    assert rig.mgr.demand()["p/1"].credit_wh == 150


def test_restore_with_the_counter_unknown_keeps_the_ledger_value() -> None:
    rig = Rig(state=LedgerState((open_session(),), 8, {}), counters={"p/1": None, "p/2": None})
    assert rig.mgr.demand()["p/1"].credit_wh == 500
    rig.bays["p/1"].counter = 1600
    rig.bays["p/1"].hold_open = True
    rig.step()
    assert rig.mgr.demand()["p/1"].credit_wh == 600


def test_restore_with_the_counter_behind_ends_the_session_as_fault() -> None:
    """A counter behind the ledger is set aside (a glitch comes back); one that stays on a
    series of its own for counter_confirm_s was reset: the session ends as `fault` with what
    the ledger held, and nothing is billed across the jump."""
    rig = Rig(state=LedgerState((open_session(),), 8, {}), counters={"p/1": 20, "p/2": 0})
    assert rig.mgr.readout().counter_anomalies == 1
    s = rig.mgr.session_at("p/1")
    assert s is not None and s.energy_wh == 500
    rig.bays["p/1"].hold_open = True
    rig.run(59)
    assert rig.mgr.session_at("p/1") is not None and not rig.ledger.of(SessionEnd)
    rig.run(2)
    assert rig.mgr.session_at("p/1") is None
    (end,) = rig.ledger.of(SessionEnd)
    assert (end.id, end.reason, end.counter_last, end.energy_wh) == (7, "fault", 1500, 500)
    assert rig.mgr.readout().counter_resets == 1
    rig.run(40)
    (settle,) = rig.ledger.of(SessionSettle)
    assert settle.energy_wh == 500  # the new series never settles onto it


def test_restore_with_the_bay_gone_from_the_config() -> None:
    rig = Rig(state=LedgerState((open_session(bay="p/9"),), 8, {}))
    (end,) = rig.ledger.of(SessionEnd)
    assert (end.id, end.reason, end.energy_wh) == (7, "staff_stop", 500)


def test_restore_two_open_sessions_on_one_bay_keeps_the_newest() -> None:
    older = open_session(id=3, counter_start=800, counter_last=900)
    rig = Rig(state=LedgerState((open_session(), older), 8, {}), counters={"p/1": 1500})
    assert rig.mgr.session_at("p/1").id == 7  # type: ignore[union-attr]
    (end,) = rig.ledger.of(SessionEnd)
    assert (end.id, end.reason) == (3, "fault")


def test_restore_resumes_the_full_detection_where_it_was() -> None:
    cfg = settings(full_topup_s=2700)
    rec = open_session(peak_w=300.0, closed_s=9000, had_load=True, low_s=1800, topup_s=2000)
    rig = Rig(settings=cfg, state=LedgerState((rec,), 8, {}), counters={"p/1": 1500}, tick=2.0)
    rig.bays["p/1"].profile = lambda t: 15.0
    took = rig.run_until_idle("p/1", 3600)
    assert 700 - 4 <= took <= 700 + 4
    assert rig.ledger.of(SessionEnd)[0].reason == "full"


def test_restore_loads_todays_usage_for_quotas() -> None:
    state = LedgerState((), 20, {ALICE: 450})
    rig = Rig(state=state, cards=[Card(ALICE, "Flat 1A", daily_kwh=0.5)])
    assert rig.ledger.since is not None and rig.ledger.since <= WALL0
    assert WALL0 - rig.ledger.since == 8 * 3600  # midnight of the day (UTC here)
    rig.bays["p/1"].profile = lambda t: 360.0
    assert rig.tap("p/1", ALICE).session == 20
    took = rig.run_until_idle("p/1", 3600)
    assert 490 <= took <= 520  # 50 Wh left
    assert rig.ledger.of(SessionEnd)[0].reason == "quota"


def test_guards() -> None:
    ledger = FakeLedger()
    mgr = SessionManager(SessionSettings(), ledger, ["p/1"])
    with pytest.raises(SessionsError, match="restore"):
        mgr.on_tap("p/1", ALICE, 0.0, WALL0)
    with pytest.raises(UnknownBay, match="p/9"):
        mgr.on_tap("p/9", ALICE, 0.0, WALL0)
    mgr.restore({}, WALL0, 0.0)
    with pytest.raises(SessionsError, match="twice"):
        mgr.restore({}, WALL0, 0.0)
    with pytest.raises(UnknownBay, match="p/9"):
        mgr.staff_stop("p/9", 0.0, WALL0)
    obs = BayObservation(relay_closed=False, power_w=0.0, energy_wh=0, fault=None, emergency=False)
    with pytest.raises(UnknownBay, match="p/9"):
        mgr.update(1.0, WALL0, {"p/9": obs})
    with pytest.raises(SessionsError, match="duplicate"):
        SessionManager(SessionSettings(), ledger, ["p/1", "p/1"])


def test_readout_counts() -> None:
    rig = Rig()
    rig.bays["p/2"].hold_open = True
    rig.tap("p/1", ALICE)
    rig.tap("p/2", BOB)
    rig.tap("p/2", ALICE)
    rig.run(2)
    r = rig.mgr.readout()
    assert (r.active, r.charging, r.waiting) == (2, 1, 1)
    assert r.taps_total == {"started": 2, "busy": 1}
    rig.mgr.staff_stop("p/1", rig.now, rig.wall)
    assert rig.mgr.readout().ended_total == {"staff_stop": 1}
    rig.run(5)
    assert rig.mgr.lamp("p/1") is Lamp.AVAILABLE
    assert rig.tap("p/1", BOB).outcome is TapOutcome.LIMIT  # one socket session per card
    rig.mgr.staff_stop("p/2", rig.now, rig.wall)
    rig.run(6)  # past the tap debounce
    assert rig.tap("p/1", BOB).outcome is TapOutcome.STARTED


def test_restore_without_now_anchors_the_timers_at_the_first_tick() -> None:
    rec = open_session(start=WALL0 - 99 * 3600, elapsed_s=11.5 * 3600)
    ledger = FakeLedger([Card(ALICE, "Flat 1A")], LedgerState((rec,), 8, {}))
    mgr = SessionManager(SessionSettings(), ledger, ["p/1"])
    mgr.restore({"p/1": 1600}, WALL0)
    assert mgr.demand()["p/1"].credit_wh == 600
    obs = BayObservation(
        relay_closed=True, power_w=100.0, energy_wh=1600, fault=None, emergency=False
    )
    now = 5000.0
    mgr.update(now, WALL0 + 1, {"p/1": obs})
    while mgr.session_at("p/1") is not None:
        now += 10
        mgr.update(now, WALL0 + now - 5000, {"p/1": obs})
    assert 1800 - 10 <= now - 5000 <= 1800 + 10
    assert ledger.of(SessionEnd)[0].reason == "max_duration"
