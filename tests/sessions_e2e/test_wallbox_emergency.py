"""A car at the wallbox: tap, charge, unplug ends the session; and the smoke alarm ends every
session in the shed (sockets and the wallbox) until the staff clear it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.rig import CARD, OTHER_CARD, running_shed
from tests.sessions_e2e.shed import (
    AVAILABLE,
    CHARGING,
    FAULT,
    REJECTED,
    SPEED,
    WALLBOX,
    check_energy,
    closed,
    counter,
    e2e_config,
    taps,
    until_charging,
    until_ended,
    until_lamp,
    until_running,
)

pytestmark = pytest.mark.timeout(120)


async def test_wallbox_session_ends_when_the_car_is_unplugged(tmp_path: Path) -> None:
    cfg = e2e_config(tmp_path)
    async with running_shed(cfg, speed=SPEED) as rig:
        world = rig.sim.world
        world.plug_car(WALLBOX, max_a=16.0, phases=1, soc=0.4, capacity_kwh=40.0)
        await rig.ticks(2)
        assert not closed(rig.sim, WALLBOX), "no session: the wallbox offers nothing"
        start = counter(rig.sim, WALLBOX)
        rig.tap(WALLBOX, CARD)
        row = await until_running(rig, WALLBOX)
        await until_charging(rig, WALLBOX)
        await until_lamp(rig, WALLBOX, CHARGING, 5)
        # A car draws kilowatts: let tens of Wh flow.
        await rig.wait_for(lambda: counter(rig.sim, WALLBOX) >= start + 20, 30, "20 Wh")
        # A car's kilowatts are no fire-risk sign: the watch is the e-bike sockets'.
        assert not rig.core.held_out.any()

        world.unplug(WALLBOX)
        ended = await until_ended(rig, WALLBOX, 10)
        assert (ended.id, ended.reason) == (row.id, "unplugged")
        await until_lamp(rig, WALLBOX, AVAILABLE, 5)
        assert await check_energy(rig, ended, start) >= 20


async def test_smoke_ends_every_session_until_the_staff_clear_it(tmp_path: Path) -> None:
    sockets = ["pile-a/1", "pile-a/2"]
    cfg = e2e_config(
        tmp_path,
        chargers=[
            {"bay": sockets[0], "profile": "li48", "soc": 0.3},
            {"bay": sockets[1], "profile": "lead48", "soc": 0.3},
        ],
        cars=[{"device": WALLBOX, "max_a": 16, "phases": 1, "soc": 0.4}],
    )
    third = "04ABCDEF"
    async with running_shed(cfg, speed=SPEED, cards=[CARD, OTHER_CARD, third]) as rig:
        path = rig.shed.ledger_path()
        bays = [*sockets, WALLBOX]
        start = {b: counter(rig.sim, b) for b in bays}
        rows = {}
        for bay, card in zip(bays, [CARD, OTHER_CARD, third], strict=True):
            rig.tap(bay, card)
            rows[bay] = await until_running(rig, bay)
        for bay in bays:
            await until_charging(rig, bay)

        rig.sim.world.set_pile_inputs("pile-a", smoke=True)
        ended = {b: await until_ended(rig, b, 10) for b in bays}
        assert {b: (e.id, e.reason) for b, e in ended.items()} == {
            b: (rows[b].id, "emergency") for b in bays
        }
        for bay in bays:
            await until_lamp(rig, bay, FAULT, 5)
        await asyncio.gather(*(check_energy(rig, ended[b], start[b]) for b in bays))

        # A tap during the alarm is refused; the alarm stays latched after the smoke clears.
        rig.tap(sockets[0], CARD)
        await until_lamp(rig, sockets[0], REJECTED, 5)
        await until_lamp(rig, sockets[0], FAULT, 5)
        rig.sim.world.set_pile_inputs("pile-a", smoke=False)
        await rig.ticks(8)
        assert all(rig.bay(b)["lamp"] == FAULT for b in bays)
        assert rig.status()["alarm"] is not None

        code, body = await rig.api("/alarm/clear", {})
        assert (code, body) == (200, {"cleared": True})
        for bay in bays:
            await until_lamp(rig, bay, AVAILABLE, 5)
        assert [t.result for t in taps(path)][-1] == "unavailable"
        assert not any(closed(rig.sim, b) for b in bays)
