"""The central card list's messages into the ledger (schema v6): versioned and idempotent, an old
message never undoes a newer one, a block of an unknown card holds against an older upsert, the
fields checked by the card CSV's parsers; every refusal changes nothing."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from chargectl.sessions import ledger
from chargectl.sessions.card_sync import (
    BLOCKED_NAME,
    apply_block,
    apply_upsert,
    block_from,
    upsert_from,
)
from chargectl.sessions.cards import Card
from chargectl.sessions.errors import InvalidInput

UID = "04A1B2C3"


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = ledger.connect(tmp_path / "ledger.db")
    try:
        yield c
    finally:
        c.close()


def upsert(conn: sqlite3.Connection, version: int, **fields: Any) -> bool:
    card, v = upsert_from({"uid": UID, "name": "flat 1", "version": version, **fields})
    return apply_upsert(conn, card, v, wall=1000.0 + version).applied


def version_of(conn: sqlite3.Connection, uid: str = UID) -> int | None:
    row = conn.execute("SELECT version FROM cards WHERE uid = ?", (uid,)).fetchone()
    return None if row[0] is None else int(row[0])


def test_an_upsert_registers_then_replaces_the_card_with_its_fields(
    conn: sqlite3.Connection,
) -> None:
    assert upsert(conn, 3, daily_kwh=2.5, expires="2027-01-31", status="active")
    assert ledger.get_card(conn, UID) == Card(UID, "flat 1", "active", 2.5, date(2027, 1, 31))
    assert version_of(conn) == 3
    # The whole card: fields left out take the CSV import's defaults.
    assert upsert(conn, 4, name="flat 2")
    assert ledger.get_card(conn, UID) == Card(UID, "flat 2")
    assert version_of(conn) == 4


def test_the_same_or_an_older_version_changes_nothing(conn: sqlite3.Connection) -> None:
    assert upsert(conn, 10, daily_kwh=3)
    before = ledger.get_card(conn, UID)
    assert not upsert(conn, 10, daily_kwh=3)  # delivered twice (QoS 1)
    assert not upsert(conn, 9, status="blocked")  # delivered late
    change = apply_block(conn, UID, 7, wall=0.0)
    assert (change.applied, change.version, change.status) == (False, 10, "active")
    assert ledger.get_card(conn, UID) == before and version_of(conn) == 10


def test_a_block_of_an_unknown_card_holds_against_an_older_upsert(
    conn: sqlite3.Connection,
) -> None:
    change = apply_block(conn, "04D5E6F7", 20, wall=0.0)
    assert (change.applied, change.status) == (True, "blocked")
    assert ledger.get_card(conn, "04D5E6F7") == Card("04D5E6F7", BLOCKED_NAME, "blocked")
    card, _ = upsert_from({"uid": "04d5e6f7", "name": "flat 9", "version": 19})
    assert not apply_upsert(conn, card, 19, wall=0.0).applied
    assert ledger.get_card(conn, "04D5E6F7").status == "blocked"
    assert apply_upsert(conn, card, 21, wall=0.0).applied  # unblocked by a newer one
    assert ledger.get_card(conn, "04D5E6F7").status == "active"


def test_a_block_keeps_the_other_fields(conn: sqlite3.Connection) -> None:
    assert upsert(conn, 1, daily_kwh=4)
    assert apply_block(conn, UID, 2, wall=0.0).applied
    assert ledger.get_card(conn, UID) == Card(UID, "flat 1", "blocked", 4.0)


def test_staff_changes_keep_the_version_and_the_next_central_message_applies(
    conn: sqlite3.Connection,
) -> None:
    assert upsert(conn, 5)
    assert ledger.set_status(conn, UID, "blocked", wall=0.0)  # `chargectl cards block`
    assert version_of(conn) == 5
    assert upsert(conn, 6)
    assert ledger.get_card(conn, UID).status == "active"


def test_a_v5_ledger_gains_the_version_column_empty(tmp_path: Path) -> None:
    raw = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    ledger.migrate(raw, target=5)
    ledger.add_card(raw, Card(UID, "flat 1"), wall=0.0)
    raw.close()
    conn = ledger.connect(tmp_path / "old.db")
    try:
        assert ledger.schema_version(conn) == ledger.SCHEMA_VERSION >= 6
        assert version_of(conn) is None
        assert upsert(conn, 0)  # any version beats none
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"uid": "04A1B2"}, "card UID '04A1B2' has 6 hex digits"),
        ({"uid": "zz"}, "card UID 'zz' is not hex"),
        ({"uid": ""}, "uid and name must not be empty"),
        ({"name": " "}, "uid and name must not be empty"),
        ({"name": "x" * 101}, "name is 101 characters; at most 100"),
        ({"name": "flat\u202e1"}, "bidirectional control characters"),
        ({"daily_kwh": "12"}, "daily_kwh must be a number or null, got str"),
        ({"daily_kwh": True}, "daily_kwh must be a number or null, got bool"),
        ({"daily_kwh": 0}, "daily kWh must be a positive number, got '0'"),
        ({"daily_kwh": -2.5}, "daily kWh must be a positive number, got '-2.5'"),
        ({"daily_kwh": 10**30}, "daily_kwh 10000000000000000000... is out of range"),
        ({"expires": "2026-13-01"}, "expiry date '2026-13-01' is not a real date"),
        ({"expires": "tomorrow"}, "expiry date 'tomorrow' is not YYYY-MM-DD"),
        ({"expires": 20270131}, "expires must be a string, got int"),
        ({"status": "gone"}, "status 'gone': expected one of active, blocked"),
        ({"version": -1}, "version must be 0 to 9223372036854775807, got -1"),
        ({"version": 2**63}, "version must be 0 to 9223372036854775807, got 9223372036854775808"),
        ({"version": 1.5}, "version must be a whole number, got float 1.5"),
        ({"version": True}, "version must be a whole number, got bool True"),
        ({"version": None}, "version must be a whole number, got null"),
    ],
)
def test_a_bad_upsert_is_refused_and_changes_nothing(
    conn: sqlite3.Connection, fields: dict[str, Any], message: str
) -> None:
    assert upsert(conn, 1)
    before = ledger.list_cards(conn)
    with pytest.raises(InvalidInput) as info:
        upsert_from({"uid": UID, "name": "flat 1", "version": 2} | fields)
    assert message in str(info.value)
    assert ledger.list_cards(conn) == before and version_of(conn) == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"uid": "04A1", "version": 1}, "card UID '04A1' has 4 hex digits"),
        ({"uid": UID, "version": "1"}, "version must be a whole number, got str 1"),
        ({"uid": UID}, "version must be a whole number, got null"),
    ],
)
def test_a_bad_block_is_refused(body: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        block_from(body)
    assert message in str(info.value)
