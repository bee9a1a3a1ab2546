"""Card taps at the pile over real Modbus: a session starts and stops with the same card, a
different card at a busy bay is refused while the session goes on, and unknown, blocked and
expired cards are refused and recorded. The lamps are the pile's own indicator registers."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.rig import CARD, OTHER_CARD, running_shed
from tests.sessions_e2e.shed import (
    ACCEPTED,
    AVAILABLE,
    CHARGING,
    REJECTED,
    SPEED,
    WAITING,
    chargectl,
    check_energy,
    closed,
    counter,
    counters,
    e2e_config,
    lamp,
    running_at,
    sessions,
    taps,
    until_charging,
    until_ended,
    until_lamp,
    until_running,
)

pytestmark = pytest.mark.timeout(120)

BAY = "pile-a/1"


async def test_same_card_stops_and_another_card_is_refused(tmp_path: Path) -> None:
    cfg = e2e_config(tmp_path, chargers=[{"bay": BAY, "profile": "li72", "soc": 0.3}])
    async with running_shed(cfg, speed=SPEED) as rig:
        path = rig.shed.ledger_path()
        start = counter(rig.sim, BAY)
        assert lamp(rig.sim, BAY) == AVAILABLE
        rig.tap(BAY, CARD)
        await until_lamp(rig, BAY, ACCEPTED, 5)  # green blink for tap_lamp_s ...
        row = await until_running(rig, BAY)
        assert (row.card, row.reason) == (CARD, None)
        await until_charging(rig, BAY)
        await until_lamp(rig, BAY, CHARGING, 5)  # ... then blue while the relay is closed

        # Another resident's card: refused (red blink), then the lamp is back; nothing stops.
        rig.tap(BAY, OTHER_CARD)
        await until_lamp(rig, BAY, REJECTED, 5)
        await until_lamp(rig, BAY, CHARGING, 5)
        assert closed(rig.sim, BAY)
        assert [r.id for r in sessions(path)] == [row.id]
        assert sessions(path)[0].end is None

        # A li72 draws about 0.14 Wh per simulated second: let a few Wh flow before stopping.
        await rig.wait_for(lambda: counter(rig.sim, BAY) >= start + 3, 30, "3 Wh")
        rig.tap(BAY, CARD)
        await until_lamp(rig, BAY, ACCEPTED, 5)
        ended = await until_ended(rig, BAY)
        assert (ended.id, ended.reason) == (row.id, "user_stop")
        await until_lamp(rig, BAY, AVAILABLE, 5)
        energy = await check_energy(rig, ended, start)
        assert energy >= 3

        assert [(t.uid, t.result, t.session) for t in taps(path) if t.bay == BAY] == [
            (CARD, "started", row.id),
            (OTHER_CARD, "busy", None),
            (CARD, "stopped", row.id),
        ]


async def test_unknown_blocked_and_expired_cards_are_refused(tmp_path: Path) -> None:
    """Cards changed by the staff command line while the daemon runs: the daemon's card book
    reloads them (at most every 2 s)."""
    cfg = e2e_config(tmp_path, chargers=[{"bay": BAY, "profile": "li48", "soc": 0.3}])
    unknown, expired = "0A0B0C0D", "04112233445566"
    yesterday = (date.today() - timedelta(days=1)).isoformat()
    async with running_shed(cfg, speed=SPEED) as rig:
        path = rig.shed.ledger_path()
        for args in (
            ["cards", "block", OTHER_CARD],
            ["cards", "add", expired, "--name", "flat 9", "--expires", yesterday],
        ):
            done = await chargectl(*args, "-c", str(cfg))
            assert done.returncode == 0, done.stderr
        await rig.wait_for(
            lambda: rig.daemon.writer.health().card_reloads >= 1, 10, "the card book reload"
        )
        for uid in (unknown, OTHER_CARD, expired):
            rig.tap(BAY, uid)
            await until_lamp(rig, BAY, REJECTED, 5)
            await until_lamp(rig, BAY, AVAILABLE, 5)
        assert not closed(rig.sim, BAY)
        assert sessions(path) == []
        await rig.wait_for(lambda: len(taps(path)) == 3, 5, "three taps recorded")
        assert [(t.bay, t.uid, t.result, t.session) for t in taps(path)] == [
            (BAY, unknown, "unknown", None),
            (BAY, OTHER_CARD, "blocked", None),
            (BAY, expired, "expired", None),
        ]

        # Unblocked, the same card starts a session.
        done = await chargectl("cards", "unblock", OTHER_CARD, "-c", str(cfg))
        assert done.returncode == 0, done.stderr
        await rig.wait_for(
            lambda: rig.daemon.writer.health().card_reloads >= 2, 10, "the card book reload"
        )
        rig.tap(BAY, OTHER_CARD)
        row = await until_running(rig, BAY)
        assert row.card == OTHER_CARD
        await until_charging(rig, BAY)


async def test_a_card_right_after_a_stop_waits_until_the_previous_session_settled(
    tmp_path: Path,
) -> None:
    """The counter read at a stop is up to a slow poll old: what flowed until the relay opened
    is the first card's. A second card tapped at once is accepted, waits (yellow, relay open)
    until the first session settled, and starts from the counter as it is then."""
    cfg = e2e_config(
        tmp_path,
        control={"slow_poll_s": 2.0},
        sessions={"settle_s": 3.0},
        chargers=[{"bay": BAY, "profile": "li72", "soc": 0.3}],
    )
    async with running_shed(cfg, speed=SPEED) as rig:
        path = rig.shed.ledger_path()
        start = counter(rig.sim, BAY)
        rig.tap(BAY, CARD)
        first = await until_running(rig, BAY)
        await until_charging(rig, BAY)
        await rig.wait_for(lambda: counter(rig.sim, BAY) >= start + 5, 30, "5 Wh")
        rig.tap(BAY, CARD)
        await until_ended(rig, BAY)
        rig.tap(BAY, OTHER_CARD)
        await rig.wait_for(lambda: running_at(path, BAY), 5, "the second session")
        await until_lamp(rig, BAY, WAITING, 5)
        assert not closed(rig.sim, BAY)
        middle = counter(rig.sim, BAY)  # the relay is open: this is where the first one ended
        await until_charging(rig, BAY)
        await until_lamp(rig, BAY, CHARGING, 5)
        await rig.wait_for(lambda: counter(rig.sim, BAY) >= middle + 3, 30, "3 Wh more")
        rig.tap(BAY, OTHER_CARD)
        await until_ended(rig, BAY)
        (one, two) = sessions(path)
        assert (one.id, one.card, two.card) == (first.id, CARD, OTHER_CARD)
        assert abs(counters(path, one.id).energy_wh - (middle - start)) <= 1
        assert await check_energy(rig, two, middle) >= 3
        assert counters(path, two.id).start == counters(path, one.id).last
