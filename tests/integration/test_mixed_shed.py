"""A shed of mixed models over real Modbus TCP: the contract pile, a VoltBay V10 (the second
pile family: relays in coils), an Alfen NG9xx (a real wallbox's published map) and a Chint
DTSU666 meter. It passes `chargectl check`, `chargectl sim` serves every model as its
template says, and the daemon charges sockets on both pile families and the wallbox and
sheds an overload, judged on the simulator's true currents. A model of one's own is one
template file in a directory the config or the command line names.

The Alfen's socket unit has no card reader (its template has no tap): its session is started
as a reader beside the box would start it, through the daemon's session link.
"""

from __future__ import annotations

import asyncio
import json
import signal
import struct
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from pymodbus.client import AsyncModbusTcpClient

from chargectl.cli import main
from chargectl.config.load import load_shed
from chargectl.drivers.template import shipped
from chargectl.runtime.contracts import Tap
from tests.integration.helpers import (
    CHARGECTL,
    _env,
    http_json,
    open_sessions,
    trace_truth,
    wait_until,
)
from tests.rig import Rig, add_cards, bay_card, free_port, running_shed

pytestmark = pytest.mark.timeout(180)

TICK_S = 0.25
LIMIT_A = 32.0
# The meter's refresh, a tick, a simulator step and scheduling on a busy 2-core box.
REACTION_S = 1.0 + TICK_S + 1.0
SOCKETS = ["pa/1", "pa/2", "vb/1", "vb/2", "vb/3", "vb/4"]


def mixed_config(tmp_path: Path, **extra: Any) -> Path:
    data: dict[str, Any] = {
        "shed": {"name": "mixed", "phases": 3, "voltage_v": 230},
        "circuits": [
            {
                "id": "main",
                "limit_a": LIMIT_A,
                "breaker": {"rating_a": 40, "curve": "C"},
                "meter": "m-main",
            }
        ],
        "buses": [{"id": "line-1", "tcp": {"host": "127.0.0.1", "port": free_port()}}],
        "devices": [
            {
                "id": "pa",
                "kind": "pile",
                "bus": "line-1",
                "unit": 1,
                "circuit": "main",
                "phase": 1,
                "ports": 4,
            },
            {
                "id": "vb",
                "kind": "voltbay10",
                "bus": "line-1",
                "unit": 2,
                "circuit": "main",
                "phase": 2,
                "ports": 10,
                "port_power_limit_w": 1000,
            },
            {
                "id": "ev",
                "kind": "alfen_ng9xx",
                "bus": "line-1",
                "unit": 3,
                "circuit": "main",
                "phases": [1, 2, 3],
                "max_current_a": 16,
            },
            {"id": "m-main", "kind": "dtsu666", "bus": "line-1", "unit": 10, "phases": [1, 2, 3]},
        ],
        "control": {"tick_s": TICK_S},
        "ledger": str(tmp_path / "ledger.db"),
        "metrics": {"host": "127.0.0.1", "port": free_port()},
        "api": {"host": "127.0.0.1", "port": free_port()},
        "sim": {
            "control_api": {"host": "127.0.0.1", "port": free_port()},
            # A little noise: a meter whose readings never move is taken for a frozen one.
            "base_load": [{"circuit": "main", "amps": [1.0, 1.0, 1.0], "noise_a": 0.2}],
            "chargers": [{"bay": b, "profile": "li72", "soc": 0.3} for b in SOCKETS],
            "cars": [{"device": "ev", "max_a": 16, "phases": 3, "soc": 0.3}],
        },
    }
    data.update(extra)
    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def f32(words: list[int]) -> float:
    return float(struct.unpack(">f", struct.pack(">HH", *words))[0])


def check(*args: str) -> int:
    return main(["check", *args])


# --------------------------------------------------------------------------- check and sim
def test_the_mixed_shed_passes_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check(str(mixed_config(tmp_path))) == 0, capsys.readouterr()


class Sim:
    """`chargectl sim CONFIG [ARGS]` in a subprocess, until `stop()`."""

    def __init__(self, config: Path, log: Path, *args: str) -> None:
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            [CHARGECTL, "sim", str(config), "--no-view", *args],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=_env(),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"chargectl sim did not start: {log.read_text()}")
        self.ready = json.loads(line)

    def api(self, path: str, body: Any = None) -> Any:
        return http_json(str(self.ready["control_api"]) + path, body)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(20)
        self._log.close()
        return rc


async def test_chargectl_sim_serves_every_model_as_its_template_says(tmp_path: Path) -> None:
    sim = Sim(mixed_config(tmp_path), tmp_path / "sim.log")
    try:
        devices = sim.api("/devices")
        assert {d: (v["kind"], v["role"]) for d, v in devices.items()} == {
            "pa": ("pile", "pile"),
            "vb": ("voltbay10", "pile"),
            "ev": ("alfen_ng9xx", "evse"),
            "m-main": ("dtsu666", "meter"),
        }
        host, port = sim.ready["buses"]["line-1"].split(":")
        client = AsyncModbusTcpClient(host, port=int(port), timeout=2.0, retries=0)
        assert await client.connect()
        try:
            vb, alfen, dtsu = (shipped()[k].fields for k in ("voltbay10", "alfen_ng9xx", "dtsu666"))
            rr = await client.read_input_registers(0, count=3, device_id=1)
            assert rr.registers == [0x4350, 1, 4]  # the contract pile
            rr = await client.read_input_registers(vb["model"].address, count=1, device_id=2)
            assert rr.registers == [vb["model"].equals]
            rr = await client.write_coil(vb["relay"].address + 2, True, device_id=2)
            assert not rr.isError(), rr
            cp = alfen["cp_state"].address
            for _ in range(40):  # the world's first steps see the car plugged in
                rr = await client.read_holding_registers(cp, count=1, device_id=3)
                if rr.registers != [ord("A") << 8]:
                    break
                await asyncio.sleep(0.05)
            assert rr.registers == [ord("B") << 8]  # a car, no offer
            freq = dtsu["frequency"]
            rr = await client.read_holding_registers(freq.address, count=2, device_id=10)
            assert f32(rr.registers) * freq.scale == pytest.approx(50.0)
        finally:
            client.close()
        assert sim.api("/devices/vb")["snapshot"]["contact_closed"][2] is True
        sim.api("/action", {"do": "short", "bay": "vb/3"})
        assert sim.api("/devices/vb")["snapshot"]["faults"][2] == 4  # short, served as its bit
        sim.api("/action", {"do": "plug", "bay": "ev", "max_a": 32, "phases": 1})
        assert sim.api("/truth")["wallboxes"]["ev"]["car"]["phases"] == 1
    finally:
        assert sim.stop() == 0


# --------------------------------------------------------------------------- the daemon
def start_wallbox_session(rig: Rig, bay: str) -> None:
    """A card at a reader beside a wallbox whose Modbus unit has none (the Alfen's)."""
    d = rig.daemon
    d.link.on_tap(Tap(bay, bay_card(bay)), d.clock.now(), d.clock.wall())


async def test_the_daemon_charges_both_pile_families_and_the_alfen_and_sheds_an_overload(
    tmp_path: Path,
) -> None:
    async with running_shed(mixed_config(tmp_path)) as rig:
        await open_sessions(rig, SOCKETS)
        start_wallbox_session(rig, "ev")
        await rig.wait_for(lambda: rig.bay("ev")["state"] == "charging", 10, "ev charging")
        await rig.wait_for(
            lambda: min(rig.truth()["wallboxes"]["ev"]["amps"]) >= 6.0, 15, "the car draws"
        )
        truth = rig.truth(bays=True)
        for bay in SOCKETS:
            assert truth["bays"][bay]["closed"] and truth["bays"][bay]["amps"] > 1.0, bay
        # What reached the devices, in their own registers: the VoltBay's relay coils, the
        # Alfen's float setpoint.
        vb = rig.sim.world.models["vb"]
        assert vb.read_coils(shipped()["voltbay10"].fields["relay"].address, 4) == [1] * 4
        setpoint = rig.sim.world.models["ev"].read_holding(1210, 2)
        assert isinstance(setpoint, list) and f32(setpoint) >= 6.0

        with trace_truth(rig) as trace:
            l2 = rig.truth()["circuits"]["main"]["amps"][1]
            step = LIMIT_A - l2 + 6.0  # 6 A over the limit on L2 (VoltBay, car, load)
            t0 = rig.sim.world.now
            rig.sim.world.set_load_step("main", [0.0, step, 0.0])
            await rig.ticks(int((REACTION_S + 3.0) / TICK_S))
        t, amps = trace.circuit_without_inrush("main", t0)
        over = amps[:, 1] > LIMIT_A
        assert over.any(), "the step must push L2 over its limit"
        first = int(np.argmax(over))
        settled = t >= t[first] + REACTION_S
        assert not over[settled].any(), f"L2 still over {LIMIT_A} A {REACTION_S} s on"
        truth = rig.truth(bays=True)
        assert truth["trips"] == []
        l2_load = truth["wallboxes"]["ev"]["amps"][1] + sum(
            truth["bays"][f"vb/{p}"]["amps"] for p in range(1, 5)
        )
        assert l2_load <= LIMIT_A - step + 0.5  # what L2 leaves after the step
        assert all(truth["bays"][b]["closed"] for b in ("pa/1", "pa/2"))  # L1 keeps charging


# --------------------------------------------------------------------------- a new model
ACME8 = """\
# ACME P8: an 8-socket e-bike pile of a made-up brand, described by one file (a test).
kind: acme8
role: pile
description: ACME P8, 8 sockets
source: "tests/integration/test_mixed_shed.py (a model that exists only here)"
ports: 8
word_order: big
max_gap: 0
fields:
  model: {table: input, address: 0, equals: 0x4138}
  port_count: {table: input, address: 1, equals: 8}
  status: {table: input, address: 2, bits: {failsafe: 0, estop: 1}}
  tap: {table: input, address: 3}
  port_current: {table: input, address: 100, per_port: true, stride: 2, type: u32, scale: 0.001}
  port_state:
    table: input
    address: 200
    per_port: true
    bits: {relay_closed: 15, load_present: 14}
    code_bits: [0, 7]
    codes: {0: none, 17: over_power, 18: over_temp, 19: welded, 20: short}
  port_energy: {table: input, address: 300, type: u32, per_port: true, stride: 2, scale: 100}
  watchdog_timeout: {table: holding, address: 10}
  heartbeat: {table: holding, address: 11}
  failsafe_mask: {table: holding, address: 12, type: u16}
  port_power_limit: {table: holding, address: 13, min: 100, max: 2500}
  fault_reset: {table: holding, address: 14, special: {all: 255}}
  relay: {table: holding, address: 50, per_port: true}
"""


def acme_config(tmp_path: Path, *, in_config: bool) -> tuple[Path, Path]:
    templates = tmp_path / "my-templates"
    templates.mkdir()
    (templates / "acme8.yaml").write_text(ACME8, encoding="utf-8")
    extra: dict[str, Any] = {"templates": ["my-templates"]} if in_config else {}
    cfg = mixed_config(tmp_path, **extra)
    data = yaml.safe_load(cfg.read_text())
    data["devices"].append(
        {
            "id": "acme",
            "kind": "acme8",
            "bus": "line-1",
            "unit": 4,
            "circuit": "main",
            "phase": 3,
            "ports": 8,
            "port_power_limit_w": 1500,
        }
    )
    data["sim"]["chargers"] += [{"bay": f"acme/{p}", "profile": "li48", "soc": 0.3} for p in (1, 2)]
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    return cfg, templates


def test_a_new_model_needs_its_template_and_nothing_else(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, templates = acme_config(tmp_path, in_config=False)
    assert check(str(cfg)) == 2  # unknown kind without its template
    assert "unknown device kind 'acme8'" in capsys.readouterr().err
    assert check(str(cfg), "--templates", str(templates)) == 0, capsys.readouterr()


async def test_a_new_model_from_the_config_s_templates_directory_charges(tmp_path: Path) -> None:
    cfg, _ = acme_config(tmp_path, in_config=True)
    # The rig registers a card for every bay, those of the config's own template too.
    async with running_shed(cfg) as rig:
        assert rig.sim.world.models["acme"].kind == "acme8"
        await open_sessions(rig, ["acme/1", "acme/2", "vb/1"])
        await rig.wait_for(
            lambda: all(
                rig.truth(bays=True)["bays"][b]["amps"] > 0.5 for b in ("acme/1", "acme/2")
            ),
            10,
            "both acme sockets draw",
        )
        acme = rig.sim.world.models["acme"]
        state = acme.read_input(200, 2)
        assert isinstance(state, list) and all(s >> 14 == 0b11 for s in state)  # closed, load
        assert acme.read_holding(50, 3) == [1, 1, 0]


def test_a_new_model_from_the_command_line_is_simulated_and_driven(tmp_path: Path) -> None:
    """`chargectl sim` and `chargectl run` as processes, the template given on both command
    lines; a tap at the new model's socket closes its relay in the simulator."""
    cfg, templates = acme_config(tmp_path, in_config=False)
    shed = load_shed(cfg, [str(templates)])
    add_cards(shed, [bay_card("acme/1")])
    sim = Sim(cfg, tmp_path / "sim.log", "--templates", str(templates))
    log = (tmp_path / "daemon.log").open("w")
    daemon = subprocess.Popen(
        [CHARGECTL, "run", str(cfg), "--templates", str(templates)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=_env(),
    )
    try:
        assert sim.api("/devices")["acme"]["kind"] == "acme8"
        wait_until(
            lambda: "first write at" in (tmp_path / "daemon.log").read_text(), 60, "the daemon"
        )
        sim.api("/action", {"do": "tap", "bay": "acme/1", "uid": bay_card("acme/1")})
        wait_until(lambda: sim.api("/bays/acme/1")["closed"], 15, "the acme socket's relay closes")
        wait_until(lambda: sim.api("/bays/acme/1")["amps"] > 0.5, 10, "current flows")
        assert sim.api("/devices/acme")["snapshot"]["relay_cmd"][:2] == [1, 0]
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(20) == 0
        assert "Traceback" not in (tmp_path / "daemon.log").read_text()
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(10)
        log.close()
        assert sim.stop() == 0


def test_templates_are_looked_for_where_they_are_said_to_be(tmp_path: Path) -> None:
    cfg, _ = acme_config(tmp_path, in_config=False)
    sim = subprocess.run(
        [CHARGECTL, "sim", str(cfg), "--no-view", "--templates", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=False,
    )
    assert sim.returncode == 2
    assert "nowhere" in sim.stderr and "Traceback" not in sim.stderr
