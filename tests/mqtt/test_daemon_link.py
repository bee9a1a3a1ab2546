"""The link as the daemon wires it (an `mqtt:` section in the config), against the simulator
and a real mosquitto: online on start, a tap is published, an MQTT command runs the daemon's
own staff stop, the state shows the shed, and "offline" follows a clean stop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.mqtt.broker import PASSWORDS, SHED, Broker, operator
from tests.rig import CARD, running_shed, write_config

pytestmark = pytest.mark.timeout(90)


async def test_the_daemon_over_mqtt(broker: Broker, tmp_path: Path) -> None:
    (tmp_path / "mqtt.pw").write_text(PASSWORDS[SHED] + "\n")
    cfg = write_config(
        tmp_path,
        "small",
        overrides={
            "shed": {"name": SHED},
            "control": {"tick_s": 0.25},
            "sim": {"chargers": [{"bay": "pile-a/1", "profile": "li48", "soc": 0.3}]},
            "mqtt": {
                "host": "127.0.0.1",
                "port": broker.port,
                "username": SHED,
                "password_file": "mqtt.pw",
                "keepalive_s": 5,
                "state_interval_s": 0.5,
                "reconnect_max_s": 1,
            },
        },
    )
    async with operator(broker.port) as op:
        async with running_shed(cfg) as rig:
            assert rig.daemon.mqtt is not None
            assert await op.payload(f"chargectl/{SHED}/status") == b"online"
            state = json.loads(await op.payload(f"chargectl/{SHED}/state"))
            assert state["bays"]["idle"] == 12
            assert state["devices_down"] == []
            rig.tap("pile-a/1", CARD)
            tap = json.loads(await op.payload(f"chargectl/{SHED}/events/tap"))
            assert (tap["bay"], tap["card"], tap["result"]) == ("pile-a/1", CARD, "started")
            await rig.wait_for(lambda: rig.bay("pile-a/1")["state"] == "charging", 10)
            await op.send(f"chargectl/{SHED}/cmd/sessions/stop", '{"bay": "pile-a/1", "id": 1}')
            got = json.loads(await op.payload(f"chargectl/{SHED}/cmd/result"))
            assert (got["id"], got["ok"], got["result"]) == (1, True, {"stopped": True})
            await op.send(f"chargectl/{SHED}/cmd/bays/clear-fault", '{"bay": "pile-q/1"}')
            got = json.loads(await op.payload(f"chargectl/{SHED}/cmd/result"))
            assert got["error"] == "unknown bay 'pile-q/1'"
            await rig.wait_for(lambda: rig.bay("pile-a/1")["state"] == "idle", 10)
            lines = list(rig.daemon.events.lines)
        # the daemon stopped cleanly: the retained status says so
        assert await op.payload(f"chargectl/{SHED}/status") == b"offline"
    assert any("staff stop at pile-a/1: stopped" in line for line in lines)
