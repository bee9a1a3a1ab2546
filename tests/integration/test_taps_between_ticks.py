"""Taps at the cadence the pile page asks for, whatever the tick (issue 9): a pile holds only
its latest tap, so with a 2 s tick the daemon reads the card readers between ticks."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.rig import bay_card, running_shed, write_config


async def test_taps_closer_than_a_tick_are_all_seen(tmp_path: Path) -> None:
    bays = [f"pile-a/{p}" for p in range(1, 5)]
    cfg = write_config(
        tmp_path,
        "small",
        overrides={
            "control": {"tick_s": 2.0, "watchdog_s": 10},
            "sim": {"chargers": [{"bay": b, "profile": "li48", "soc": 0.3} for b in bays]},
        },
    )
    async with running_shed(cfg) as rig:
        ticks = rig.daemon.controller.ticks
        for bay in bays:  # four residents, 0.6 s apart: two or three taps inside one tick
            rig.tap(bay, bay_card(bay))
            await asyncio.sleep(0.6)
        assert rig.daemon.controller.ticks - ticks <= 2
        await rig.wait_for(
            lambda: all(rig.bay(b)["state"] in ("charging", "waiting") for b in bays),
            8,
            "a session at every bay",
        )
