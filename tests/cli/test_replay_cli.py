"""`chargectl replay` and `chargectl capacity` from the command line: the report, the side by
side table, the picture and trace files, and a clear refusal (exit 2) of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chargectl.cli import main
from chargectl.commands import replay as replay_command
from chargectl.replay import runner
from chargectl.replay.report import report
from chargectl.replay.trace import read_trace

pytestmark = pytest.mark.timeout(300)

SMALL = Path(__file__).resolve().parents[2] / "deploy/examples/small.yaml"
SCENARIO = f"""\
shed: {SMALL}
start: "18:00"
duration: 3m
seed: 3
arrivals:
  rate: [{{at: "00:00", per_hour: 240}}]
  mix: [{{profile: li72, share: 1, soc: [0.1, 0.3]}}]
unmanaged:
  - circuit: main
    profile: [{{at: "00:00", amps: [20.0]}}]
"""


@pytest.fixture
def scenario_file(tmp_path: Path) -> str:
    path = tmp_path / "short.yaml"
    path.write_text(SCENARIO)
    return str(path)


def call(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_the_command_knows_every_policy_the_runner_has() -> None:
    assert replay_command.POLICY_NAMES == runner.POLICY_NAMES


def test_one_replay_as_json(scenario_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = call(["replay", scenario_file, "--json"], capsys)
    assert code == 0
    rep = json.loads(out)
    for key in (
        "scenario", "policy", "seed", "simulated_s", "wall_s", "speedup", "ticks", "trips",
        "overload_s", "max_load_ratio", "breaker_peak_thermal", "energy_delivered_kwh",
        "energy_bound_kwh", "served_ratio", "sessions", "sessions_full", "wait_p50_s",
        "wait_p95_s", "car_wait_p95_s", "jain_fairness", "switches_per_session_p95",
        "idle_capacity_while_waiting", "ledger_mismatch_wh",
    ):  # fmt: skip
        assert key in rep, key
    assert rep["policy"] == "chargectl"
    assert rep["scenario"] == "short"
    assert rep["ticks"] == 180
    assert rep["sessions"] > 0
    assert rep["trips"] == 0


def test_compare_with_a_picture_and_traces(
    scenario_file: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png, traces = tmp_path / "day.png", tmp_path / "trace"
    argv = ["replay", scenario_file, "--compare", "--json", "--plot", str(png)]
    code, out, _ = call([*argv, "--trace", str(traces), "--seed", "4"], capsys)
    assert code == 0
    reports = json.loads(out)
    assert [r["policy"] for r in reports] == list(runner.POLICY_NAMES)
    assert {r["seed"] for r in reports} == {4}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for rep in reports:
        # Every figure of the report comes back from the policy's trace files.
        again = report(read_trace(traces / rep["policy"]))
        assert json.loads(json.dumps(again)) == rep
    # Without a controller the 20 A of unmanaged load and the chargers go over the limit.
    by_policy = {r["policy"]: r for r in reports}
    assert by_policy["uncontrolled"]["max_load_ratio"] > 1.0
    assert by_policy["chargectl"]["max_load_ratio"] <= 1.0


def test_the_table_on_a_terminal_less_run(
    scenario_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = call(["replay", scenario_file, "--policy", "fcfs"], capsys)
    assert code == 0
    assert "served_ratio" in out and "fcfs" in out
    assert err == ""  # no progress bar when stderr is not a terminal


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--plot", "/no/such/folder/x.png"], "--plot /no/such/folder/x.png: no folder"),
        (["--trace", "{file}"], "exists and is not a directory"),
        (["--plot", "{dir}"], "is a directory"),
        (["--seed", "-1"], "--seed -1: must be within"),
    ],
)
def test_bad_arguments_are_refused(
    scenario_file: str,
    tmp_path: Path,
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [a.format(file=scenario_file, dir=tmp_path) for a in argv]
    code, out, err = call(["replay", scenario_file, *argv], capsys)
    assert code == 2
    assert message in err
    assert out == ""


def test_a_bad_scenario_is_refused_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(SCENARIO.replace("duration: 3m", "duration: soon"))
    code, out, err = call(["replay", str(path)], capsys)
    assert code == 2
    assert f"{path}:3: duration:" in err
    assert out == ""


def test_capacity_over_two_counts(scenario_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["capacity", scenario_file, "--sockets", "12:24:12", "--seeds", "1", "--workers", "2"]
    code, out, _ = call([*argv, "--json"], capsys)
    assert code == 0
    result = json.loads(out)
    assert [r["sockets"] for r in result["rows"]] == [12, 24]
    assert all(r["trips_max"] == 0 for r in result["rows"])
    assert "largest_ok" in result


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sockets", "24:12:1"], "--sockets"),
        (["--sockets", "x"], "--sockets"),
        (["--sockets", "12", "--seeds", "0"], "--seeds 0"),
        (["--sockets", "12", "--workers", "0"], "--workers 0"),
    ],
)
def test_capacity_refuses_bad_arguments(
    scenario_file: str, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = call(["capacity", scenario_file, *argv], capsys)
    assert code == 2
    assert message in err
