"""Scenario files: parsing, checking against the shed, running on the simulator."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chargectl.cli import main
from chargectl.config.load import load_shed
from chargectl.sim.runner import Simulator
from chargectl.sim.scenario import ScenarioError, load_scenario, parse_scenario, parse_time
from tests.sim_physics.sheds import REPO, small_shed

SCENARIO = """\
end: 15m
events:
  - {at: 0, do: plug, bay: pile/1, profile: li48, soc: 0.3}
  - {at: 0, do: plug, bay: pile/2, profile: lead48, soc: 0.3}
  - {at: 10s, do: tap, bay: pile/1, uid: 04a1b2c3}
  - {at: 1m, do: heater, bay: pile/3, watts: 2000}
  - {at: 1m, do: hot, bay: pile/3, extra_c: 20}
  - {at: 2m, do: load, circuit: main, amps: [3.0]}
  - {at: "00:10", do: meter_frozen, device: m}
"""


def test_times() -> None:
    assert parse_time(90) == 90.0
    assert parse_time("1m30s") == 90.0
    assert parse_time("2h") == 7200.0
    assert parse_time("01:30") == 5400.0  # h:mm
    assert parse_time("00:01:30") == 90.0
    for bad in ("soon", "", True, -1, "1x"):
        with pytest.raises(ValueError):
            parse_time(bad)


def test_a_scenario_runs_on_the_simulator() -> None:
    shed = small_shed()
    sc = parse_scenario(SCENARIO, "s.yaml", shed)
    assert [e.at for e in sc.events] == [0, 0, 10, 60, 60, 120, 600] and sc.end == 900
    sim = Simulator(shed, virtual=True, scenario=sc)
    pile = sim.world.models["pile"]
    for p in (1, 2, 3):
        pile.write_holding(16 + p - 1, [1])
    sim.advance(9.0)
    assert pile.read_input(6, 1) == [0]  # no tap yet
    sim.advance(1.0)
    assert pile.read_input(6, 2) == [1, (4 << 8) | 1]  # tap_seq 1, 4-byte UID at port 1
    sim.advance(600.0 - 10.0)
    # A 2 kW heater alone warms a 10 A socket to 62 C (45 K at 10 A); on a worn contact 20 K
    # hotter it heads for 82 C and crosses 65 C after about 6 minutes: the pile cut it.
    faults = pile.read_input(48 + 2, 1)
    assert isinstance(faults, list) and faults[0] >> 8 == 2
    assert sim.world.bay_truth("pile/3")["amps"] == 0.0
    assert sim.world.truth(bays=False)["circuits"]["main"]["unmanaged_a"] == [3.0]
    assert sim.world.models["m"].frozen
    assert not sim.finished()
    sim.advance(300.0)
    assert sim.finished()
    assert [a["do"] for a in sim.player.applied] == [  # type: ignore[union-attr]
        "plug", "plug", "tap", "heater", "hot", "load", "meter_frozen",
    ]  # fmt: skip
    assert all(a["error"] is None for a in sim.player.applied)  # type: ignore[union-attr]


def test_every_problem_is_reported_with_its_line() -> None:
    text = """\
events:
  - {at: 0, do: plug, bay: pile/13}
  - {at: soon, do: tap, bay: pile/1, uid: 04a1b2c3}
  - {at: 5, do: dance}
  - {at: 5, do: heater, bay: pile/1, watts: hot}
  - {do: short, bay: pile/1}
  - {at: 5, do: load, circuit: nowhere, amps: [1]}
  - {at: 5, do: smoke, device: ghost, colour: red}
colour: blue
"""
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(text, "bad.yaml", small_shed())
    problems = exc.value.problems
    assert "bad.yaml:9: colour: unknown key (known: end, events)" in problems
    assert "bad.yaml:2: events[0].bay: no bay 'pile/13' in the shed" in problems
    assert any(p.startswith("bad.yaml:3: events[1].at: a time expected") for p in problems)
    assert any(p.startswith("bad.yaml:4: events[2].do: unknown action 'dance'") for p in problems)
    assert any(p.startswith("bad.yaml:5: events[3].watts: number") for p in problems)
    assert "bad.yaml:6: events[4].at: required" in problems
    assert "bad.yaml:7: events[5].circuit: no circuit 'nowhere' in the shed" in problems
    assert any("events[6]: unknown parameter(s) colour" in p for p in problems)
    assert len(problems) == 8


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty scenario"), ("events: [", "not valid YAML"), ("- 1", "a mapping with 'events'")],
)
def test_broken_files(text: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(text, "x.yaml")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "none.yaml")


def test_shipped_example_scenario_checks_against_the_campus_shed() -> None:
    shed = load_shed(REPO / "deploy" / "examples" / "campus.yaml")
    sc = load_scenario(Path(__file__).with_name("campus-evening.yaml"), shed)
    assert sc.events and sc.end is not None


CONFIG = """\
shed: {name: t, phases: 1, voltage_v: 220}
circuits:
  - {id: main, limit_a: 30, breaker: {rating_a: 32, curve: C}, meter: m}
buses:
  - {id: line, tcp: {host: 127.0.0.1, port: 0}}
devices:
  - {id: pile, kind: pile, bus: line, unit: 1, circuit: main, phase: 1, ports: 4}
  - {id: m, kind: sdm120, bus: line, unit: 10, phase: 1}
sim:
  control_api: {host: 127.0.0.1, port: 0}
"""


def test_chargectl_sim_command_runs_a_scenario_to_its_end(tmp_path: Path) -> None:
    cfg = tmp_path / "shed.yaml"
    cfg.write_text(CONFIG)
    sc = tmp_path / "sc.yaml"
    sc.write_text("end: 30\nevents:\n  - {at: 1, do: plug, bay: pile/1, profile: li48}\n")
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "chargectl.cli", "sim", str(cfg), "--scenario", str(sc),
         "--speed", "100", "--no-view"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    ready = json.loads(proc.stdout.splitlines()[0])
    assert ready["ready"] and ready["buses"]["line"].startswith("127.0.0.1:")
    assert "stopped at t=30.0 s, 0 breaker trip(s)" in proc.stderr
    assert time.monotonic() - t0 < 30  # 30 simulated seconds at x100


def test_chargectl_sim_bad_input_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "shed.yaml"
    cfg.write_text(CONFIG)
    sc = tmp_path / "sc.yaml"
    sc.write_text("events:\n  - {at: 1, do: plug, bay: pile/9}\n")
    assert main(["sim", str(cfg), "--scenario", str(sc)]) == 2
    assert "events[0].bay: no bay 'pile/9'" in capsys.readouterr().err
    assert main(["sim", str(cfg), "--speed", "0"]) == 2
    assert main(["sim", str(tmp_path / "missing.yaml")]) == 2


def test_chargectl_sim_ends_cleanly_on_sigterm(tmp_path: Path) -> None:
    cfg = tmp_path / "shed.yaml"
    cfg.write_text(CONFIG)
    proc = subprocess.Popen(
        [sys.executable, "-m", "chargectl.cli", "sim", str(cfg), "--no-view"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        t0 = time.monotonic()
        line = proc.stdout.readline()
        assert json.loads(line)["ready"]
        assert time.monotonic() - t0 < 5.0  # start-up (the target is well under 2 s)
        proc.terminate()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
