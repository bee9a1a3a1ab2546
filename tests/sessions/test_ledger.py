"""The SQLite ledger: WAL, schema migrations, records round trip, the writer thread."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import date
from pathlib import Path

import pytest

from chargectl.sessions import ledger
from chargectl.sessions.cards import Card
from chargectl.sessions.errors import InvalidInput, LedgerError, SchemaError, UnknownCard
from chargectl.sessions.records import (
    Checkpoint,
    SessionEnd,
    SessionSettle,
    SessionStart,
    TapRecord,
)
from chargectl.sessions.writer import LedgerWriter
from tests.sessions.rig import ALICE, BOB, WALL0

pytestmark = pytest.mark.timeout(60)


def test_fresh_ledger_is_wal_at_the_current_version(tmp_path: Path) -> None:
    conn = ledger.connect(tmp_path / "l.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert ledger.schema_version(conn) == ledger.SCHEMA_VERSION == len(ledger.MIGRATIONS)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"cards", "sessions", "taps", "checkpoints"} <= tables
    conn.close()


def test_missing_ledger_is_an_error_when_not_creating(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="no ledger database"):
        ledger.connect(tmp_path / "none.db", create=False)
    assert not (tmp_path / "none.db").exists()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    raw = sqlite3.connect(tmp_path / "l.db")
    raw.execute("PRAGMA user_version = 9")
    raw.commit()
    raw.close()
    with pytest.raises(SchemaError, match="version 9"):
        ledger.connect(tmp_path / "l.db")


def test_migration_from_v1_with_data(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    raw = sqlite3.connect(path, isolation_level=None)
    assert ledger.migrate(raw, target=1) == 0
    assert ledger.schema_version(raw) == 1
    raw.execute(
        "INSERT INTO cards VALUES (?, 'Flat 1A', 'active', 2.5, '2026-12-31', 1, 1)", (ALICE,)
    )
    raw.execute("INSERT INTO cards VALUES (?, 'Flat 2B', 'blocked', NULL, NULL, 1, 1)", (BOB,))
    raw.execute(
        "INSERT INTO sessions VALUES (1, ?, 'p/1', ?, ?, 'full', 100, 400, 300)",
        (ALICE, WALL0 - 7200, WALL0 - 3600),
    )
    raw.execute(
        "INSERT INTO sessions VALUES (2, ?, 'p/2', ?, NULL, NULL, 5000, 5120, 120)",
        (ALICE, WALL0 - 600),
    )
    raw.execute("INSERT INTO taps VALUES (1, ?, 'p/2', ?, 'started', 2)", (WALL0 - 600, ALICE))
    raw.close()

    conn = ledger.connect(path)
    assert ledger.schema_version(conn) == ledger.SCHEMA_VERSION
    cards = ledger.load_cards(conn)
    assert cards[ALICE] == Card(ALICE, "Flat 1A", "active", 2.5, date(2026, 12, 31))
    assert cards[BOB].status == "blocked"
    state = ledger.load_state(conn, WALL0 - 86400)
    (open_s,) = state.open_sessions
    assert (open_s.id, open_s.bay, open_s.counter_start, open_s.counter_last) == (
        2,
        "p/2",
        5000,
        5120,
    )
    assert open_s.had_load and open_s.topup_s is None  # v1 saw energy flow
    assert state.next_session_id == 3
    assert state.used_wh == {ALICE: 300}
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"sessions_start", "sessions_card_start", "sessions_open", "taps_at"} <= indexes
    assert [t.result for t in ledger.list_taps(conn)] == ["started"]
    conn.close()
    # Opening again is a no-op.
    conn = ledger.connect(path)
    assert ledger.migrate(conn) == ledger.SCHEMA_VERSION
    conn.close()


def test_cards_add_block_import(tmp_path: Path) -> None:
    conn = ledger.connect(tmp_path / "l.db")
    ledger.add_card(conn, Card(ALICE, "Flat 1A"), WALL0)
    with pytest.raises(InvalidInput, match="already registered"):
        ledger.add_card(conn, Card(ALICE, "Someone else"), WALL0)
    assert ledger.set_status(conn, ALICE, "blocked", WALL0) is True
    assert ledger.set_status(conn, ALICE, "blocked", WALL0) is False
    with pytest.raises(UnknownCard, match=BOB):
        ledger.set_status(conn, BOB, "blocked", WALL0)
    added, updated = ledger.import_cards(
        conn, [Card(ALICE, "Flat 1A", "active", 3.0), Card(BOB, "Flat 2B")], WALL0
    )
    assert (added, updated) == (1, 1)
    assert [c.uid for c in ledger.list_cards(conn)] == sorted([ALICE, BOB])
    assert ledger.get_card(conn, ALICE).daily_kwh == 3.0
    conn.close()


def write_session(w: LedgerWriter) -> None:
    w.record(SessionStart(1, ALICE, "p/1", WALL0, 1000))
    w.record(TapRecord(WALL0, "p/1", ALICE, "started", 1))
    w.record(Checkpoint(1, WALL0 + 60, 1000, 1050, 50, 300.0, 59.0, True, 0.0, None))
    w.record(SessionEnd(1, WALL0 + 90, "user_stop", 1070, 70))
    w.record(SessionSettle(1, 1072, 72))
    w.record(SessionStart(2, BOB, "p/2", WALL0 + 100, None))
    w.record(Checkpoint(2, WALL0 + 160, 2000, 2030, 30, 100.0, 60.0, True, 10.0, 5.0))


def test_writer_round_trip(tmp_path: Path) -> None:
    with LedgerWriter(tmp_path / "l.db") as w:
        write_session(w)
        assert w.flush()
        assert w.health().written == 7 and w.health().last_error is None
        state = w.load_state(WALL0 - 10)
    (open_s,) = state.open_sessions
    assert (open_s.id, open_s.counter_start, open_s.counter_last) == (2, 2000, 2030)
    assert (open_s.peak_w, open_s.closed_s, open_s.low_s, open_s.topup_s) == (
        100.0,
        60.0,
        10.0,
        5.0,
    )
    assert state.used_wh == {ALICE: 72} and state.next_session_id == 3
    conn = ledger.connect(tmp_path / "l.db")
    rows = ledger.list_sessions(conn)
    assert [(r.id, r.reason, r.energy_wh, r.end) for r in rows] == [
        (1, "user_stop", 72, WALL0 + 90),
        (2, None, 30, None),
    ]
    assert [r.id for r in ledger.list_sessions(conn, active_only=True)] == [2]
    # An ended session has no checkpoint left.
    assert conn.execute("SELECT session FROM checkpoints").fetchall() == [(2,)]
    conn.close()


def test_a_refused_record_is_dropped_alone(tmp_path: Path) -> None:
    with LedgerWriter(tmp_path / "l.db") as w:
        w.record(SessionStart(1, ALICE, "p/1", WALL0, 1000))
        w.flush()
        w.record(SessionStart(1, BOB, "p/2", WALL0, 5))  # the same id: a bug upstream
        w.record(TapRecord(WALL0, "p/2", BOB, "started", 1))
        w.flush()
        h = w.health()
        assert (h.written, h.dropped) == (2, 1)
    conn = ledger.connect(tmp_path / "l.db")
    assert len(ledger.list_taps(conn)) == 1
    conn.close()


def test_a_failed_write_is_retried_with_the_same_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = ledger.apply
    fails = [2]

    def flaky(conn: sqlite3.Connection, records: list) -> None:  # type: ignore[type-arg]
        if fails[0]:
            fails[0] -= 1
            raise sqlite3.OperationalError("disk I/O error")
        real(conn, records)

    monkeypatch.setattr(ledger, "apply", flaky)
    with LedgerWriter(tmp_path / "l.db", retry_s=0.01) as w:
        write_session(w)
        assert w.flush(10)
        h = w.health()
        assert h.failures == 2 and h.written == 7 and h.last_error is None
    conn = ledger.connect(tmp_path / "l.db")
    assert len(ledger.list_sessions(conn)) == 2
    conn.close()


def test_staff_writes_while_the_writer_runs_and_the_book_follows(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    stop = threading.Event()
    with LedgerWriter(path, reload_s=0.05) as w:

        def tick() -> None:  # the daemon: a tap record every millisecond
            n = 0
            while not stop.is_set():
                w.record(TapRecord(WALL0 + n, "p/1", "DEADBEEF", "unknown", None))
                n += 1
                time.sleep(0.001)

        t = threading.Thread(target=tick)
        t.start()
        try:
            staff = ledger.connect(path)
            uids = [f"04{i:06X}" for i in range(1, 31)]
            for uid in uids:
                ledger.add_card(staff, Card(uid, f"Flat {uid}"), WALL0)
            # A staff transaction holding the write lock for a while only delays the writer.
            with ledger.transaction(staff):
                staff.execute("UPDATE cards SET name = 'Flat X' WHERE uid = ?", (uids[0],))
                time.sleep(0.3)
            staff.close()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and (
                len(w.cards()) < 30 or w.cards()[uids[0]].name != "Flat X"
            ):
                time.sleep(0.02)
            assert set(w.cards()) == set(uids)
            assert w.cards()[uids[0]].name == "Flat X"
        finally:
            stop.set()
            t.join()
        assert w.flush(10)
        h = w.health()
        assert h.failures == 0 and h.backlog == 0 and h.card_reloads >= 1
        written = h.written
    conn = ledger.connect(path)
    assert len(ledger.list_taps(conn)) == written > 50
    conn.close()


def test_record_never_blocks_on_a_locked_database(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with LedgerWriter(path) as w:
        staff = ledger.connect(path)
        staff.execute("BEGIN IMMEDIATE")
        t0 = time.perf_counter()
        for i in range(1000):
            w.record(TapRecord(WALL0 + i, "p/1", ALICE, "started", None))
        elapsed = time.perf_counter() - t0
        staff.execute("COMMIT")
        staff.close()
        assert w.flush(10)
        assert w.health().written == 1000
    # Generous: enqueueing 1000 records must not wait for the 5 s lock timeout.
    assert elapsed < 1.0


def test_energy_queries(tmp_path: Path) -> None:
    with LedgerWriter(tmp_path / "l.db") as w:
        write_session(w)
        w.record(SessionStart(3, ALICE, "p/2", WALL0 + 86400, 0))
        w.record(SessionEnd(3, WALL0 + 86400 + 60, "full", 1000, 1000))
        w.flush()
    conn = ledger.connect(tmp_path / "l.db")
    ledger.add_card(conn, Card(ALICE, "Flat 1A"), WALL0)
    day = [r.id for r in ledger.sessions_between(conn, WALL0 - 1, WALL0 + 3600)]
    assert day == [1, 2]
    per_card = ledger.energy_by_card(conn, WALL0 - 1, WALL0 + 2 * 86400)
    assert [(e.card, e.name, e.sessions, e.energy_wh) for e in per_card] == [
        (ALICE, "Flat 1A", 2, 1072),
        (BOB, None, 1, 30),
    ]
    conn.close()
