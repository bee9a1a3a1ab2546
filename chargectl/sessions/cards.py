"""Cards: UIDs, card records, the rules that accept or reject a tap, and the CSV import format.

A UID is an identity claim, not a secret (UID-only Mifare cards can be cloned), so the value
of this module is in the rules around it: a normalised form, block lists, expiry, a daily
energy limit, and an audit trail of every tap (kept by the ledger).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Literal

from chargectl.sessions.errors import CardImportError, InvalidInput, InvalidUid

# Embeddings, overrides and isolates (U+202A..U+202E, U+2066..U+2069) and the marks: a name
# holding them shows one thing and means another.
BIDI_CONTROLS = frozenset(
    ["\u200e", "\u200f", "\u061c"]
    + [chr(c) for c in range(0x202A, 0x202F)]
    + [chr(c) for c in range(0x2066, 0x206A)]
)
UID_LENGTHS = (4, 7, 8)  # bytes: Mifare single, double and 8-byte UIDs
MAX_NAME = 100
CardStatus = Literal["active", "blocked"]
STATUSES: tuple[CardStatus, ...] = ("active", "blocked")


def parse_uid(text: str) -> str:
    """Normalise a UID to upper-case hex without separators (`04:a1:b2:c3` -> `04A1B2C3`).

    Accepts `:`, `-` and spaces between bytes. Raises `InvalidUid` naming what is wrong.
    """
    raw = text.strip()
    digits = raw.replace(":", "").replace("-", "").replace(" ", "")
    if not digits:
        raise InvalidUid("empty card UID")
    if any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise InvalidUid(f"card UID {raw!r} is not hex")
    if len(digits) % 2 or len(digits) // 2 not in UID_LENGTHS:
        raise InvalidUid(
            f"card UID {raw!r} has {len(digits)} hex digits; expected 8, 14 or 16 (4, 7 or 8 bytes)"
        )
    if int(digits, 16) == 0:
        # The tap registers read all zeros when no card was seen: never a real card.
        raise InvalidUid(f"card UID {raw!r} is all zeros")
    return digits.upper()


def uid_from_words(length: int, words: Sequence[int]) -> str:
    """The UID of a tap from `tap_info`'s length byte and the four `tap_uid` registers.

    The registers hold the UID right-aligned in 8 bytes, big-endian (pile.md, evse.md).
    """
    if length not in UID_LENGTHS:
        raise InvalidUid(f"tap UID length {length} bytes; expected 4, 7 or 8")
    if len(words) != 4 or any(not 0 <= w <= 0xFFFF for w in words):
        raise InvalidUid(f"tap UID registers {list(words)!r}: expected four u16 values")
    blob = b"".join(w.to_bytes(2, "big") for w in words)
    return parse_uid(blob[8 - length :].hex())


@dataclass(frozen=True, slots=True)
class Card:
    uid: str  # normalised (parse_uid)
    name: str  # a person's name or a flat number
    status: CardStatus = "active"
    daily_kwh: float | None = None  # None: no limit
    expires: date | None = None  # valid through this day (local time); None: never


CardBook = Mapping[str, Card]  # uid -> card: the daemon's in-memory copy of the cards table


class Verdict(StrEnum):
    OK = "ok"
    UNKNOWN = "unknown"
    BLOCKED = "blocked"
    EXPIRED = "expired"
    QUOTA = "quota"


def judge(card: Card | None, today: date, used_today_wh: float) -> Verdict:
    """May this card start a session today, having used `used_today_wh` already?"""
    if card is None:
        return Verdict.UNKNOWN
    if card.status != "active":
        return Verdict.BLOCKED
    if card.expires is not None and today > card.expires:
        return Verdict.EXPIRED
    if card.daily_kwh is not None and used_today_wh >= card.daily_kwh * 1000.0:
        return Verdict.QUOTA
    return Verdict.OK


def parse_name(text: str) -> str:
    name = text.strip()
    if not name:
        raise InvalidInput("name is empty")
    if len(name) > MAX_NAME:
        raise InvalidInput(f"name is {len(name)} characters; at most {MAX_NAME}")
    if any(ord(c) < 32 or 127 <= ord(c) <= 159 for c in name):
        raise InvalidInput(f"name {name!r} contains control characters")
    if any(c in BIDI_CONTROLS for c in name):
        raise InvalidInput(
            f"name {name!r} contains bidirectional control characters (they reorder what is shown)"
        )
    return name


def parse_daily_kwh(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidInput(f"daily kWh {text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise InvalidInput(f"daily kWh must be a positive number, got {text!r}")
    return value


def parse_day(text: str, what: str = "date") -> date:
    """`YYYY-MM-DD` strictly (no times, no other forms)."""
    raw = text.strip()
    parts = raw.split("-")
    shape_ok = [len(p) for p in parts] == [4, 2, 2] and all(p.isdigit() for p in parts)
    if not shape_ok:
        raise InvalidInput(f"{what} {text!r} is not YYYY-MM-DD")
    try:
        return date(int(parts[0]), int(parts[1]), int(parts[2]))
    except ValueError as exc:
        raise InvalidInput(f"{what} {text!r} is not a real date ({exc})") from None


def parse_status(text: str) -> CardStatus:
    raw = text.strip().lower()
    for status in STATUSES:
        if raw == status:
            return status
    raise InvalidInput(f"status {text!r}: expected one of {', '.join(STATUSES)}")


# The card CSV: a header line, then one card a line. uid and name are required columns;
# daily_kwh, expires and status are optional columns and may be left blank.
CSV_COLUMNS = ("uid", "name", "daily_kwh", "expires", "status")
CSV_REQUIRED = ("uid", "name")


def parse_cards_csv(text: str, path: str = "<csv>") -> list[Card]:
    """Every card of a CSV file, or `CardImportError` listing every bad line by number."""
    problems: list[tuple[int, str]] = []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    header_line = 0
    cards: list[Card] = []
    first_seen: dict[str, int] = {}
    next_line = 1  # the physical line the next record starts on
    try:
        for row in reader:
            line, next_line = next_line, reader.line_num + 1
            if not row or all(not cell.strip() for cell in row):
                continue
            if header is None:
                header, header_line = [c.strip().lower() for c in row], line
                unknown = [c for c in header if c not in CSV_COLUMNS]
                missing = [c for c in CSV_REQUIRED if c not in header]
                dupes = sorted({c for c in header if header.count(c) > 1})
                if unknown:
                    problems.append(
                        (
                            line,
                            f"unknown column(s) {', '.join(unknown)}; "
                            f"expected {', '.join(CSV_COLUMNS)}",
                        )
                    )
                if missing:
                    problems.append((line, f"header lacks column(s) {', '.join(missing)}"))
                if dupes:
                    problems.append((line, f"column(s) repeated: {', '.join(dupes)}"))
                if unknown or missing or dupes:
                    break
                continue
            if len(row) != len(header):
                problems.append((line, f"{len(row)} fields; the header has {len(header)}"))
                continue
            cells = dict(zip(header, row, strict=True))
            try:
                card = card_from_cells(cells)
            except InvalidInput as exc:
                problems.append((line, str(exc)))
                continue
            if card.uid in first_seen:
                problems.append((line, f"card {card.uid} already on line {first_seen[card.uid]}"))
                continue
            first_seen[card.uid] = line
            cards.append(card)
    except csv.Error as exc:
        problems.append((reader.line_num, f"CSV syntax: {exc}"))
    if header is None and not problems:
        expected = ",".join(CSV_COLUMNS)
        problems.append((1, f"no header line (expected {expected})"))
    elif not cards and not problems:
        problems.append((header_line, "no cards after the header"))
    if problems:
        raise CardImportError(path, problems)
    return cards


def card_from_cells(cells: Mapping[str, str]) -> Card:
    """One card from its fields as text (a CSV line's cells, the central list's `cards/upsert`):
    uid and name required, daily_kwh, expires and status optional (blank: none, active)."""
    uid = parse_uid(cells["uid"])
    name = parse_name(cells["name"])
    kwh = cells.get("daily_kwh", "").strip()
    exp = cells.get("expires", "").strip()
    status = cells.get("status", "").strip()
    return Card(
        uid=uid,
        name=name,
        status=parse_status(status) if status else "active",
        daily_kwh=parse_daily_kwh(kwh) if kwh else None,
        expires=parse_day(exp, "expiry date") if exp else None,
    )
