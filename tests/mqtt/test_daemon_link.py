"""The link on the real daemon against the simulator and mosquitto: a tap is published, an
MQTT command runs the daemon's own staff stop, and the state shows the shed.

The wiring here is what chargectl/app.py is asked to do (the reporter among the loop's
reporters, the link as a task, the daemon's staff coroutines as the commands); the taps and
settled sessions the other reporters drain are handed over by wrapping the drains."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from chargectl.app import Daemon, Options
from chargectl.configload import load_shed
from chargectl.control.layout import build_layout
from chargectl.mqtt import MqttLink, MqttReporter, Outbox
from chargectl.sessions.manager import EndedSession, SessionEvents, TapResult
from tests.mqtt.broker import SHED, Broker, operator
from tests.mqtt.test_link import settings
from tests.rig import CARD, running_shed, write_config

pytestmark = pytest.mark.timeout(90)


class Drained:
    """This tick's taps and settled sessions, as the daemon's reporters drained them."""

    def __init__(self) -> None:
        self.taps: list[TapResult] = []
        self.settled: list[EndedSession] = []
        self.daemon: Daemon | None = None

    def device_up(self) -> dict[str, bool]:
        assert self.daemon is not None
        return self.daemon.io.device_up()

    def attach(self, daemon: Daemon) -> None:
        self.daemon = daemon
        drain_taps, drain_events = daemon.link.drain_taps, daemon.sessions.drain_events

        def taps() -> list[TapResult]:
            self.taps = drain_taps()
            return self.taps

        def events() -> SessionEvents:
            ev = drain_events()
            self.settled = list(ev.settled)
            return ev

        daemon.link.drain_taps = taps  # type: ignore[method-assign]
        daemon.sessions.drain_events = events  # type: ignore[method-assign]


async def test_the_daemon_over_mqtt(broker: Broker, tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path,
        "small",
        overrides={
            "shed": {"name": SHED},
            "control": {"tick_s": 0.25},
            "sim": {"chargers": [{"bay": "pile-a/1", "profile": "li48", "soc": 0.3}]},
        },
    )
    box, drained = Outbox(100), Drained()
    reporter = MqttReporter(
        SHED,
        build_layout(load_shed(cfg)),  # the daemon's, which is built after the reporter
        box,
        state_interval_s=0.5,
        device_up=drained.device_up,
        taps=lambda: drained.taps,
        settled=lambda: drained.settled,
    )
    options = Options(extra_reporters=[reporter], on_started=drained.attach)
    async with operator(broker.port) as op, running_shed(cfg, options=options) as rig:
        d = rig.daemon
        link = MqttLink(
            settings(tmp_path, broker.port),
            SHED,
            box,
            commands={
                "sessions/stop": d._stop_session,
                "alarm/clear": d._clear_alarm,
                "bays/clear-fault": d._clear_fault,
            },
            clock=d.clock,
            base_dir=tmp_path,
            reconnect_base_s=0.05,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(link.run(stop), name="mqtt")
        try:
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
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)
    assert any("staff stop at pile-a/1: stopped" in line for line in d.events.lines)
