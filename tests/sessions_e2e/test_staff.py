"""The staff's side against a running daemon: `POST /sessions/stop` and `chargectl sessions
stop BAY` (a real subprocess) end sessions as `staff_stop`; a card given a tiny daily limit by
`chargectl cards add` while the daemon runs is stopped at its quota and then refused."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.rig import CARD, OTHER_CARD, running_shed
from tests.sessions_e2e.shed import (
    AVAILABLE,
    REJECTED,
    SPEED,
    chargectl,
    check_energy,
    counter,
    e2e_config,
    taps,
    until_charging,
    until_ended,
    until_lamp,
    until_running,
)

pytestmark = pytest.mark.timeout(120)

BY_API, BY_CLI, QUOTA = "pile-a/10", "pile-a/11", "pile-a/12"
LIMITED = "04CAFE01"


async def test_staff_stop_through_the_api_and_the_command_line(tmp_path: Path) -> None:
    cfg = e2e_config(
        tmp_path,
        chargers=[
            {"bay": BY_API, "profile": "lead72", "soc": 0.3},
            {"bay": BY_CLI, "profile": "li60", "soc": 0.3},
        ],
    )
    async with running_shed(cfg, speed=SPEED) as rig:
        start = {b: counter(rig.sim, b) for b in (BY_API, BY_CLI)}
        rows = {}
        for bay, card in ((BY_API, CARD), (BY_CLI, OTHER_CARD)):
            rig.tap(bay, card)
            rows[bay] = await until_running(rig, bay)
            await until_charging(rig, bay)

        code, body = await rig.api("/sessions/stop", {"bay": BY_API})
        assert (code, body) == (200, {"stopped": True})

        done = await chargectl("sessions", "stop", BY_CLI, "-c", str(cfg))
        assert (done.returncode, done.stdout.strip()) == (0, f"stopped the session at {BY_CLI}")
        done = await chargectl("sessions", "stop", BY_CLI, "-c", str(cfg))
        assert (done.returncode, done.stdout.strip()) == (0, f"no session running at {BY_CLI}")
        done = await chargectl("sessions", "stop", "pile-a/13", "-c", str(cfg))
        assert done.returncode == 2 and "unknown bay 'pile-a/13'" in done.stderr, done

        ended = {b: await until_ended(rig, b) for b in (BY_API, BY_CLI)}
        for b, e in ended.items():
            assert (e.id, e.reason) == (rows[b].id, "staff_stop")
            await until_lamp(rig, b, AVAILABLE, 5)
        await asyncio.gather(*(check_energy(rig, ended[b], start[b]) for b in ended))

        done = await chargectl("sessions", "list", "--json", "-c", str(cfg))
        assert done.returncode == 0, done.stderr
        listed = {r["bay"]: r for r in json.loads(done.stdout)}
        assert {b: (r["id"], r["reason"]) for b, r in listed.items()} == {
            b: (rows[b].id, "staff_stop") for b in (BY_API, BY_CLI)
        }


async def test_daily_quota_of_a_card_added_while_running(tmp_path: Path) -> None:
    cfg = e2e_config(tmp_path, chargers=[{"bay": QUOTA, "profile": "li72", "soc": 0.3}])
    async with running_shed(cfg, speed=SPEED) as rig:
        path = rig.shed.ledger_path()
        done = await chargectl(
            "cards", "add", LIMITED, "--name", "flat 12", "--daily-kwh", "0.003", "-c", str(cfg)
        )
        assert done.returncode == 0, done.stderr
        await rig.wait_for(lambda: LIMITED in rig.daemon.writer.cards(), 10, "the card book reload")
        start = counter(rig.sim, QUOTA)
        rig.tap(QUOTA, LIMITED)
        row = await until_running(rig, QUOTA)
        await until_charging(rig, QUOTA)
        ended = await until_ended(rig, QUOTA, 30)
        assert (ended.id, ended.reason) == (row.id, "quota")
        await until_lamp(rig, QUOTA, AVAILABLE, 5)
        energy = await check_energy(rig, ended, start)
        assert energy >= 3  # the limit, in Wh; what flowed until the relay opened settles on

        # Today's limit is used up: the next tap is refused and recorded.
        rig.tap(QUOTA, LIMITED)
        await until_lamp(rig, QUOTA, REJECTED, 5)
        await until_lamp(rig, QUOTA, AVAILABLE, 5)
        await rig.wait_for(lambda: len(taps(path)) == 2, 5, "the refused tap recorded")
        assert [(t.uid, t.result, t.session) for t in taps(path)] == [
            (LIMITED, "started", row.id),
            (LIMITED, "quota", None),
        ]


async def test_staff_commands_carry_the_api_token(tmp_path: Path) -> None:
    """With api.token_file, `chargectl status` and `chargectl sessions stop` send the token;
    a request without it is refused."""
    cfg = e2e_config(tmp_path, chargers=[{"bay": BY_CLI, "profile": "li60", "soc": 0.3}])
    (tmp_path / "api.token").write_text("a-token-of-more-than-16-chars\n")
    cfg.write_text(cfg.read_text().replace("api:", "api:\n  token_file: api.token", 1))
    async with running_shed(cfg, speed=SPEED) as rig:
        code, _ = await rig.api("/status", None)
        assert code == 401  # the rig's own request carries no token
        rig.tap(BY_CLI, OTHER_CARD)
        await until_running(rig, BY_CLI)
        done = await chargectl("status", "--json", "-c", str(cfg))
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["shed"] == rig.shed.shed.name
        done = await chargectl("sessions", "stop", BY_CLI, "-c", str(cfg))
        assert (done.returncode, done.stdout.strip()) == (0, f"stopped the session at {BY_CLI}")
