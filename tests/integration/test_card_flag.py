"""A critical fire-risk finding marks its card in the ledger, against the simulator over Modbus
TCP: a heater at a charging socket is cut, and the session's card carries the finding until
staff clear it (`chargectl cards list`, `chargectl cards unflag`, as separate processes beside
the running daemon); another card's session in the shed is not marked."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from chargectl.firewatch.detectors import Kind, Severity
from tests.integration.test_firewatch_actions import BAY, Seen, charging, closed, config
from tests.rig import Rig, bay_card, running_shed
from tests.sessions_e2e.shed import chargectl


async def listed(rig: Rig | Path) -> dict[str, Any]:
    """`chargectl cards list --json` as staff run it: each card's mark by UID."""
    cfg = rig if isinstance(rig, Path) else rig.shed.source
    done = await chargectl("cards", "list", "--json", "-c", str(cfg))
    assert done.returncode == 0, done.stderr
    return {c["uid"]: c["flag"] for c in json.loads(done.stdout)}


async def test_a_critical_finding_marks_the_card_until_staff_clear_it(tmp_path: Path) -> None:
    async with running_shed(config(tmp_path)) as rig:
        seen: Seen = await charging(rig)
        card = bay_card(BAY)
        assert (await listed(rig))[card] is None
        rig.sim.world.set_appliance(BAY, 1200.0)
        await rig.wait_for(lambda: seen.rows, 15, "a finding")
        _tick, _at, f, _closed = seen.rows[0]
        assert (f.kind, f.severity, f.card) == (Kind.OVER_POWER, Severity.CRITICAL, card)
        assert not closed(rig)
        assert await asyncio.to_thread(rig.daemon.writer.flush)
        flags = await listed(rig)
        mark = flags[card]
        assert mark["bay"] == BAY and mark["session"] == int(f.session_id)
        assert mark["reason"].startswith(f"over_power (critical) at {BAY}, session {f.session_id}")
        assert "1,200 W" in mark["reason"] or "W at the socket" in mark["reason"]
        assert [uid for uid, m in flags.items() if m is not None] == [card]
        cfg = str(rig.shed.source)
        table = await chargectl("cards", "list", "-c", cfg)
        header, *rows = table.stdout.splitlines()
        assert header.split()[-1] == "FLAG"
        (row,) = [r for r in rows if r.startswith(card)]
        assert mark["reason"] in row
        # Clearing the bay does not clear the card: staff speak to the resident first.
        status, _ = await rig.api("/bays/clear-fault", {"bay": BAY})
        assert status == 200
        assert (await listed(rig))[card] is not None
        bad = await chargectl("cards", "unflag", "04:zz", "-c", cfg)
        assert bad.returncode == 2 and "not hex" in bad.stderr
        done = await chargectl("cards", "unflag", card, "-c", cfg)
        assert done.returncode == 0 and "cleared the fire-risk mark" in done.stdout, done
        assert (await listed(rig))[card] is None


async def test_the_mark_survives_a_restart(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    async with running_shed(cfg) as rig:
        seen = await charging(rig)
        rig.sim.world.set_modified_pack(BAY, 1000.0)
        await rig.wait_for(lambda: seen.rows, 15, "a finding")
    # The daemon has stopped (its writer flushed and closed): the mark is in the file.
    mark = (await listed(cfg))[bay_card(BAY)]
    assert mark is not None and mark["reason"].startswith("over_power (critical)")
