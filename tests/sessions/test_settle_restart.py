"""A restart inside a session's settle time: the ended session takes the counter read at
start-up (found by the end-to-end SIGKILL tests: the reading that completes a session comes a
slow poll after its end, and a daemon killed before it lost that energy)."""

from __future__ import annotations

from contextlib import closing
from dataclasses import replace
from datetime import UTC
from pathlib import Path

from chargectl.config.schema import SessionSettings
from chargectl.sessions import ledger
from chargectl.sessions.cards import Card
from chargectl.sessions.machine import BayObservation
from chargectl.sessions.manager import SessionManager
from chargectl.sessions.records import (
    Checkpoint,
    EndedRecord,
    LedgerState,
    OpenSession,
    SessionEnd,
    SessionSettle,
    SessionStart,
)
from chargectl.sessions.writer import LedgerWriter
from tests.sessions.rig import ALICE, BOB, WALL0, FakeLedger

BAYS = ("p/1", "p/2")


def ended(bay: str = "p/1", *, end: float = WALL0 - 5, sid: int = 7, **kw: object) -> EndedRecord:
    rec = EndedRecord(sid, ALICE, bay, end - 600, end, "user_stop", 900, 1000, 100)
    return replace(rec, **kw)  # type: ignore[arg-type]


def manager(state: LedgerState) -> tuple[SessionManager, FakeLedger]:
    fake = FakeLedger([Card(ALICE, "Flat 1A"), Card(BOB, "Flat 2B")], state)
    return SessionManager(SessionSettings(), fake, BAYS, tz=UTC), fake


def tick(mgr: SessionManager, t: float, counters: dict[str, int]) -> None:
    obs = {b: BayObservation(False, 0.0, c, None, False) for b, c in counters.items()}
    mgr.update(100.0 + t, WALL0 + t, obs)


def test_the_reading_at_start_up_settles_a_session_that_just_ended() -> None:
    mgr, fake = manager(LedgerState((), 8, {ALICE: 100}, (ended(),)))
    mgr.restore({"p/1": 1004, "p/2": 50}, WALL0, 100.0)
    tick(mgr, 1, {"p/1": 1004, "p/2": 50})
    assert fake.of(SessionSettle) == []  # it keeps settling for settle_s
    tick(mgr, 31, {"p/1": 1004, "p/2": 50})
    assert fake.of(SessionSettle) == [SessionSettle(7, 1004, 104)]
    (done,) = mgr.drain_events().settled
    assert (done.id, done.reason, done.energy_wh) == (7, "user_stop", 104)
    assert mgr.readout().ended_total == {}  # it ended in the life before: not counted again


def test_a_reading_after_the_restart_within_the_settle_time_still_counts() -> None:
    """The relay was still closed when the daemon died: it opens on the first tick, and the
    next slow poll's reading completes the session."""
    mgr, fake = manager(LedgerState((), 8, {}, (ended(),)))
    mgr.restore({"p/1": 1002, "p/2": 50}, WALL0, 100.0)
    tick(mgr, 10, {"p/1": 1003, "p/2": 50})
    tick(mgr, 31, {"p/1": 1003, "p/2": 50})
    assert fake.of(SessionSettle) == [SessionSettle(7, 1003, 103)]


def test_unknown_bays_and_reasons_are_settled_as_they_are() -> None:
    gone = ended("p/9", sid=5)
    odd = ended("p/2", sid=8, reason="meteorite")
    older = ended("p/1", sid=6, end=WALL0 - 900)  # two on one bay: only the newest reopens
    mgr, fake = manager(LedgerState((), 9, {}, (gone, older, ended(), odd)))
    mgr.restore({"p/1": 1500, "p/2": 1500}, WALL0, 100.0)
    assert fake.of(SessionSettle) == [
        SessionSettle(5, 1000, 100),
        SessionSettle(6, 1000, 100),
        SessionSettle(8, 1000, 100),
    ]
    tick(mgr, 40, {"p/1": 1500, "p/2": 1500})
    assert fake.of(SessionSettle)[3:] == [SessionSettle(7, 1500, 600)]


def test_a_session_that_ended_long_ago_settles_all_the_same() -> None:
    """The daemon was down for an hour: the relay opened when the session ended, so the
    counter has not moved since, unless the relay stayed closed (killed between the end and
    the write that opens it): then the bay's own charger drew it, on the fail-safe mask."""
    mgr, fake = manager(LedgerState((), 9, {}, (ended(end=WALL0 - 3600),)))
    mgr.restore({"p/1": 1000, "p/2": 0}, WALL0, 100.0)
    tick(mgr, 31, {"p/1": 1000, "p/2": 0})
    assert fake.of(SessionSettle) == [SessionSettle(7, 1000, 100)]


def test_a_held_newer_session_at_the_bay_starts_from_the_restart_reading() -> None:
    """The previous session settles at once with the start-up reading; the open one (held when
    the daemon died, so its start counter was never known) starts from the same reading."""
    held = OpenSession(9, BOB, "p/1", WALL0 - 3, None, None)
    mgr, fake = manager(LedgerState((held,), 10, {}, (ended(),)))
    mgr.restore({"p/1": 1003, "p/2": 50}, WALL0, 100.0)
    assert fake.of(SessionSettle) == [SessionSettle(7, 1003, 103)]
    s = mgr.session_at("p/1")
    assert s is not None and (s.id, s.counter_start, s.counter_last) == (9, 1003, 1003)
    assert mgr.demand()["p/1"].wants_current


def test_a_newer_session_that_counts_already_keeps_its_energy() -> None:
    newer = OpenSession(9, BOB, "p/1", WALL0 - 3, 1001, 1002)
    mgr, fake = manager(LedgerState((newer,), 10, {}, (ended(counter_last=1001, energy_wh=101),)))
    mgr.restore({"p/1": 1010, "p/2": 50}, WALL0, 100.0)
    assert fake.of(SessionSettle) == [SessionSettle(7, 1001, 101)]
    s = mgr.session_at("p/1")
    assert s is not None and (s.counter_start, s.counter_last) == (1001, 1010)


def test_the_ledger_holds_a_session_as_settling_until_its_settle_record(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with closing(ledger.connect(path)) as conn:
        ledger.import_cards(conn, [Card(ALICE, "A"), Card(BOB, "B")], WALL0)
        ledger.apply(
            conn,
            [
                SessionStart(1, ALICE, "p/1", WALL0 - 50, 10),
                SessionEnd(1, WALL0 - 40, "user_stop", 20, 10),
                SessionSettle(1, 22, 12),
                SessionStart(2, BOB, "p/1", WALL0 - 30, 22),
                SessionEnd(2, WALL0 - 20, "unplugged", 25, 3),
                SessionStart(3, BOB, "p/2", WALL0 - 30, None),
                SessionEnd(3, WALL0 - 2, "staff_stop", 77, 7, 70),
                SessionStart(4, ALICE, "p/2", WALL0 - 1, 77),  # running: not settling
            ],
        )
        state = ledger.load_state(conn, WALL0)
        row = conn.execute("SELECT counter_start FROM sessions WHERE id = 3").fetchone()
        ledger.apply(conn, [SessionSettle(3, None, 7)])
        after = ledger.load_state(conn, WALL0)
        three = conn.execute("SELECT counter_last, energy_wh FROM sessions WHERE id = 3").fetchone()
    assert [(e.id, e.bay, e.reason, e.counter_last, e.energy_wh) for e in state.settling] == [
        (2, "p/1", "unplugged", 25, 3),
        (3, "p/2", "staff_stop", 77, 7),
    ]
    assert row == (70,)  # an end fills in a start counter that was unknown at the tap
    assert [s.id for s in state.open_sessions] == [4]
    assert [e.id for e in after.settling] == [2]
    assert three == (77, 7)  # a settle without a reading keeps the last one


def test_killed_between_the_end_and_its_settle_with_the_real_ledger(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with closing(ledger.connect(path)) as conn:
        ledger.import_cards(conn, [Card(ALICE, "A")], WALL0)
    first = LedgerWriter(path).start()
    mgr = SessionManager(SessionSettings(), first, BAYS, tz=UTC)
    mgr.restore({"p/1": 1000, "p/2": 0}, WALL0, 0.0)
    mgr.on_tap("p/1", ALICE, 1.0, WALL0 + 1)
    for t in range(2, 60):  # 1 Wh a second, read every 10 s (the slow poll)
        c = 1000 + (t - 1) // 10 * 10
        mgr.update(float(t), WALL0 + t, {"p/1": BayObservation(True, 3600.0, c, None, False)})
    mgr.on_tap("p/1", ALICE, 60.0, WALL0 + 60)  # the counter last read shows 1050
    first.flush()
    first.close()  # killed: the reading of 1059 never came

    second = LedgerWriter(path).start()
    mgr = SessionManager(SessionSettings(), second, BAYS, tz=UTC)
    mgr.restore({"p/1": 1059, "p/2": 0}, WALL0 + 70, 70.0)
    mgr.update(101.0, WALL0 + 101, {"p/1": BayObservation(False, 0.0, 1059, None, False)})
    second.flush()
    second.close()
    with closing(ledger.connect(path)) as conn:
        (row,) = ledger.list_sessions(conn)
    assert (row.reason, row.energy_wh) == ("user_stop", 59)


def test_a_start_counter_that_becomes_known_is_checkpointed_at_once() -> None:
    """Else a restart before the next checkpoint would start the session over from the
    counter it finds then, losing what flowed since (also through a fail-safe relay)."""
    mgr, fake = manager(LedgerState((), 1, {}))
    mgr.restore({"p/1": None, "p/2": 0}, WALL0, 100.0)
    mgr.on_tap("p/1", ALICE, 100.5, WALL0 + 0.5)
    assert fake.of(SessionStart)[0].counter_start is None
    tick(mgr, 1, {"p/2": 0})
    assert fake.of(Checkpoint) == []
    tick(mgr, 2, {"p/1": 500, "p/2": 0})
    (cp,) = fake.of(Checkpoint)
    assert (cp.id, cp.counter_start, cp.counter_last) == (1, 500, 500)
    tick(mgr, 3, {"p/1": 501, "p/2": 0})
    assert len(fake.of(Checkpoint)) == 1  # then every checkpoint_s as usual
