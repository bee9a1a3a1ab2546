"""bays/start through a real mosquitto into the daemon on the simulator: an app's start is
judged exactly as a tap of the card at the bay (the same outcomes, tap events and ledger
records), never stops a session, and a bad payload is refused on cmd/result, changing nothing."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from chargectl.config.load import load_shed
from chargectl.sessions import ledger
from tests.mqtt.broker import SHED, Broker, operator
from tests.mqtt.central import central, command, mqtt_config, subscribed
from tests.rig import CARD, OTHER_CARD, add_cards, running_shed

pytestmark = pytest.mark.timeout(90)

BLOCKED, EXPIRED, UNKNOWN = "04B10C6E", "04E4714E", "04AAAA00"
BAY = "pile-a/1"


def taps_in_ledger(path: Path) -> list[tuple[str, str, str]]:
    conn = ledger.connect(path)
    try:
        rows = conn.execute("SELECT bay, uid, result FROM taps ORDER BY id").fetchall()
    finally:
        conn.close()
    return [(str(b), str(u), str(r)) for b, u, r in rows]


async def test_an_app_start_is_a_tap_at_the_bay(broker: Broker, tmp_path: Path) -> None:
    cfg = mqtt_config(
        tmp_path, broker, sim={"chargers": [{"bay": BAY, "profile": "li48", "soc": 0.3}]}
    )
    shed = load_shed(cfg)
    add_cards(shed, [BLOCKED], status="blocked")
    add_cards(shed, [EXPIRED], expires=date(2020, 1, 1))
    async with (
        operator(broker.port) as op,
        central(broker.port, "app") as app,
        running_shed(cfg) as rig,
    ):
        await subscribed(rig)
        tap_topic = f"chargectl/{SHED}/events/tap"
        for uid, outcome, why in [
            (UNKNOWN, "unknown", "the card is not in the card list"),
            (BLOCKED, "blocked", "the card is blocked"),
            (EXPIRED, "expired", "the card has expired"),
        ]:
            got = await command(app, "bays/start", {"bay": BAY, "card": uid}, uid)
            assert (got["ok"], got["error"]) == (False, f"{outcome}: {why}")
            tap = json.loads(await op.payload(tap_topic))
            assert (tap["bay"], tap["card"], tap["result"]) == (BAY, uid, outcome)
        assert rig.bay(BAY)["state"] == "idle"

        # The card as a resident's app sends it (lower case, with colons): started.
        card = ":".join(CARD[i : i + 2] for i in range(0, 8, 2)).lower()
        got = await command(app, "bays/start", {"bay": BAY, "card": card}, "go")
        session = got["result"]["session"]
        assert got == {
            "id": "go",
            "command": "bays/start",
            "ok": True,
            "result": {"bay": BAY, "card": CARD, "result": "started", "session": session},
        }
        tap = json.loads(await op.payload(tap_topic))
        assert (tap["card"], tap["result"], tap["session"]) == (CARD, "started", session)
        await rig.wait_for(lambda: rig.bay(BAY)["state"] == "charging", 10)
        # Sent again (QoS 1 may deliver it twice): the session runs on.
        got = await command(app, "bays/start", {"bay": BAY, "card": CARD}, "again")
        assert got["error"].startswith(f"running: card {CARD}'s session {session} runs at")
        # Another card at the bay: busy, as a tap of it would be.
        got = await command(app, "bays/start", {"bay": BAY, "card": OTHER_CARD}, "other")
        assert got["error"] == "busy: another card's session runs at the bay"
        assert json.loads(await op.payload(tap_topic))["result"] == "busy"
        # The same card at a second bay: max_per_card (1).
        got = await command(app, "bays/start", {"bay": "pile-a/2", "card": CARD}, "second")
        assert got["error"].startswith("limit: ")
        assert json.loads(await op.payload(tap_topic))["result"] == "limit"
        await rig.ticks(2)
        assert rig.daemon.link.manager.session_at(BAY).id == session  # type: ignore[union-attr]
        assert rig.bay(BAY)["state"] == "charging"
        # The start is the card's tap there: the resident tapping it too just after is a
        # repeat of it (tap_debounce_s), not a stop.
        repeats = rig.daemon.link.manager.readout().taps_repeated
        rig.tap(BAY, CARD)
        await rig.wait_for(
            lambda: rig.daemon.link.manager.readout().taps_repeated == repeats + 1, 5
        )
        assert rig.bay(BAY)["state"] == "charging"
    assert taps_in_ledger(shed.ledger_path()) == [
        (BAY, UNKNOWN, "unknown"),
        (BAY, BLOCKED, "blocked"),
        (BAY, EXPIRED, "expired"),
        (BAY, CARD, "started"),
        (BAY, OTHER_CARD, "busy"),
        ("pile-a/2", CARD, "limit"),
    ]


BAD_STARTS = [
    ('{"bay": "pile-a/1"}', "missing field 'card' (a string)"),
    ('{"bay": "pile-a/1", "card": 1234}', "field 'card' must be a string, got a number 1234"),
    ('{"bay": "pile-a/1", "card": "04A1B2"}', "card: card UID '04A1B2' has 6 hex digits; "),
    ('{"bay": "pile-a/1", "card": "zz112233"}', "card: card UID 'zz112233' is not hex"),
    ('{"bay": "pile-a/1", "card": "00000000"}', "card: card UID '00000000' is all zeros"),
    ('{"bay": "pile-q/1", "card": "04A1B2C3"}', "unknown bay 'pile-q/1'"),
    ('{"bay": "pile-a/1", "card": "04A1B2C3", "kwh": 2}', "unknown field 'kwh'; known: id, bay, "),
    ('{"bay": ["pile-a/1"], "card": "04A1B2C3"}', "field 'bay' must be a string, got a list"),
]


async def test_a_bad_start_is_refused_and_changes_nothing(broker: Broker, tmp_path: Path) -> None:
    cfg = mqtt_config(tmp_path, broker)
    async with operator(broker.port) as op, running_shed(cfg) as rig:
        await subscribed(rig)
        before = rig.daemon.link.manager.readout()
        for n, (payload, error) in enumerate(BAD_STARTS):
            got = await command(op, "bays/start", payload[:-1] + f', "id": {n}}}')
            assert (got["id"], got["ok"]) == (n, False), payload
            assert got["error"].startswith(error), (payload, got["error"])
        await rig.ticks(2)
        after = rig.daemon.link.manager.readout()
        assert after.taps_total == before.taps_total and after.active == 0
        assert all(b["state"] == "idle" for b in rig.status()["bays"])
    assert taps_in_ledger(load_shed(cfg).ledger_path()) == []
