"""Sessions that end by themselves, against the simulator over real Modbus TCP: the charger
unplugged, no load, the pile's over-power and over-temperature cut-offs, a blown port fuse, a
welded relay, the maximum duration and a battery that is really full. Every ended session's
ledger energy is its bay's counter delta."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.rig import CARD, OTHER_CARD, running_shed
from tests.sessions_e2e.shed import (
    AVAILABLE,
    COMPLETE,
    FAULT,
    SPEED,
    WAITING,
    check_energy,
    closed,
    counter,
    e2e_config,
    until_charging,
    until_ended,
    until_lamp,
    until_running,
)

pytestmark = pytest.mark.timeout(120)

UNPLUGGED, NO_LOAD, OVER_POWER, OVER_TEMP, SHORT = (f"pile-a/{p}" for p in (2, 3, 4, 5, 6))


async def test_rules_end_sessions_by_themselves(tmp_path: Path) -> None:
    cfg = e2e_config(
        tmp_path,
        sessions={"unplugged_window_s": 4.0, "no_load_s": 3.0},
        chargers=[
            {"bay": UNPLUGGED, "profile": "lead48", "soc": 0.3},
            {"bay": OVER_TEMP, "profile": "li48", "soc": 0.3},
            {"bay": SHORT, "profile": "li60", "soc": 0.3},
        ],  # NO_LOAD has nothing plugged; OVER_POWER gets a heater
    )
    async with running_shed(cfg, speed=SPEED, cards=[CARD, OTHER_CARD, *_cards(5)]) as rig:
        world = rig.sim.world
        world.set_appliance(OVER_POWER, 3000.0)  # over the pile's 2000 W cut-off
        bays = [UNPLUGGED, NO_LOAD, OVER_POWER, OVER_TEMP, SHORT]
        start = {b: counter(rig.sim, b) for b in bays}
        rows = {}
        for bay, card in zip(bays, _cards(5), strict=True):
            rig.tap(bay, card)  # the pile holds only the latest tap: one at a time
            rows[bay] = await until_running(rig, bay)
        for b in (UNPLUGGED, OVER_TEMP, SHORT):
            await until_charging(rig, b)
        await rig.wait_for(
            lambda: all(counter(rig.sim, b) > start[b] for b in (UNPLUGGED, OVER_TEMP, SHORT)),
            20,
            "every charger's counter moving",
        )
        world.unplug(UNPLUGGED)
        world.set_socket_hot(OVER_TEMP, 1000.0)  # heads far past the pile's 65 C cut-off
        world.set_short(SHORT)

        want = {
            UNPLUGGED: ("unplugged", AVAILABLE),
            NO_LOAD: ("no_load", AVAILABLE),
            OVER_POWER: ("over_power", FAULT),
            OVER_TEMP: ("over_temp", FAULT),
            SHORT: ("fault", FAULT),
        }
        ended = {b: await until_ended(rig, b, 20) for b in bays}
        assert {b: e.reason for b, e in ended.items()} == {b: r for b, (r, _) in want.items()}
        assert all(ended[b].id == rows[b].id for b in bays)
        for bay, (_, lamp_value) in want.items():
            await until_lamp(rig, bay, lamp_value, 5)
        energies = await asyncio.gather(*(check_energy(rig, ended[b], start[b]) for b in bays))
        got = dict(zip(bays, energies, strict=True))
        assert got[NO_LOAD] == 0
        assert got[UNPLUGGED] > 0
        assert got[OVER_TEMP] > 0


async def test_welded_relay_of_a_waiting_session_is_a_fault(tmp_path: Path) -> None:
    """With no capacity left the session waits (yellow) with its relay open; when the relay
    welds, current flows through it: the pile reports fault 3 and the session ends `fault`."""
    bay = "pile-a/7"
    cfg = e2e_config(tmp_path, chargers=[{"bay": bay, "profile": "li48", "soc": 0.3}])
    async with running_shed(cfg, speed=SPEED) as rig:
        world = rig.sim.world
        world.set_load_step("main", [27.0])  # 30 A planned at most; the base load is 1.5 A
        await rig.ticks(12)  # the meter refreshes once a second
        start = counter(rig.sim, bay)
        rig.tap(bay, CARD)
        row = await until_running(rig, bay)
        await until_lamp(rig, bay, WAITING, 5)
        await asyncio.sleep(1.0)
        assert not closed(rig.sim, bay), "no room: the relay must stay open"
        assert rig.bay(bay)["state"] == "waiting"

        world.set_welded(bay, True)
        ended = await until_ended(rig, bay)
        assert (ended.id, ended.reason) == (row.id, "fault")
        await until_lamp(rig, bay, FAULT, 5)
        assert rig.bay(bay)["welded"]
        world.set_load_step("main", [0.0])
        world.set_welded(bay, False)
        # The welded contact let the charger draw: that energy is the session's.
        assert await check_energy(rig, ended, start) >= 0


async def test_max_duration(tmp_path: Path) -> None:
    bay = "pile-a/8"
    cfg = e2e_config(
        tmp_path,
        sessions={"max_duration_s": 4.0},
        chargers=[{"bay": bay, "profile": "lead60", "soc": 0.2}],
    )
    async with running_shed(cfg, speed=SPEED) as rig:
        start = counter(rig.sim, bay)
        rig.tap(bay, CARD)
        row = await until_running(rig, bay)
        await until_charging(rig, bay)
        ended = await until_ended(rig, bay, 10)
        assert (ended.id, ended.reason) == (row.id, "max_duration")
        assert 3.5 <= ended.end - ended.start <= 6.0, ended.end - ended.start  # type: ignore[operator]
        await until_lamp(rig, bay, AVAILABLE, 5)
        assert await check_energy(rig, ended, start) > 0


async def test_full_battery_ends_full_then_lamp_shows_complete(tmp_path: Path) -> None:
    """A li48 pack near the end of its constant-voltage taper: its charger restarts in
    constant current when the relay closes (30 s), tapers again within minutes, its power
    stays under the full threshold (20 W) for full_hold_s while it drops to float, then the
    top-up runs and the session ends `full`. The simulator runs 60x: the taper takes
    seconds."""
    bay = "pile-a/9"
    cfg = e2e_config(
        tmp_path,
        # The power rules judge averages over unplugged_window_s / 10 (at most 10 s).
        sessions={"full_hold_s": 5.0, "full_topup_s": 2.0, "unplugged_window_s": 30.0},
        control={"watchdog_s": 300},  # simulated seconds: 60x faster than the daemon's
        chargers=[{"bay": bay, "profile": "li48", "soc": 0.9935}],
    )
    async with running_shed(cfg, speed=60.0) as rig:
        start = counter(rig.sim, bay)
        rig.tap(bay, CARD)
        row = await until_running(rig, bay)
        await until_charging(rig, bay)
        assert rig.sim.world.bay_truth(bay)["stage"] in ("cc", "cv")  # restarted at the close
        ended = await until_ended(rig, bay, 40)
        assert (ended.id, ended.reason) == (row.id, "full")
        assert rig.sim.world.bay_truth(bay)["stage"] == "float", "full before the float stage"
        assert ended.end - ended.start >= 6.5  # type: ignore[operator]
        await until_lamp(rig, bay, COMPLETE, 5)
        assert not closed(rig.sim, bay)
        assert await check_energy(rig, ended, start) >= 0


def _cards(n: int) -> list[str]:
    return [f"0477{i:04X}" for i in range(1, n + 1)]
