"""The ledger: one SQLite file (standard library, WAL), its versioned schema and its queries.

Two kinds of writers share it: the daemon's writer thread (sessions, taps, checkpoints) and
the staff command line (cards). WAL lets readers run beside the writer; `busy_timeout` makes
a second writer wait its turn instead of failing; every write is one short transaction.

Schema versions live in `PRAGMA user_version`. A fresh file is built by running every
migration from 0, so the path a real v1 database takes is the path the tests take.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from chargectl.sessions.cards import Card, CardBook, parse_day, parse_status
from chargectl.sessions.errors import InvalidInput, LedgerError, SchemaError, UnknownCard
from chargectl.sessions.records import (
    Checkpoint,
    EndedRecord,
    LedgerRecord,
    LedgerState,
    OpenSession,
    SessionEnd,
    SessionSettle,
    SessionStart,
    SessionTimes,
    TapRecord,
)

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

MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2, _V3)  # MIGRATIONS[n] takes version n to n+1
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


# ----- cards -----
def _card(row: Sequence[object]) -> Card:
    uid, name, status, kwh, expires = row
    return Card(
        uid=str(uid),
        name=str(name),
        status=parse_status(str(status)),
        daily_kwh=None if kwh is None else float(kwh),  # type: ignore[arg-type]
        expires=None if expires is None else parse_day(str(expires)),
    )


_CARD_COLS = "uid, name, status, daily_kwh, expires"
_INSERT_CARD = (
    f"INSERT INTO cards ({_CARD_COLS}, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def load_cards(conn: sqlite3.Connection) -> CardBook:
    return {c.uid: c for c in list_cards(conn)}


def list_cards(conn: sqlite3.Connection) -> list[Card]:
    """Every card; `BadLedger` names the file and the first row this build cannot read."""
    rows = conn.execute(f"SELECT {_CARD_COLS} FROM cards ORDER BY uid").fetchall()
    cards = []
    for r in rows:
        try:
            cards.append(_card(r))
        except (ValueError, TypeError) as exc:  # InvalidInput is a ValueError
            where = conn.execute("PRAGMA database_list").fetchone()[2] or "in memory"
            raise BadLedger(f"ledger {where}: card {r[0]!s}: {exc}") from None
    return cards


def get_card(conn: sqlite3.Connection, uid: str) -> Card:
    row = conn.execute(f"SELECT {_CARD_COLS} FROM cards WHERE uid = ?", (uid,)).fetchone()
    if row is None:
        raise UnknownCard(f"card {uid} is not registered")
    return _card(row)


def _card_params(card: Card, wall: float) -> tuple[object, ...]:
    expires = None if card.expires is None else card.expires.isoformat()
    return (card.uid, card.name, card.status, card.daily_kwh, expires, wall, wall)


def add_card(conn: sqlite3.Connection, card: Card, wall: float) -> None:
    with transaction(conn):
        row = conn.execute("SELECT name FROM cards WHERE uid = ?", (card.uid,)).fetchone()
        if row is not None:
            raise InvalidInput(f"card {card.uid} is already registered (to {row[0]})")
        conn.execute(
            _INSERT_CARD,
            _card_params(card, wall),
        )


def import_cards(conn: sqlite3.Connection, cards: Iterable[Card], wall: float) -> tuple[int, int]:
    """Add or replace every card in one transaction. Returns (added, updated)."""
    added = updated = 0
    with transaction(conn):
        for card in cards:
            exists = conn.execute("SELECT 1 FROM cards WHERE uid = ?", (card.uid,)).fetchone()
            if exists:
                updated += 1
                conn.execute(
                    "UPDATE cards SET name = ?, status = ?, daily_kwh = ?, expires = ?,"
                    " updated_at = ? WHERE uid = ?",
                    (
                        card.name,
                        card.status,
                        card.daily_kwh,
                        None if card.expires is None else card.expires.isoformat(),
                        wall,
                        card.uid,
                    ),
                )
            else:
                added += 1
                conn.execute(
                    _INSERT_CARD,
                    _card_params(card, wall),
                )
    return added, updated


def set_status(conn: sqlite3.Connection, uid: str, status: str, wall: float) -> bool:
    """Set a card's status; False when it already had it. Raises UnknownCard."""
    with transaction(conn):
        row = conn.execute("SELECT status FROM cards WHERE uid = ?", (uid,)).fetchone()
        if row is None:
            raise UnknownCard(f"card {uid} is not registered")
        if row[0] == status:
            return False
        conn.execute(
            "UPDATE cards SET status = ?, updated_at = ? WHERE uid = ?", (status, wall, uid)
        )
        return True


# ----- sessions for people -----
@dataclass(frozen=True, slots=True)
class SessionRow:
    id: int
    card: str
    name: str | None  # None: the card is no longer registered
    bay: str
    start: float
    end: float | None
    reason: str | None
    energy_wh: int  # final once ended; as of the last checkpoint while running
    clock_ok: bool = True  # False: start/end were taken on an unsynchronized wall clock

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "card": self.card,
            "name": self.name,
            "bay": self.bay,
            "start": self.start,
            "end": self.end,
            "reason": self.reason,
            "energy_wh": self.energy_wh,
            "clock_ok": self.clock_ok,
        }


_SESSION_SELECT = (
    "SELECT s.id, s.card, c.name, s.bay, s.start_at, s.end_at, s.reason, s.energy_wh,"
    " s.clock_ok FROM sessions s LEFT JOIN cards c ON c.uid = s.card"
)


def _session(row: Sequence[object]) -> SessionRow:
    sid, card, name, bay, start, end, reason, energy, clock_ok = row
    return SessionRow(
        id=int(sid),  # type: ignore[call-overload]
        card=str(card),
        name=None if name is None else str(name),
        bay=str(bay),
        start=float(start),  # type: ignore[arg-type]
        end=None if end is None else float(end),  # type: ignore[arg-type]
        reason=None if reason is None else str(reason),
        energy_wh=int(energy),  # type: ignore[call-overload]
        clock_ok=bool(clock_ok),
    )


def list_sessions(conn: sqlite3.Connection, *, active_only: bool = False) -> list[SessionRow]:
    where = " WHERE s.end_at IS NULL" if active_only else ""
    rows = conn.execute(_SESSION_SELECT + where + " ORDER BY s.id").fetchall()
    return [_session(r) for r in rows]


def sessions_between(conn: sqlite3.Connection, start: float, end: float) -> list[SessionRow]:
    """Sessions that started in [start, end) (wall times)."""
    rows = conn.execute(
        _SESSION_SELECT + " WHERE s.start_at >= ? AND s.start_at < ? ORDER BY s.start_at, s.id",
        (start, end),
    ).fetchall()
    return [_session(r) for r in rows]


@dataclass(frozen=True, slots=True)
class CardEnergy:
    card: str
    name: str | None
    sessions: int
    energy_wh: int


def energy_by_card(conn: sqlite3.Connection, start: float, end: float) -> list[CardEnergy]:
    """Energy per card of the sessions that started in [start, end)."""
    rows = conn.execute(
        "SELECT s.card, c.name, COUNT(*), SUM(s.energy_wh) FROM sessions s"
        " LEFT JOIN cards c ON c.uid = s.card"
        " WHERE s.start_at >= ? AND s.start_at < ? GROUP BY s.card ORDER BY s.card",
        (start, end),
    ).fetchall()
    return [
        CardEnergy(str(u), None if n is None else str(n), int(k), int(e)) for u, n, k, e in rows
    ]


def unsynced_sessions(conn: sqlite3.Connection) -> int:
    """Sessions whose times were taken on a wall clock that was never synchronized."""
    return int(conn.execute("SELECT COUNT(*) FROM sessions WHERE clock_ok = 0").fetchone()[0])


def list_taps(conn: sqlite3.Connection) -> list[TapRecord]:
    rows = conn.execute("SELECT at, bay, uid, result, session FROM taps ORDER BY id").fetchall()
    return [TapRecord(float(a), str(b), str(u), str(r), s) for a, b, u, r, s in rows]


# ----- the daemon's side -----
def load_state(conn: sqlite3.Connection, since: float) -> LedgerState:
    rows = conn.execute(
        "SELECT s.id, s.card, s.bay, s.start_at, s.counter_start, s.counter_last,"
        " k.peak_w, k.closed_s, k.had_load, k.low_s, k.topup_s, k.elapsed_s, k.at, s.clock_ok,"
        " k.had_first_load"
        " FROM sessions s LEFT JOIN checkpoints k ON k.session = s.id"
        " WHERE s.end_at IS NULL ORDER BY s.id"
    ).fetchall()
    open_sessions = tuple(
        OpenSession(
            id=int(r[0]),
            card=str(r[1]),
            bay=str(r[2]),
            start=float(r[3]),
            counter_start=r[4],
            counter_last=r[5],
            peak_w=float(r[6] or 0.0),
            closed_s=float(r[7] or 0.0),
            had_load=bool(r[8]),
            low_s=float(r[9] or 0.0),
            topup_s=None if r[10] is None else float(r[10]),
            elapsed_s=None if r[11] is None else float(r[11]),
            checkpoint_at=None if r[12] is None else float(r[12]),
            clock_ok=bool(r[13]),
            had_first_load=bool(r[14]),
        )
        for r in rows
    )
    top = conn.execute("SELECT COALESCE(MAX(id), 0) FROM sessions").fetchone()[0]
    used = conn.execute(
        "SELECT card, SUM(energy_wh) FROM sessions WHERE end_at IS NOT NULL AND start_at >= ?"
        " GROUP BY card",
        (since,),
    ).fetchall()
    # A session keeps its checkpoints row from its start until it has settled (see _settle).
    settling = tuple(
        EndedRecord(
            id=int(r[0]),
            card=str(r[1]),
            bay=str(r[2]),
            start=float(r[3]),
            end=float(r[4]),
            reason=str(r[5]),
            counter_start=r[6],
            counter_last=r[7],
            energy_wh=int(r[8]),
        )
        for r in conn.execute(
            "SELECT s.id, s.card, s.bay, s.start_at, s.end_at, s.reason, s.counter_start,"
            " s.counter_last, s.energy_wh FROM sessions s JOIN checkpoints k ON k.session = s.id"
            " WHERE s.end_at IS NOT NULL ORDER BY s.id"
        )
    )
    return LedgerState(open_sessions, int(top) + 1, {str(c): int(e) for c, e in used}, settling)


def _start(conn: sqlite3.Connection, r: SessionStart) -> None:
    conn.execute(
        "INSERT INTO sessions (id, card, bay, start_at, counter_start, counter_last, clock_ok)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (r.id, r.card, r.bay, r.start, r.counter_start, r.counter_start, int(r.clock_ok)),
    )
    conn.execute(
        "INSERT INTO checkpoints (session, at, elapsed_s) VALUES (?, ?, 0)", (r.id, r.start)
    )


def _checkpoint(conn: sqlite3.Connection, r: Checkpoint) -> None:
    conn.execute(
        "UPDATE sessions SET counter_start = COALESCE(counter_start, ?), counter_last = ?,"
        " energy_wh = ? WHERE id = ? AND end_at IS NULL",
        (r.counter_start, r.counter_last, r.energy_wh, r.id),
    )
    conn.execute(
        "INSERT INTO checkpoints"
        " (session, at, peak_w, closed_s, had_load, low_s, topup_s, elapsed_s, had_first_load)"
        " SELECT ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE EXISTS"
        " (SELECT 1 FROM sessions WHERE id = ? AND end_at IS NULL)"
        " ON CONFLICT (session) DO UPDATE SET at = excluded.at, peak_w = excluded.peak_w,"
        " closed_s = excluded.closed_s, had_load = excluded.had_load, low_s = excluded.low_s,"
        " topup_s = excluded.topup_s, elapsed_s = excluded.elapsed_s,"
        " had_first_load = excluded.had_first_load",
        (
            r.id,
            r.at,
            r.peak_w,
            r.closed_s,
            int(r.had_load),
            r.low_s,
            r.topup_s,
            r.elapsed_s,
            int(r.had_first_load),
            r.id,
        ),
    )


def _end(conn: sqlite3.Connection, r: SessionEnd) -> None:
    conn.execute(
        "UPDATE sessions SET end_at = ?, reason = ?, counter_start = COALESCE(counter_start, ?),"
        " counter_last = ?, energy_wh = ? WHERE id = ? AND end_at IS NULL",
        (r.end, r.reason, r.counter_start, r.counter_last, r.energy_wh, r.id),
    )
    # The checkpoints row stays until the session has settled: a restart before that settles
    # it with the counter it reads (the reading that completes a session may not have come).


def _settle(conn: sqlite3.Connection, r: SessionSettle) -> None:
    conn.execute(
        "UPDATE sessions SET counter_last = COALESCE(?, counter_last), energy_wh = ?"
        " WHERE id = ? AND end_at IS NOT NULL",
        (r.counter_last, r.energy_wh, r.id),
    )
    conn.execute(
        "DELETE FROM checkpoints WHERE session = ?"
        " AND EXISTS (SELECT 1 FROM sessions WHERE id = ? AND end_at IS NOT NULL)",
        (r.id, r.id),
    )


def _times(conn: sqlite3.Connection, r: SessionTimes) -> None:
    conn.execute(
        "UPDATE sessions SET start_at = ?, end_at = COALESCE(?, end_at), clock_ok = 1 WHERE id = ?",
        (r.start, r.end, r.id),
    )


def _tap(conn: sqlite3.Connection, r: TapRecord) -> None:
    conn.execute(
        "INSERT INTO taps (at, bay, uid, result, session) VALUES (?, ?, ?, ?, ?)",
        (r.at, r.bay, r.uid, r.result, r.session),
    )


_APPLY: dict[type, Callable[[sqlite3.Connection, LedgerRecord], None]] = {
    SessionStart: _start,  # type: ignore[dict-item]
    Checkpoint: _checkpoint,  # type: ignore[dict-item]
    SessionEnd: _end,  # type: ignore[dict-item]
    SessionSettle: _settle,  # type: ignore[dict-item]
    SessionTimes: _times,  # type: ignore[dict-item]
    TapRecord: _tap,  # type: ignore[dict-item]
}


def apply(conn: sqlite3.Connection, records: Sequence[LedgerRecord]) -> None:
    """Write records in one transaction, in order."""
    with transaction(conn):
        for rec in records:
            _APPLY[type(rec)](conn, rec)
