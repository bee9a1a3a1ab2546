"""The latches staff must clear, kept in the ledger (schema v7): the migration from a v6 file
keeps everything, the writer thread writes and deletes them, and `LatchKeeper` records the
core's changes and hands a restart's latches back to a new core."""

from __future__ import annotations

import logging
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from chargectl.control.allocation import make_allocator
from chargectl.control.core import ControlCore
from chargectl.control.layout import build_layout
from chargectl.runtime.latches import LatchKeeper
from chargectl.sessions import ledger
from chargectl.sessions.cards import Card
from chargectl.sessions.records import CardFlag, Latch, LatchClear
from chargectl.sessions.writer import LedgerWriter
from tests.control.sheds import two_row_shed
from tests.sessions.rig import ALICE, WALL0

pytestmark = pytest.mark.timeout(60)


def _v6_file(path: Path) -> None:
    raw = sqlite3.connect(path, isolation_level=None)
    assert ledger.migrate(raw, target=6) == 0
    raw.execute(
        "INSERT INTO cards VALUES (?, 'Flat 1A', 'blocked', 2.5, '2026-12-31', 1, 1, 7)", (ALICE,)
    )
    raw.execute(
        "INSERT INTO sessions (id, card, bay, start_at, counter_start, counter_last, energy_wh)"
        " VALUES (2, ?, 'pile-a/1', ?, 5000, 5120, 120)",
        (ALICE, WALL0 - 600),
    )
    raw.execute(
        "INSERT INTO checkpoints (session, at, elapsed_s) VALUES (2, ?, 540)", (WALL0 - 60,)
    )
    raw.execute("INSERT INTO curves VALUES (2, 0, 250.0, 260.0, 31.5)")
    raw.execute("INSERT INTO card_flags VALUES (?, 'heater', ?, 2, 'pile-a/1')", (ALICE, WALL0))
    raw.execute(
        "INSERT INTO taps (at, bay, uid, result, session) VALUES (1, 'pile-a/1', ?, 'started', 2)",
        (ALICE,),
    )
    raw.close()


def test_migration_from_v6_keeps_everything_and_starts_with_no_latch(tmp_path: Path) -> None:
    path = tmp_path / "v6.db"
    _v6_file(path)
    with closing(ledger.connect(path)) as conn:
        assert ledger.schema_version(conn) == ledger.SCHEMA_VERSION == 7
        assert ledger.load_latches(conn) == ()
        assert ledger.get_card(conn, ALICE) == Card(
            ALICE, "Flat 1A", "blocked", 2.5, ledger.get_card(conn, ALICE).expires
        )
        assert conn.execute("SELECT version FROM cards").fetchone() == (7,)
        (open_s,) = ledger.load_state(conn, WALL0 - 86400).open_sessions
        assert (open_s.id, open_s.counter_last, open_s.elapsed_s) == (2, 5120, 540.0)
        assert conn.execute("SELECT mean_w FROM curves WHERE session = 2").fetchone() == (250.0,)
        assert ledger.card_flags(conn) == {ALICE: CardFlag(ALICE, "heater", WALL0, 2, "pile-a/1")}
        assert len(ledger.list_taps(conn)) == 1
    with closing(ledger.connect(path)) as conn:  # opening again migrates nothing
        assert ledger.migrate(conn) == ledger.SCHEMA_VERSION


def test_a_bad_latch_row_is_refused_by_the_schema(tmp_path: Path) -> None:
    with closing(ledger.connect(tmp_path / "l.db")) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            ledger.apply(conn, [Latch("fire", "x", "smoke", WALL0)])
        assert ledger.load_latches(conn) == ()


def test_the_writer_writes_and_deletes_latches(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with LedgerWriter(path) as w:
        w.record(Latch("alarm", "pile-b1", "smoke", WALL0))
        w.record(Latch("alarm", "pile-b1", "smoke", WALL0 + 9))  # again: the first time stays
        w.record(Latch("bay", "pile-a/1", "over_temp", WALL0 + 1))
        w.record(Latch("bay", "pile-a/2", "over_power", WALL0 + 2))
        w.record(LatchClear("bay", "pile-a/1"))
        assert w.flush()
        assert w.load_latches() == (
            Latch("alarm", "pile-b1", "smoke", WALL0),
            Latch("bay", "pile-a/2", "over_power", WALL0 + 2),
        )
        w.record(Latch("alarm", "pile-a1", "estop", WALL0 + 20))  # one shed alarm
        assert w.flush()
        assert [(x.kind, x.subject) for x in w.load_latches()] == [
            ("alarm", "pile-a1"),
            ("bay", "pile-a/2"),
        ]
        w.record(LatchClear("alarm"))
        assert w.flush()
    with closing(ledger.connect(path)) as conn:
        assert ledger.load_latches(conn) == (Latch("bay", "pile-a/2", "over_power", WALL0 + 2),)


def _core() -> ControlCore:
    shed = two_row_shed()
    lay = build_layout(shed)
    return ControlCore(shed, lay, make_allocator(lay))


def test_the_keeper_records_the_cores_latches_and_a_new_core_gets_them_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "l.db"
    core = _core()
    lay = core.layout
    bay = lay.bays[3].id
    with LedgerWriter(path) as w:
        keeper = LatchKeeper(w, lay)
        keeper.sync(core, WALL0)
        core.alarm, core.alarm_at = "smoke", "pile-b1"  # as a step latches it
        core.hold_out(3, "over_temp")
        core.hold_out(5, "over_power")
        keeper.sync(core, WALL0 + 1)
        keeper.sync(core, WALL0 + 2)  # nothing changed: nothing written
        core.clear_fault(5)
        keeper.sync(core, WALL0 + 3)
        assert w.flush()
        assert w.health().written == 4  # alarm, two holds, one clear

        restarted = _core()  # the daemon killed and started again on the same ledger
        again = LatchKeeper(w, lay)
        # Logged at INFO whatever an earlier test in this process left behind (`chargectl
        # replay` run in-process sets the "chargectl" logger to ERROR).
        logger = logging.getLogger("chargectl")
        propagate, logger.propagate = logger.propagate, True
        try:
            with caplog.at_level(logging.INFO, logger="chargectl"):
                lines = again.restore(restarted)
        finally:
            logger.propagate = propagate
        assert restarted.alarm == "smoke" and restarted.alarm_at == "pile-b1"
        assert list(restarted.held_out.nonzero()[0]) == [3]
        assert restarted.held_why == {3: "over_temp"}
        assert lines[0].startswith("shed alarm smoke at pile-b1 still latched from ")
        assert lines[0].endswith(": staff must clear it")
        assert lines[1].startswith(f"bay {bay} held out (over_temp) still latched from ")
        assert set(lines) == {r.getMessage() for r in caplog.records if "latched" in r.getMessage()}
        again.sync(restarted, WALL0 + 60)  # the restored latches are not written again
        assert w.flush()
        assert w.health().written == 4

        restarted.clear_alarm()
        restarted.clear_fault(3)
        again.sync(restarted, WALL0 + 70)
        assert w.flush()
        assert w.load_latches() == ()


def test_a_latch_for_a_bay_the_shed_no_longer_has_is_reported_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with LedgerWriter(path) as w:
        w.record(Latch("bay", "pile-z/9", "over_temp", WALL0))
        assert w.flush()
        core = _core()
        lines = LatchKeeper(w, core.layout).restore(core)
        assert lines == [
            "ledger latch bay 'pile-z/9' (over_temp): no such bay in this shed; left in the "
            "ledger, not applied"
        ]
        assert not core.held_out.any() and core.alarm is None
        assert w.load_latches() == (Latch("bay", "pile-z/9", "over_temp", WALL0),)
