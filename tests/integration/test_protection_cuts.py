"""The pile's own cuts watched live, against the simulator over Modbus TCP: a modified pack that
draws more than the pile's per-port cut-off (but less than the watch's own over-power levels)
is cut by the pile; staff reset the socket; the same card's next session is cut again: the
second cut is a critical `repeated_protection_cuts` finding that holds the bay out and marks
the card."""

from __future__ import annotations

import asyncio
from contextlib import closing
from pathlib import Path
from typing import Any

from chargectl.firewatch.detectors import Kind, Severity
from chargectl.sessions import ledger
from tests.integration.helpers import open_sessions
from tests.integration.test_firewatch_actions import BAY, Seen, closed
from tests.rig import Rig, bay_card, running_shed, write_config

TICK_S = 0.25
PILE_CUT_W = 300  # the pile's per-port cut-off here (it cuts after 2 s above it)
PACK_W = 500.0  # below the watch's over-power warning (650 W) and critical (900 W)


def config(tmp_path: Path) -> Path:
    def low_cut(data: dict[str, Any]) -> None:
        for dev in data["devices"]:
            if dev["id"] == "pile-a":
                dev["port_power_limit_w"] = PILE_CUT_W

    return write_config(
        tmp_path,
        "small",
        overrides={
            "control": {"tick_s": TICK_S, "slow_poll_s": 1.0, "min_off_s": 1.0},
            "sessions": {"settle_s": 1.0},
            "sim": {"chargers": [{"bay": BAY, "profile": "lead48", "soc": 0.3}]},
        },
        edit=low_cut,
    )


def pile_fault(rig: Rig) -> int:
    """The pile's fault code at the bay as the daemon last read it (1: over-power latched)."""
    last = rig.daemon.controller.last
    assert last is not None
    return int(last.poll.observation.bay_fault[rig.daemon.layout.bay_index[BAY]])


async def cut_by_the_pile(rig: Rig) -> None:
    await open_sessions(rig, [BAY])
    await rig.wait_for(lambda: closed(rig), 10, "the relay closed")
    await rig.wait_for(lambda: pile_fault(rig) == 1, 15, "the pile's over-power cut")
    await rig.wait_for(lambda: rig.bay(BAY)["state"] == "fault", 5, "state fault")


async def test_a_socket_cut_twice_by_the_pile_is_critical(tmp_path: Path) -> None:
    async with running_shed(config(tmp_path)) as rig:
        seen = Seen(rig)
        rig.daemon.controller.reporters.append(seen)
        await rig.ticks(4)
        rig.sim.world.set_modified_pack(BAY, PACK_W)
        await cut_by_the_pile(rig)
        await rig.ticks(4)
        assert seen.rows == [], "one cut is no finding"
        # Staff reset the socket (the pile's latch and the core); the resident charges again.
        status, body = await rig.api("/bays/clear-fault", {"bay": BAY})
        assert (status, body) == (200, {"cleared": True})
        await rig.wait_for(lambda: pile_fault(rig) == 0, 5, "the pile's fault reset")
        await rig.ticks(int(2 / TICK_S))  # the cut session settles
        await cut_by_the_pile(rig)
        await rig.wait_for(lambda: seen.rows, 5, "a finding")
        (row,) = seen.rows
        _tick, _at, f, _closed = row
        assert (f.kind, f.severity, f.bay, f.card) == (
            Kind.REPEATED_PROTECTION_CUTS,
            Severity.CRITICAL,
            BAY,
            bay_card(BAY),
        )
        assert "2 times within" in f.seen and "(over_power, over_power; one card)" in f.seen
        j = rig.daemon.layout.bay_index[BAY]
        assert rig.core.held_out[j] and not closed(rig)
        finding = rig.bay(BAY)["finding"]
        assert (finding["kind"], finding["severity"]) == ("repeated_protection_cuts", "critical")
        assert await asyncio.to_thread(rig.daemon.writer.flush)
        with closing(ledger.connect(rig.shed.ledger_path(), create=False)) as conn:
            mark = ledger.card_flags(conn)[bay_card(BAY)]
        assert mark.reason.startswith(f"repeated_protection_cuts (critical) at {BAY}")
        # Staff clear the bay: held no more (the card's mark stays until `cards unflag`).
        status, _ = await rig.api("/bays/clear-fault", {"bay": BAY})
        assert status == 200 and not rig.core.held_out[j]
