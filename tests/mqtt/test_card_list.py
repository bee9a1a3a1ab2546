"""cards/upsert and cards/block through a real mosquitto into the daemon on the simulator: a
card registered from the central list charges at its next tap, a block stops its running session
and refuses its next tap, an old message delivered late undoes nothing, and bad payloads are
refused on cmd/result, changing nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chargectl.config.load import load_shed
from chargectl.sessions import ledger
from chargectl.sessions.cards import Card
from tests.mqtt.broker import SHED, Broker, operator
from tests.mqtt.central import central, command, mqtt_config, subscribed
from tests.rig import running_shed

pytestmark = pytest.mark.timeout(90)

NEW = "04C0FFEE"
BAY, OTHER_BAY = "pile-a/1", "pile-a/2"


def cards_in_ledger(path: Path) -> list[tuple[Card, int | None]]:
    conn = ledger.connect(path)
    try:
        versions = dict(conn.execute("SELECT uid, version FROM cards").fetchall())
        return [(c, versions[c.uid]) for c in ledger.list_cards(conn)]
    finally:
        conn.close()


async def test_the_central_list_registers_blocks_and_never_goes_back(
    broker: Broker, tmp_path: Path
) -> None:
    chargers = [{"bay": b, "profile": "li48", "soc": 0.3} for b in (BAY, OTHER_BAY)]
    # A stopped session settles (its last counter reading) 1 s after it ended, not 30.
    cfg = mqtt_config(tmp_path, broker, sessions={"settle_s": 1}, sim={"chargers": chargers})
    tap_topic, end_topic = f"chargectl/{SHED}/events/tap", f"chargectl/{SHED}/events/session_end"
    async with (
        operator(broker.port) as op,
        central(broker.port, "cardlist") as cards,
        running_shed(cfg) as rig,
    ):
        await subscribed(rig)
        body = {"uid": NEW, "name": "flat 12", "daily_kwh": 3, "version": 1}
        got = await command(cards, "cards/upsert", body, "u1")
        assert got["result"] == {
            "uid": NEW, "applied": True, "version": 1, "status": "active", "stopped": [],
        }  # fmt: skip
        got = await command(cards, "cards/upsert", body, "u1-again")  # QoS 1: twice
        assert got["result"] == {"uid": NEW, "applied": False, "version": 1, "status": "active"}
        # Its next tap starts a session: the book is the daemon's at once, not after a reload.
        rig.tap(BAY, NEW)
        tap = json.loads(await op.payload(tap_topic))
        assert (tap["card"], tap["result"]) == (NEW, "started")
        await rig.wait_for(lambda: rig.bay(BAY)["state"] == "charging", 10)

        got = await command(cards, "cards/block", {"uid": NEW, "version": 2}, "b2")
        assert got["result"] == {
            "uid": NEW, "applied": True, "version": 2, "status": "blocked", "stopped": [BAY],
        }  # fmt: skip
        end = json.loads(await op.payload(end_topic))
        assert (end["bay"], end["card"], end["reason"]) == (BAY, NEW, "staff_stop")
        await rig.wait_for(lambda: rig.bay(BAY)["state"] == "idle", 10)
        # The first upsert delivered late undoes nothing: the next tap is refused.
        got = await command(cards, "cards/upsert", body, "u1-late")
        assert (got["result"]["applied"], got["result"]["status"]) == (False, "blocked")
        rig.tap(OTHER_BAY, NEW)
        tap = json.loads(await op.payload(tap_topic))
        assert (tap["bay"], tap["result"]) == (OTHER_BAY, "blocked")
        await rig.ticks(2)
        assert rig.bay(OTHER_BAY)["state"] == "idle"
        # A newer upsert brings it back.
        got = await command(cards, "cards/upsert", body | {"version": 3}, "u3")
        assert got["result"]["applied"] is True
        lines = list(rig.daemon.events.lines)
    held = {c.uid: (c, v) for c, v in cards_in_ledger(rig.shed.ledger_path())}
    assert held[NEW] == (Card(NEW, "flat 12", daily_kwh=3.0), 3)
    assert any(f"card {NEW} blocked from the central list (version 2)" in x for x in lines)


UP = "cards/upsert"
CARD = '{"uid": "04C0FFEE", "name": "x", "version": 1, '
BAD = [
    (UP, '{"uid": "04C0FFEE", "version": 1}', "missing field 'name' (a string)"),
    (UP, '{"uid": "04C0FFEE", "name": "x"}', "missing field 'version' (a number)"),
    (UP, '{"uid": "04C0FF", "name": "x", "version": 1}', "card UID '04C0FF' has 6 hex"),
    (UP, '{"uid": "04C0FFEE", "name": "x", "version": -4}', "version must be 0 to "),
    (UP, '{"uid": "04C0FFEE", "name": "x", "version": 2.5}', "version must be a whole"),
    (UP, CARD + '"daily_kwh": "5"}', "daily_kwh must be a number or null, got str"),
    (UP, CARD + '"expires": "31.12.2027"}', "expiry date '31.12.2027' is not YYYY-MM-DD"),
    (UP, CARD + '"status": "paused"}', "status 'paused': expected one of active, blocked"),
    (UP, CARD + '"flat": 3}', "unknown field 'flat'; known: id, uid, name, version, daily_kwh, "),
    ("cards/block", '{"uid": "04C0FFEE"}', "missing field 'version' (a number)"),
    ("cards/block", '{"uid": "not-a-card", "version": 1}', "card UID 'not-a-card' is not hex"),
    ("cards/block", '{"uid": "04C0FFEE", "version": true}', "'version' must be a number, got a "),
]


async def test_a_bad_card_message_is_refused_and_changes_nothing(
    broker: Broker, tmp_path: Path
) -> None:
    cfg = mqtt_config(tmp_path, broker)
    shed = load_shed(cfg)
    async with operator(broker.port) as op, running_shed(cfg) as rig:
        await subscribed(rig)
        before = cards_in_ledger(shed.ledger_path())
        book = rig.daemon.writer.cards()
        for n, (path, payload, error) in enumerate(BAD):
            got = await command(op, path, payload[:-1] + f', "id": {n}}}')
            assert (got["id"], got["ok"]) == (n, False), payload
            assert error in got["error"], (payload, got["error"])
        assert cards_in_ledger(shed.ledger_path()) == before
        assert rig.daemon.writer.cards() is book
