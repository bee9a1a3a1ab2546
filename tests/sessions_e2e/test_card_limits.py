"""Cards over real Modbus: a runaway tap sequence at one socket (the pile's tap counter running
on with the same card) opens one session, not seven; one card runs one socket session at a time
(a clone at another socket is refused: red blink, nothing closes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.rig import CARD, OTHER_CARD, running_shed
from tests.sessions_e2e.shed import (
    AVAILABLE,
    REJECTED,
    SPEED,
    closed,
    e2e_config,
    sessions,
    taps,
    until_charging,
    until_lamp,
    until_running,
)

pytestmark = pytest.mark.timeout(120)

BAY, CLONE_BAY, OTHER_BAY = "pile-a/1", "pile-a/2", "pile-a/3"


async def test_a_runaway_tap_sequence_opens_one_session(tmp_path: Path) -> None:
    cfg = e2e_config(
        tmp_path,
        sessions={"tap_debounce_s": 5.0},
        chargers=[{"bay": BAY, "profile": "li72", "soc": 0.3}],
    )
    async with running_shed(cfg, speed=SPEED) as rig:
        mgr = rig.daemon.sessions
        for seen in range(1, 8):  # each tap once the daemon has read the one before
            rig.tap(BAY, CARD)
            await rig.wait_for(
                lambda seen=seen: (
                    sum(mgr.readout().taps_total.values()) + mgr.readout().taps_repeated >= seen
                ),
                5,
                f"tap {seen} read",
            )
        row = await until_running(rig, BAY)
        await until_charging(rig, BAY)
        path = rig.shed.ledger_path()
        assert [r.id for r in sessions(path)] == [row.id] and row.end is None
        assert mgr.readout().taps_total == {"started": 1}
        assert mgr.readout().taps_repeated == 6
        await rig.wait_for(lambda: len(taps(path)) == 1, 5, "the tap recorded")
        assert [t.result for t in taps(path)] == ["started"]


async def test_one_card_one_socket_session(tmp_path: Path) -> None:
    cfg = e2e_config(
        tmp_path,
        chargers=[
            {"bay": BAY, "profile": "li72", "soc": 0.3},
            {"bay": CLONE_BAY, "profile": "li48", "soc": 0.3},
            {"bay": OTHER_BAY, "profile": "li48", "soc": 0.3},
        ],
    )
    async with running_shed(cfg, speed=SPEED) as rig:
        path = rig.shed.ledger_path()
        rig.tap(BAY, CARD)
        await until_running(rig, BAY)
        await until_charging(rig, BAY)
        rig.tap(CLONE_BAY, CARD)  # the same UID at another socket
        await until_lamp(rig, CLONE_BAY, REJECTED, 5)
        await until_lamp(rig, CLONE_BAY, AVAILABLE, 5)
        assert not closed(rig.sim, CLONE_BAY)
        rig.tap(OTHER_BAY, OTHER_CARD)  # another card is not held back
        await until_running(rig, OTHER_BAY)
        await rig.wait_for(lambda: len(taps(path)) == 3, 5, "three taps recorded")
        assert [(t.bay, t.result) for t in taps(path)] == [
            (BAY, "started"),
            (CLONE_BAY, "limit"),
            (OTHER_BAY, "started"),
        ]
