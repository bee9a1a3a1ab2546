"""A ledger that cannot be used at start-up (issue 9): one line naming the file, exit 2 for bad
content (not a database, a newer schema, a card row with a bad date), exit 1 for a disk that
cannot serve it (missing folder, read-only, full); `chargectl run` and the staff commands
alike, never a traceback."""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chargectl.cli import main
from chargectl.sessions import ledger

pytestmark = pytest.mark.timeout(120)

SHED = """\
shed: {name: test, phases: 1}
circuits:
  - {id: main, limit_a: 30, breaker: {rating_a: 32}}
buses:
  - {id: line-1, tcp: {host: 127.0.0.1, port: 5020}}
devices:
  - {id: pile-a, kind: pile, bus: line-1, unit: 1, circuit: main, phase: 1, ports: 4}
metrics: {port: 0}
api: {host: 127.0.0.1, port: 0}
ledger: LEDGER
"""

# Every command that opens the ledger, the daemon first.
COMMANDS = [
    ["run"],
    ["cards", "list"],
    ["cards", "add", "04A1B2C3", "--name", "Flat 1"],
    ["cards", "block", "04A1B2C3"],
    ["cards", "unflag", "04A1B2C3"],
    ["sessions", "list"],
    ["sessions", "export", "--from", "2026-01-01", "--to", "2026-01-31"],
    ["energy", "--month", "2026-01"],
]


@pytest.fixture
def shed(tmp_path: Path) -> Callable[[str], tuple[str, Path]]:
    def write(ledger_path: str = "shed.db") -> tuple[str, Path]:
        cfg = tmp_path / "shed.yaml"
        cfg.write_text(SHED.replace("LEDGER", ledger_path))
        return str(cfg), tmp_path / ledger_path

    return write


def run_cli(capsys: pytest.CaptureFixture[str], argv: list[str], cfg: str) -> tuple[int, str]:
    code = main([*argv, "-c", cfg]) if argv[0] != "run" else main(["run", cfg])
    _, err = capsys.readouterr()
    return code, err


def one_line(err: str, command: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"chargectl {command}: "), err
    for fragment in fragments:
        assert fragment in lines[0], err


def fresh_ledger(path: Path) -> None:
    conn = ledger.connect(path)
    conn.close()


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_not_a_database(
    shed: Callable[..., tuple[str, Path]], capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    cfg, db = shed()
    db.write_bytes(os.urandom(8192))
    code, err = run_cli(capsys, argv, cfg)
    assert code == 2
    one_line(err, argv[0], str(db), "not a usable ledger database")


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_a_newer_schema(
    shed: Callable[..., tuple[str, Path]], capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    cfg, db = shed()
    fresh_ledger(db)
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {ledger.SCHEMA_VERSION + 5}")
    code, err = run_cli(capsys, argv, cfg)
    assert code == 2
    one_line(err, argv[0], str(db), f"schema version {ledger.SCHEMA_VERSION + 5}")


@pytest.mark.parametrize(
    "row",
    [
        ("expires", "2026-13-01", "not a real date"),
        ("expires", "soon", "is not YYYY-MM-DD"),
        ("status", "lost", "status 'lost'"),
    ],
)
@pytest.mark.parametrize("argv", [["run"], ["cards", "list"]], ids=" ".join)
def test_a_card_row_this_build_cannot_read(
    shed: Callable[..., tuple[str, Path]],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    row: tuple[str, str, str],
) -> None:
    column, value, what = row
    cfg, db = shed()
    assert main(["cards", "add", "04A1B2C3", "--name", "Flat 1", "-c", cfg]) == 0
    capsys.readouterr()
    with sqlite3.connect(db) as conn:
        # The schema's CHECK on status is what a damaged or hand-edited file no longer has.
        conn.execute("PRAGMA ignore_check_constraints = ON")
        conn.execute(f"UPDATE cards SET {column} = ?", (value,))
    code, err = run_cli(capsys, argv, cfg)
    assert code == 2
    one_line(err, argv[0], str(db), "card 04A1B2C3", what)


@pytest.mark.parametrize(
    "argv", [["run"], ["cards", "add", "04A1B2C3", "--name", "x"]], ids=" ".join
)
def test_a_missing_folder(
    shed: Callable[..., tuple[str, Path]], capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    cfg, db = shed("gone/shed.db")
    code, err = run_cli(capsys, argv, cfg)
    assert code == 1
    one_line(err, argv[0], str(db), f"the folder {db.parent} does not exist")


@pytest.fixture
def read_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every ledger opened read-only, as on a read-only mount (root ignores file modes)."""
    real = sqlite3.connect

    def connect(path: object, *args: object, **kwargs: object) -> sqlite3.Connection:
        kwargs["uri"] = True
        return real(f"file:{path}?mode=ro", *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite3, "connect", connect)
    yield


@pytest.mark.parametrize(
    "argv", [["run"], ["cards", "add", "04A1B2C3", "--name", "x"]], ids=" ".join
)
def test_a_read_only_ledger(
    shed: Callable[..., tuple[str, Path]],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    request: pytest.FixtureRequest,
) -> None:
    cfg, db = shed()
    fresh_ledger(db)
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode = DELETE")  # a WAL file would need its -shm written
    request.getfixturevalue("read_only")
    code, err = run_cli(capsys, argv, cfg)
    assert code == 1
    one_line(err, argv[0], str(db), "readonly")


def _small_disk() -> None:
    # A file may not grow past 8 KiB: writes beyond fail as on a full disk.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))


@pytest.mark.parametrize(
    "argv", [["run"], ["cards", "add", "04A1B2C3", "--name", "x"]], ids=" ".join
)
def test_a_full_disk(shed: Callable[..., tuple[str, Path]], argv: list[str]) -> None:
    cfg, db = shed()
    full = [*argv, "-c", cfg] if argv[0] != "run" else ["run", cfg]
    proc = subprocess.run(
        [sys.executable, "-m", "chargectl.cli", *full],
        capture_output=True,
        text=True,
        preexec_fn=_small_disk,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    one_line(proc.stderr, argv[0], str(db))
