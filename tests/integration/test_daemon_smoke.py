"""The daemon against the simulator over real Modbus TCP: a tap starts a session, the relay
closes, the staff API stops it, and the shed stays under its limit throughout."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import socket
from pathlib import Path

import pytest

from chargectl.cli import main
from chargectl.config.load import load_shed
from chargectl.config.schema import ApiSettings, Endpoint
from chargectl.runtime.demo import run_demo
from tests.rig import CARD, EXAMPLES, free_port, running_shed, write_config


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
        # The snapshot's power is the socket's, in truth within the meter's rounding, and the
        # session's energy grows (the residents' page shows both).
        await rig.wait_for(lambda: rig.bay("pile-a/1")["session_wh"] > 0, 30, "energy booked")
        truth_w = rig.sim.world.bay_truth("pile-a/1")["watts"]
        assert rig.bay("pile-a/1")["power_w"] == pytest.approx(truth_w, rel=0.15)
        assert rig.bay("pile-a/2")["power_w"] in (0.0, None)
        code, body = await rig.api("/sessions/stop", {"bay": "pile-a/1"})
        assert (code, body) == (200, {"stopped": True})
        await rig.wait_for(lambda: rig.bay("pile-a/1")["state"] == "idle", 10, "idle")
        await rig.wait_for(lambda: rig.truth()["bays_charging"] == 0, 10, "current stops")
        code, body = await rig.api("/sessions/stop", {"bay": "nowhere/9"})
        assert code == 404
        circuit = rig.truth()["circuits"]["main"]
        assert circuit["breaker"]["closed"]
        assert not rig.truth()["trips"]


async def test_status_command_shows_the_running_daemon(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path, "small", overrides={"control": {"tick_s": 0.25}})
    async with running_shed(cfg) as rig:
        await rig.ticks(2)
        code = await asyncio.to_thread(main, ["status", str(cfg)])
        out = capsys.readouterr().out
        assert code == 0
        assert "shed small" in out and "main" in out and "idle 12" in out
        code = await asyncio.to_thread(main, ["status", str(cfg), "--json"])
        snap = json.loads(capsys.readouterr().out)
        assert code == 0 and len(snap["bays"]) == 12 and snap["devices"]["pile-a"] is True
    # the daemon is gone: a clear message and exit 1
    code = await asyncio.to_thread(main, ["status", str(cfg)])
    assert code == 1
    assert "no daemon answers" in capsys.readouterr().err


async def test_demo_runs_residents_through_the_campus_without_a_trip(tmp_path: Path) -> None:
    shed = load_shed(EXAMPLES / "campus.yaml")
    shed = dataclasses.replace(
        shed,
        metrics=Endpoint("127.0.0.1", free_port()),
        api=ApiSettings("127.0.0.1", free_port()),
        sim=dataclasses.replace(shed.sim, control_api=Endpoint("127.0.0.1", free_port())),
        control=dataclasses.replace(shed.control, tick_s=0.5),
    )
    out = io.StringIO()
    sim, daemon = await run_demo(
        shed, asyncio.Event(), every_s=0.2, duration_s=12.0, out=out, state_dir=tmp_path
    )
    truth = sim.world.truth(bays=False)
    assert truth["trips"] == []
    assert any(line.endswith(": started") for line in daemon.events.lines)
    states = {b["state"] for b in daemon.status.latest["bays"]}
    assert "charging" in states
    assert "highest load/limit" in out.getvalue()


async def test_systemd_hears_ready_watchdog_and_stopping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sock_path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(sock_path))
    listener.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(sock_path))
    cfg = write_config(tmp_path, "small", overrides={"control": {"tick_s": 0.25}})
    heard: list[str] = []
    try:
        async with running_shed(cfg) as rig:
            await rig.ticks(3)
            while True:
                try:
                    heard.append(listener.recv(4096).decode())
                except BlockingIOError:
                    break
        heard.append(listener.recv(4096).decode())
    finally:
        listener.close()
    assert heard[0].startswith("READY=1\nSTATUS=controlling 12 bays")
    assert heard.count("WATCHDOG=1") >= 3
    assert heard[-1] == "STOPPING=1"
