"""A card marked by a critical fire-risk finding (schema v5): the migration from a v4 file, the
daemon's record through the writer thread, and the staff command line that shows and clears
the mark (`cards list`, `cards unflag`), bad input refused without a change."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from chargectl.sessions import ledger
from chargectl.sessions.cards import Card
from chargectl.sessions.errors import UnknownCard
from chargectl.sessions.records import CardFlag, CurveMinute, SessionStart
from chargectl.sessions.writer import LedgerWriter
from tests.sessions.rig import ALICE, BOB, WALL0
from tests.sessions.test_cli import cli, make_config

pytestmark = pytest.mark.timeout(60)

HEATER = "over_power (critical) at pile-a/1, session 2: 1,200 W at the socket"


def _v4_file(path: Path) -> None:
    raw = sqlite3.connect(path, isolation_level=None)
    assert ledger.migrate(raw, target=4) == 0
    raw.execute(
        "INSERT INTO cards VALUES (?, 'Flat 1A', 'active', 2.5, '2026-12-31', 1, 1)", (ALICE,)
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
    raw.close()


def test_migration_from_v4_keeps_everything_and_adds_no_mark(tmp_path: Path) -> None:
    path = tmp_path / "v4.db"
    _v4_file(path)
    with closing(ledger.connect(path)) as conn:
        assert ledger.schema_version(conn) >= 5
        assert ledger.card_flags(conn) == {}
        assert ledger.get_card(conn, ALICE).daily_kwh == 2.5
        (open_s,) = ledger.load_state(conn, WALL0 - 86400).open_sessions
        assert (open_s.id, open_s.counter_last, open_s.elapsed_s) == (2, 5120, 540.0)
        assert conn.execute("SELECT mean_w FROM curves WHERE session = 2").fetchone() == (250.0,)
        # The daemon's record: marked, and a later finding replaces the reason and the time.
        ledger.apply(conn, [CardFlag(ALICE, HEATER, WALL0, 2, "pile-a/1")])
        ledger.apply(conn, [CardFlag(ALICE, "socket_heat (critical)", WALL0 + 5, 2, "pile-a/1")])
        assert ledger.card_flags(conn) == {
            ALICE: CardFlag(ALICE, "socket_heat (critical)", WALL0 + 5, 2, "pile-a/1")
        }
        # Registering again (an import) leaves the mark alone.
        ledger.import_cards(conn, [Card(ALICE, "Flat 1A", "blocked")], WALL0 + 9)
        assert ALICE in ledger.card_flags(conn)
    # A new connection (a restart) finds it; opening again migrates nothing.
    with closing(ledger.connect(path)) as conn:
        assert ledger.migrate(conn) == ledger.SCHEMA_VERSION
        assert ledger.card_flags(conn)[ALICE].at == WALL0 + 5


def test_the_writer_thread_writes_the_mark_with_the_session(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with LedgerWriter(path) as w:
        w.record(SessionStart(1, BOB, "pile-a/2", WALL0, 1000))
        w.record(CurveMinute(1, 0, 900.0, 1200.0, None))
        w.record(CardFlag(BOB, HEATER, WALL0 + 30, 1, "pile-a/2"))
        assert w.flush()
    with closing(ledger.connect(path)) as conn:
        assert ledger.card_flags(conn) == {BOB: CardFlag(BOB, HEATER, WALL0 + 30, 1, "pile-a/2")}


def test_unflag(tmp_path: Path) -> None:
    with closing(ledger.connect(tmp_path / "l.db")) as conn:
        ledger.add_card(conn, Card(ALICE, "Flat 1A"), WALL0)
        ledger.apply(conn, [CardFlag(ALICE, HEATER, WALL0, 2, "pile-a/1")])
        ledger.apply(conn, [CardFlag(BOB, HEATER, WALL0, 3, "pile-a/2")])  # not registered
        assert ledger.unflag_card(conn, ALICE) is True
        assert ledger.unflag_card(conn, ALICE) is False
        assert ledger.unflag_card(conn, BOB) is True  # a mark outliving its card clears too
        with pytest.raises(UnknownCard, match=BOB):
            ledger.unflag_card(conn, BOB)
        assert ledger.card_flags(conn) == {}


def test_cards_list_shows_the_mark_and_unflag_clears_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "UTC")
    cfg = make_config(tmp_path)
    assert cli(capsys, "cards", "-c", cfg, "add", ALICE, "--name", "Flat 1A")[0] == 0
    assert cli(capsys, "cards", "-c", cfg, "add", BOB, "--name", "Flat 2B")[0] == 0
    with closing(ledger.connect(tmp_path / "shed.db")) as conn:
        ledger.apply(conn, [CardFlag(ALICE, HEATER, WALL0, 2, "pile-a/1")])
    code, out, _ = cli(capsys, "cards", "-c", cfg, "list")
    assert code == 0
    header, alice, bob = out.splitlines()
    assert header.split() == ["UID", "STATUS", "DAILY_KWH", "EXPIRES", "NAME", "FLAG"]
    assert alice.startswith(ALICE) and alice.endswith(HEATER)
    assert bob.rstrip().endswith("Flat 2B")
    code, out, _ = cli(capsys, "cards", "-c", cfg, "list", "--json")
    listed = {c["uid"]: c["flag"] for c in json.loads(out)}
    assert listed[BOB] is None
    assert listed[ALICE]["reason"] == HEATER
    assert (listed[ALICE]["session"], listed[ALICE]["bay"]) == (2, "pile-a/1")
    assert listed[ALICE]["at"].startswith("20")

    code, out, _ = cli(capsys, "cards", "-c", cfg, "unflag", "04:a1:b2:c3")
    assert (code, out.strip()) == (0, f"cleared the fire-risk mark of card {ALICE}")
    code, out, _ = cli(capsys, "cards", "-c", cfg, "unflag", ALICE)
    assert (code, out.strip()) == (0, f"card {ALICE} has no mark")
    code, out, _ = cli(capsys, "cards", "-c", cfg, "list", "--json")
    assert all(c["flag"] is None for c in json.loads(out))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["unflag", "nothex!!"], "not hex"),
        (["unflag", "04A1B2"], "6 hex digits"),
        (["unflag", "00000000"], "all zeros"),
        (["unflag", "04A1B2C4"], "card 04A1B2C4 is not registered"),
    ],
)
def test_unflag_refuses_bad_input_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    cfg = make_config(tmp_path)
    assert cli(capsys, "cards", "-c", cfg, "add", ALICE, "--name", "Flat 1A")[0] == 0
    with closing(ledger.connect(tmp_path / "shed.db")) as conn:
        ledger.apply(conn, [CardFlag(ALICE, HEATER, WALL0, 2, "pile-a/1")])
    code, _, err = cli(capsys, "cards", "-c", cfg, *argv)
    assert code == 2
    assert message in err and err.startswith("chargectl cards")
    with closing(ledger.connect(tmp_path / "shed.db")) as conn:
        assert list(ledger.card_flags(conn)) == [ALICE]


def test_unflag_on_a_missing_ledger_creates_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = make_config(tmp_path)
    code, _, err = cli(capsys, "cards", "-c", cfg, "unflag", ALICE)
    assert code == 1 and "no ledger database" in err
    assert not (tmp_path / "shed.db").exists()
