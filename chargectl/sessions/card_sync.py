"""The central card list's messages into the ledger: `cards/upsert` and `cards/block` (MQTT).

Each message carries a `version` (a non-negative integer: a counter, or a Unix timestamp in
seconds or milliseconds, as long as it grows with every change the list makes to a card). The
ledger keeps each card's latest version (`cards.version`, schema v6); a message whose version is
at or below it changes nothing and is answered as such. So a message delivered twice (QoS 1)
is applied once, and one delivered late never undoes a newer one. A block of a card the box
does not know registers it blocked, with its version, so that an older upsert arriving after
it cannot bring the card in active.

The card's fields are checked by the parsers of the card CSV and `chargectl cards add`
(`chargectl.sessions.cards`); every refusal (`InvalidInput`) says what is wrong and changes
nothing. Staff changes on the box (`chargectl cards ...`) are not versioned: they leave the
version as it was, and the next central message for the card is applied over them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chargectl.sessions.cards import Card, CardStatus, card_from_cells, parse_status, parse_uid
from chargectl.sessions.errors import InvalidInput
from chargectl.sessions.ledger_schema import transaction

MAX_VERSION = 2**63 - 1  # SQLite's INTEGER
BLOCKED_NAME = "(blocked by the central card list)"  # a card first known by its block


@dataclass(frozen=True, slots=True)
class CardChange:
    uid: str
    applied: bool  # False: the card's version was at or above the message's: nothing changed
    version: int  # the card's version now
    status: CardStatus  # the card's status now


def parse_version(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        shown = "null" if value is None else f"{type(value).__name__} {str(value)[:40]}"
        raise InvalidInput(f"version must be a whole number, got {shown}")
    if not 0 <= value <= MAX_VERSION:
        raise InvalidInput(f"version must be 0 to {MAX_VERSION}, got {str(value)[:40]}")
    return value


def upsert_from(body: Mapping[str, Any]) -> tuple[Card, int]:
    """A `cards/upsert` body -> (the card, its version). Fields left out take the CSV import's
    defaults: no daily limit, no expiry, active."""
    cells: dict[str, str] = {}
    for name in ("uid", "name", "expires", "status"):
        value = body.get(name)
        if value is not None and not isinstance(value, str):
            raise InvalidInput(f"{name} must be a string, got {type(value).__name__}")
        cells[name] = value or ""
    if not cells["uid"].strip() or not cells["name"].strip():
        raise InvalidInput("uid and name must not be empty")
    kwh = body.get("daily_kwh")
    if kwh is not None and (isinstance(kwh, bool) or not isinstance(kwh, int | float)):
        raise InvalidInput(f"daily_kwh must be a number or null, got {type(kwh).__name__}")
    if isinstance(kwh, int) and not isinstance(kwh, bool) and abs(kwh) > 10**9:
        raise InvalidInput(f"daily_kwh {str(kwh)[:20]}... is out of range")
    cells["daily_kwh"] = "" if kwh is None else repr(kwh)
    return card_from_cells(cells), parse_version(body.get("version"))


def block_from(body: Mapping[str, Any]) -> tuple[str, int]:
    """A `cards/block` body -> (the UID, the version)."""
    return parse_uid(str(body.get("uid"))), parse_version(body.get("version"))


def _current(conn: sqlite3.Connection, uid: str) -> tuple[int | None, str] | None:
    row = conn.execute("SELECT version, status FROM cards WHERE uid = ?", (uid,)).fetchone()
    return None if row is None else (None if row[0] is None else int(row[0]), str(row[1]))


def apply_upsert(conn: sqlite3.Connection, card: Card, version: int, wall: float) -> CardChange:
    """Register or replace the card unless the ledger holds it at `version` or newer."""
    expires = None if card.expires is None else card.expires.isoformat()
    with transaction(conn):
        now = _current(conn, card.uid)
        if now is not None and now[0] is not None and now[0] >= version:
            return CardChange(card.uid, False, now[0], parse_status(now[1]))
        if now is None:
            conn.execute(
                "INSERT INTO cards (uid, name, status, daily_kwh, expires, created_at, "
                "updated_at, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (card.uid, card.name, card.status, card.daily_kwh, expires, wall, wall, version),
            )
        else:
            conn.execute(
                "UPDATE cards SET name = ?, status = ?, daily_kwh = ?, expires = ?, "
                "updated_at = ?, version = ? WHERE uid = ?",
                (card.name, card.status, card.daily_kwh, expires, wall, version, card.uid),
            )
    return CardChange(card.uid, True, version, card.status)


def apply_block(conn: sqlite3.Connection, uid: str, version: int, wall: float) -> CardChange:
    """Block the card unless the ledger holds it at `version` or newer; a card the ledger does
    not hold is registered blocked (`BLOCKED_NAME`)."""
    with transaction(conn):
        now = _current(conn, uid)
        if now is not None and now[0] is not None and now[0] >= version:
            return CardChange(uid, False, now[0], parse_status(now[1]))
        if now is None:
            conn.execute(
                "INSERT INTO cards (uid, name, status, created_at, updated_at, version) "
                "VALUES (?, ?, 'blocked', ?, ?, ?)",
                (uid, BLOCKED_NAME, wall, wall, version),
            )
        else:
            conn.execute(
                "UPDATE cards SET status = 'blocked', updated_at = ?, version = ? WHERE uid = ?",
                (wall, version, uid),
            )
    return CardChange(uid, True, version, "blocked")
