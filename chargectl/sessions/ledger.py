"""The ledger: one SQLite file (standard library, WAL), its versioned schema and its queries.

Everything that uses the ledger imports this module; its code lives in three:
- `ledger_schema`: opening the file, the schema and its migrations, the write transaction,
  the errors that name what is wrong with a file;
- this module: the card book and the sessions and taps as people read them (the staff
  command line, billing);
- `ledger_daemon`: the state a start-up resumes from and the records the writer thread
  applies.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from chargectl.sessions.cards import Card, CardBook, parse_day, parse_status
from chargectl.sessions.errors import InvalidInput, UnknownCard
from chargectl.sessions.ledger_daemon import apply, load_latches, load_state
from chargectl.sessions.ledger_schema import (
    BUSY_TIMEOUT_MS,
    MIGRATIONS,
    SCHEMA_VERSION,
    BadLedger,
    NewerSchema,
    connect,
    ledger_error,
    migrate,
    schema_version,
    transaction,
)
from chargectl.sessions.records import CardFlag, TapRecord

__all__ = [
    "BUSY_TIMEOUT_MS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "BadLedger",
    "CardEnergy",
    "CardFlag",
    "NewerSchema",
    "SessionRow",
    "add_card",
    "apply",
    "card_flags",
    "connect",
    "energy_by_card",
    "get_card",
    "get_session",
    "import_cards",
    "ledger_error",
    "list_cards",
    "list_sessions",
    "list_taps",
    "load_cards",
    "load_latches",
    "load_state",
    "migrate",
    "schema_version",
    "sessions_between",
    "set_status",
    "transaction",
    "unflag_card",
    "unsynced_sessions",
]


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


# ----- cards marked by a critical fire-risk finding -----
def card_flags(conn: sqlite3.Connection) -> dict[str, CardFlag]:
    """Every marked card's mark, by UID (a mark may outlive its card's registration)."""
    rows = conn.execute(
        "SELECT uid, reason, at, session, bay FROM card_flags ORDER BY uid"
    ).fetchall()
    return {
        str(u): CardFlag(
            str(u), str(r), float(a), None if s is None else int(s), None if b is None else str(b)
        )
        for u, r, a, s, b in rows
    }


def unflag_card(conn: sqlite3.Connection, uid: str) -> bool:
    """Clear a card's mark; False when it had none. Raises UnknownCard for a card that is
    neither registered nor marked (a typo)."""
    with transaction(conn):
        gone = conn.execute("DELETE FROM card_flags WHERE uid = ?", (uid,)).rowcount
        if gone:
            return True
        if conn.execute("SELECT 1 FROM cards WHERE uid = ?", (uid,)).fetchone() is None:
            raise UnknownCard(f"card {uid} is not registered")
        return False


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


def get_session(conn: sqlite3.Connection, session_id: int) -> SessionRow | None:
    row = conn.execute(_SESSION_SELECT + " WHERE s.id = ?", (session_id,)).fetchone()
    return None if row is None else _session(row)


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
