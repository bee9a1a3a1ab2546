"""The daemon against the simulator over real Modbus TCP: a tap starts a session, the relay
closes, the staff API stops it, and the shed stays under its limit throughout."""

from __future__ import annotations

from pathlib import Path

from tests.rig import CARD, running_shed, write_config


async def test_tap_charges_and_staff_stop_ends_it(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path,
        "small",
        overrides={
            "control": {"tick_s": 0.25},
            "sim": {"chargers": [{"bay": "pile-a/1", "profile": "li48", "soc": 0.3}]},
        },
    )
    async with running_shed(cfg) as rig:
        rig.tap("pile-a/1", CARD)
        await rig.wait_for(lambda: rig.bay("pile-a/1")["state"] == "charging", 10, "charging")
        await rig.wait_for(lambda: rig.truth()["bays_charging"] == 1, 10, "current flows")
        assert rig.bay("pile-a/1")["lamp"] in (6, 2)  # "accepted" for a few seconds, then blue
        await rig.wait_for(lambda: rig.bay("pile-a/1")["lamp"] == 2, 10, "the charging lamp")
        code, body = await rig.api("/sessions/stop", {"bay": "pile-a/1"})
        assert (code, body) == (200, {"stopped": True})
        await rig.wait_for(lambda: rig.bay("pile-a/1")["state"] == "idle", 10, "idle")
        await rig.wait_for(lambda: rig.truth()["bays_charging"] == 0, 10, "current stops")
        code, body = await rig.api("/sessions/stop", {"bay": "nowhere/9"})
        assert code == 404
        circuit = rig.truth()["circuits"]["main"]
        assert circuit["breaker"]["closed"]
        assert not rig.truth()["trips"]
