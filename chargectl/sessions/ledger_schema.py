"""The ledger's file: opening it (WAL, busy timeout), its versioned schema and migrations,
the write transaction, and the errors that say what is wrong with a file.

Two kinds of writers share it: the daemon's writer thread (sessions, taps, checkpoints) and
the staff command line (cards). WAL lets readers run beside the writer; `busy_timeout` makes
a second writer wait its turn instead of failing; every write is one short transaction.

Schema versions live in `PRAGMA user_version`. A fresh file is built by running every
migration from 0, so the path a real v1 database takes is the path the tests take.

Callers import these names through `chargectl.sessions.ledger`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from chargectl.sessions.errors import InvalidInput, LedgerError, SchemaError

BUSY_TIMEOUT_MS = 5000

# v1: cards, sessions (progress kept in counter_last / energy_wh), taps.
_V1 = (
    """CREATE TABLE cards (
        uid TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'blocked')),
        daily_kwh REAL CHECK (daily_kwh IS NULL OR daily_kwh > 0),
        expires TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )""",
    """CREATE TABLE sessions (
        id INTEGER PRIMARY KEY,
        card TEXT NOT NULL,
        bay TEXT NOT NULL,
        start_at REAL NOT NULL,
        end_at REAL,
        reason TEXT,
        counter_start INTEGER,
        counter_last INTEGER,
        energy_wh INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE taps (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        bay TEXT NOT NULL,
        uid TEXT NOT NULL,
        result TEXT NOT NULL,
        session INTEGER
    )""",
)

# v2: the state machine's progress of running sessions (so a restart resumes full-charge
# detection instead of starting it over), and the indexes billing and start-up query by.
_V2 = (
    """CREATE TABLE checkpoints (
        session INTEGER PRIMARY KEY REFERENCES sessions(id),
        at REAL NOT NULL,
        peak_w REAL NOT NULL DEFAULT 0,
        closed_s REAL NOT NULL DEFAULT 0,
        had_load INTEGER NOT NULL DEFAULT 0,
        low_s REAL NOT NULL DEFAULT 0,
        topup_s REAL
    )""",
    # v1 running sessions: what v1 knew is that energy flowed (so there was a load).
    """INSERT INTO checkpoints (session, at, had_load)
       SELECT id, start_at, energy_wh > 0 FROM sessions WHERE end_at IS NULL""",
    "CREATE INDEX sessions_start ON sessions (start_at)",
    "CREATE INDEX sessions_card_start ON sessions (card, start_at)",
    "CREATE INDEX sessions_open ON sessions (bay) WHERE end_at IS NULL",
    "CREATE INDEX taps_at ON taps (at)",
)

# v3: a running session's elapsed time on the monotonic clock (a restart resumes its timers
# from it, not from wall time), and whether its times were taken on a synchronized wall clock.
_V3 = (
    "ALTER TABLE checkpoints ADD COLUMN elapsed_s REAL",
    # What v2 knew: the wall time between the tap and the last checkpoint, both taken by one run.
    """UPDATE checkpoints SET elapsed_s = MAX(0, at - (SELECT start_at FROM sessions
       WHERE sessions.id = checkpoints.session))""",
    "ALTER TABLE sessions ADD COLUMN clock_ok INTEGER NOT NULL DEFAULT 1",
    # The first-30-minutes no-load rule: v2 only knew whether there was any load at all.
    "ALTER TABLE checkpoints ADD COLUMN had_first_load INTEGER NOT NULL DEFAULT 0",
    "UPDATE checkpoints SET had_first_load = had_load",
)

# v4: each session's power curve, one row per minute of the session (minute = whole minutes
# since the tap on the monotonic clock, as `checkpoints.elapsed_s`): mean and peak power (W)
# and the mean socket temperature (NULL where the bay reports none).
_V4 = (
    """CREATE TABLE curves (
        session INTEGER NOT NULL REFERENCES sessions(id),
        minute INTEGER NOT NULL CHECK (minute >= 0),
        mean_w REAL NOT NULL,
        peak_w REAL NOT NULL,
        temp_c REAL,
        PRIMARY KEY (session, minute)
    ) WITHOUT ROWID""",
)

# v5: a card marked by a critical fire-risk finding (issue 12), so that staff speak to its
# resident: the reason (what was seen, at which bay, in which session) and the wall time of the
# latest such finding, kept until staff clear it (`chargectl cards unflag`). A table of its own:
# registering, importing or blocking a card never touches its mark.
_V5 = (
    """CREATE TABLE card_flags (
        uid TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        at REAL NOT NULL,
        session INTEGER,
        bay TEXT
    ) WITHOUT ROWID""",
)

# v6: the version of a card's latest change from the central card list (MQTT cards/upsert and
# cards/block, chargectl.sessions.card_sync): a message with a version at or below it changes
# nothing, so an old message delivered late never undoes a newer one. NULL: the card was never
# changed from the central list (staff changes on the box leave it as it is).
_V6 = ("ALTER TABLE cards ADD COLUMN version INTEGER",)

# v7: the latches kept until staff clear them, so that a restarted daemon (a crash, a kill,
# systemd's restart) keeps them: the shed alarm (kind 'alarm', subject the pile that raised it
# or '', reason 'smoke' / 'estop') and each bay a critical fire-risk finding holds out (kind
# 'bay', subject the bay id, reason its fault name, as `ControlCore.held_why`). `at`: the wall
# time it latched. The daemon writes a row when a latch is set and deletes it when staff clear
# it; a v6 file had none to keep (they were held in memory only).
_V7 = (
    """CREATE TABLE latches (
        kind TEXT NOT NULL CHECK (kind IN ('alarm', 'bay')),
        subject TEXT NOT NULL,
        reason TEXT NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (kind, subject)
    ) WITHOUT ROWID""",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    _V1,
    _V2,
    _V3,
    _V4,
    _V5,
    _V6,
    _V7,
)  # MIGRATIONS[n] takes version n to n+1
SCHEMA_VERSION = len(MIGRATIONS)


class BadLedger(LedgerError, InvalidInput):
    """The ledger's content cannot be used: not a database, damaged, a newer schema, a row
    this build cannot read. Bad input (exit 2), unlike a ledger the disk cannot serve (exit 1:
    a missing folder, a read-only file, a full disk)."""


class NewerSchema(SchemaError, BadLedger):
    """The ledger was written by a newer build."""


# SQLite's primary result codes that say the file's content is bad, not the disk.
_CONTENT_CODES = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}


def ledger_error(p: Path, exc: sqlite3.Error) -> LedgerError:
    """One line naming the file and what is wrong, of the kind the command line exits by."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if code in _CONTENT_CODES:
        return BadLedger(f"ledger {p}: not a usable ledger database ({exc})")
    if code == sqlite3.SQLITE_CANTOPEN and not p.parent.is_dir():
        return LedgerError(f"cannot open ledger {p}: the folder {p.parent} does not exist")
    return LedgerError(f"ledger {p}: {exc}")


def connect(path: str | Path, *, create: bool = True) -> sqlite3.Connection:
    """Open the ledger (WAL, busy timeout), migrating it to the current schema.

    Raises `BadLedger` for content this build cannot use, `LedgerError` for a disk or a
    folder that cannot serve it."""
    p = Path(path)
    if not create and not p.exists():
        raise LedgerError(
            f"no ledger database at {p} (the daemon or `chargectl cards add` creates it)"
        )
    if p.is_dir():
        raise LedgerError(f"ledger {p} is a folder, not a database file")
    try:
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT), so DDL and
        # DML of one migration commit together.
        conn = sqlite3.connect(
            p, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise ledger_error(p, exc) from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise LedgerError(f"ledger {p}: cannot switch to WAL (journal_mode is {mode})")
        # FULL: a committed session survives a power cut, not only a process crash.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn, f"ledger {p}")
    except sqlite3.Error as exc:
        conn.close()
        raise ledger_error(p, exc) from exc
    except LedgerError:
        conn.close()
        raise
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, where: str = "ledger", target: int = SCHEMA_VERSION) -> int:
    """Bring the schema to `target`; each step is one transaction. Returns the old version."""
    old = schema_version(conn)
    if old > SCHEMA_VERSION:
        raise NewerSchema(
            f"{where} has schema version {old}; this build knows up to {SCHEMA_VERSION} "
            "(written by a newer chargectl)"
        )
    for version in range(old, target):
        with transaction(conn):
            # Another process may have migrated while this one waited for the lock.
            if schema_version(conn) != version:
                continue
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
    return old


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE: take the write lock up front (waiting up to busy_timeout)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
