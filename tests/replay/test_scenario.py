"""Scenario files: the shipped ones load; every problem of a broken one is reported at once,
as `FILE:LINE: PATH: MESSAGE`, names checked against the shed and the simulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from chargectl.cli import main
from chargectl.config.load import load_checked
from chargectl.replay.scenario import SHIPPED, ScenarioError, load_scenario, parse_scenario
from chargectl.topology import topology_of

ROOT = Path(__file__).resolve().parents[2]
CAMPUS = ROOT / "deploy" / "examples" / "campus.yaml"
SHIPPED_NAMES = ("evening-peak", "oversubscribed", "winter-lead-acid", "faults", "estate")

GOOD = f"""\
shed: {CAMPUS}
start: 18:00
duration: 2h
seed: 3
arrivals:
  rate:
    - {{at: "00:00", per_hour: 10}}
  mix:
    - {{profile: li48, share: 1, soc: [0.1, 0.5]}}
"""


def parse(text: str) -> object:
    return parse_scenario(text, Path("/tmp/s.yaml"), display_name="s.yaml")


def problems(text: str) -> list[str]:
    with pytest.raises(ScenarioError) as exc:
        parse(text)
    return [str(p) for p in exc.value.problems]


@pytest.mark.parametrize("name", SHIPPED_NAMES)
def test_every_shipped_scenario_loads(name: str) -> None:
    s = load_scenario(SHIPPED / f"{name}.yaml")
    assert s.name == name
    assert s.duration_s >= 3600
    assert s.arrivals.rate and s.arrivals.mix


def test_the_shipped_folder_holds_only_the_named_scenarios_and_the_estate_shed() -> None:
    files = {p.stem for p in SHIPPED.glob("*.yaml")}
    assert files == {*SHIPPED_NAMES, "estate-shed"}


def test_estate_shed_is_about_2000_sockets_behind_one_feeder_and_checks_clean() -> None:
    checked = load_checked(SHIPPED / "estate-shed.yaml")
    assert checked.warnings == ()
    topo = topology_of(checked.shed)
    sockets = sum(b.is_socket for b in topo.bays)
    assert 1900 <= sockets <= 2100
    roots = [c for c in topo.circuits if c.parent < 0]
    assert [c.id for c in roots] == ["feeder"]
    assert load_scenario(SHIPPED / "estate.yaml").shed.shed.name == "estate"


def test_chargectl_check_accepts_the_estate_shed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--strict", str(SHIPPED / "estate-shed.yaml")]) == 0
    assert (
        "ok: 31 circuits, 11 buses, 141 devices, 2010 bays, 0 warnings" in capsys.readouterr().out
    )


def test_campus_scenarios_name_the_campus_example() -> None:
    for name in ("evening-peak", "oversubscribed", "winter-lead-acid", "faults"):
        assert load_scenario(SHIPPED / f"{name}.yaml").shed.source == CAMPUS


def test_a_good_scenario_resolves_times_and_defaults() -> None:
    s = parse(GOOD)
    assert s.start_s == 18 * 3600  # plain 18:00 is a time of day, not YAML 1.1's 1080
    assert s.duration_s == 7200
    assert s.tick_s == 1.0  # the shed's control.tick_s
    assert s.cars.rate == () and s.faults == () and s.unmanaged == ()
    assert s.arrivals.stay_s == (8 * 3600, 14 * 3600)


def test_every_problem_is_reported_at_once_with_its_line() -> None:
    text = f"""\
shed: {CAMPUS}
start: "25:00"
duration: -5
seed: -1
tick_s: 0
arrivals:
  rate:
    - {{at: "18:00", per_hour: -3}}
  mix:
    - {{profile: li49, share: 0, soc: [0.6, 0.1]}}
  stay: [2h]
cars:
  rate: [{{at: "17:00", per_hour: 1}}]
  mix: [{{max_a: 2, phases: 2}}]
unmanaged:
  - circuit: row-c
    profile: [{{at: "00:00", amps: [1]}}]
  - circuit: row-a
    profile: [{{at: "00:00", amps: [1, 2]}}]
faults:
  - {{at: "19:00", for: 10m, do: meter_gone, device: pile-a1}}
  - {{at: "19:00", do: melt, device: pile-a1}}
  - {{at: "19:00", for: 5m, do: hot, bay: wb-1}}
  - {{at: "19:00", do: smoke, device: pile-a9}}
  - {{at: "19:00", for: 1m, do: short, bay: pile-a1/1}}
  - {{at: "19:00", do: crash}}
  - {{at: "19:00", do: silent, device: meter-a, active: false}}
  - {{at: "19:00", do: exception, device: meter-a, code: 999}}
  - {{at: "19:00", do: hot, bay: pile-a1/99, extra_c: hot}}
bogus: 1
"""
    got = problems(text)
    want = [
        "s.yaml:2: start: a time of day 'HH:MM' (00:00..23:59) expected, got '25:00'",
        "s.yaml:3: duration: a time must be >= 0, got -5.0",
        "s.yaml:4: seed: must be within 0..2**63-1, got -1",
        "s.yaml:5: tick_s: must be within 0.05..60 s, got 0",
        "s.yaml:8: arrivals.rate[0].per_hour: must be within 0..100000, got -3",
        "s.yaml:10: arrivals.mix[0].share: must be > 0, got 0",
        "s.yaml:10: arrivals.mix[0].soc: low <= high within 0..1 expected, got [0.6, 0.1]",
        "s.yaml:10: arrivals.mix[0].profile: unknown charger profile 'li49'; did you mean 'li48'?",
        "s.yaml:11: arrivals.stay: a range [low, high] expected, got 1 values",
        "s.yaml:14: cars.mix[0].phases: 1 or 3 expected, got 2",
        "s.yaml:14: cars.mix[0].max_a: must be within 6..80 A, got 2",
        "s.yaml:16: unmanaged[0].circuit: unknown circuit 'row-c'; did you mean 'row-b'?",
        "s.yaml:19: unmanaged[1].profile[0].amps: one value per phase of 'row-a' [1, 2, 3], got 2",
        "s.yaml:21: faults[0].device: 'meter_gone' needs a meter, 'pile-a1' is a pile",
        "s.yaml:22: faults[1].do: a fault expected, got 'melt'; known: cabinet, cell_short, "
        "clear_alarm, clear_fault, crash, delay, estop, exception, garbage, heater, hot, "
        "meter_frozen, meter_gone, modified_pack, no_taper, poor_contact, rcd, refuse_writes, "
        "sag, short, silent, smoke, supply_v, welded",
        "s.yaml:23: faults[2].bay: 'hot' needs a pile's socket, 'wb-1' is a wallbox",
        "s.yaml:24: faults[3].device: unknown device 'pile-a9'; did you mean 'pile-a5'?",
        "s.yaml:25: faults[4].for: 'short' does not end on its own: no 'for'",
        "s.yaml:26: faults[5].for: missing key 'for' ('crash' needs how long)",
        "s.yaml:27: faults[6].active: unknown parameter 'active'; the replay sets it "
        "(on at 'at', off after 'for')",
        "s.yaml:28: faults[7].code: a Modbus exception code is 1..255, got 999",
        "s.yaml:29: faults[8].extra_c: expected a number, got 'hot'",
        "s.yaml:29: faults[8].bay: unknown bay 'pile-a1/99'; did you mean 'pile-a1/9'?",
        "s.yaml:30: bogus: unknown key 'bogus'; known: arrivals, cars, duration, faults, seed, "
        "shed, start, tick_s, unmanaged",
    ]
    assert sorted(got) == sorted(want)
    lines = [int(p.split(":")[1]) for p in got]
    assert lines == sorted(lines)  # in file order


def test_a_fault_outside_the_replay_and_a_missing_at() -> None:
    text = GOOD + "faults:\n  - {at: '21:00', do: crash, for: 1m}\n  - {do: crash, for: 1m}\n"
    assert problems(text) == [
        "s.yaml:11: faults[0].at: 21:00 falls after the replay's end",
        "s.yaml:12: faults[1].at: missing key 'at' (a time of day)",
    ]


def test_staff_clear_actions_are_checked_like_the_faults(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    good = GOOD + (
        "faults:\n"
        "  - {at: '18:30', do: clear_alarm}\n"
        "  - {at: '18:40', do: clear_fault, bay: pile-b2/4}\n"
        "  - {at: '18:50', do: clear_fault, bay: wb-1}\n"
    )
    faults = parse(good).faults  # type: ignore[attr-defined]
    assert [(f.kind, f.at, f.for_s, dict(f.action)) for f in faults] == [
        ("clear_alarm", 1800.0, None, {"do": "clear_alarm"}),
        ("clear_fault", 2400.0, None, {"do": "clear_fault", "bay": "pile-b2/4"}),
        ("clear_fault", 3000.0, None, {"do": "clear_fault", "bay": "wb-1"}),
    ]
    bad = GOOD + (
        "faults:\n"
        "  - {at: '18:30', do: clear_fault, bay: pile-b2/44}\n"
        "  - {at: '18:30', do: clear_fault}\n"
        "  - {at: '18:30', do: clear_fault, bay: 7}\n"
        "  - {at: '18:30', do: clear_alarm, for: 5m}\n"
        "  - {at: '18:30', do: clear_alarm, device: pile-b1}\n"
        "  - {do: clear_alarm}\n"
    )
    assert problems(bad) == [
        "s.yaml:11: faults[0].bay: unknown bay 'pile-b2/44'; did you mean 'pile-b2/4'?",
        "s.yaml:12: faults[1].bay: missing key 'bay' (required by 'clear_fault')",
        "s.yaml:13: faults[2].bay: expected a string, got 7",
        "s.yaml:14: faults[3].for: unknown parameter 'for'; 'clear_alarm' takes: at, do",
        "s.yaml:15: faults[4].device: unknown parameter 'device'; 'clear_alarm' takes: at, do",
        "s.yaml:16: faults[5].at: missing key 'at' (a time of day)",
    ]
    path = tmp_path / "bad.yaml"
    path.write_text(bad)
    assert main(["replay", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:12: faults[1].bay: missing key 'bay' (required by 'clear_fault')" in err


def test_a_fault_after_midnight_counts_from_the_start() -> None:
    text = GOOD.replace("2h", "12h") + "faults:\n  - {at: '01:30', do: crash, for: 2m}\n"
    (f,) = parse(text).faults  # type: ignore[attr-defined]
    assert (f.kind, f.at, f.for_s) == ("crash", 7.5 * 3600, 120.0)


def test_the_shed_config_that_does_not_load_is_reported_with_its_own_problems(
    tmp_path: Path,
) -> None:
    shed = tmp_path / "shed.yaml"
    shed.write_text("shed: {name: x}\ncircuits: []\nbuses: []\ndevices: []\nbogus: 1\n")
    (tmp_path / "s.yaml").write_text(GOOD.replace(str(CAMPUS), "shed.yaml"))
    with pytest.raises(ScenarioError) as exc:
        load_scenario(tmp_path / "s.yaml")
    got = [str(p) for p in exc.value.problems]
    assert got[0].startswith(f"{tmp_path / 's.yaml'}:1: shed: the shed config ")
    assert any(p.startswith(f"{shed}:5: bogus: unknown key") for p in got)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("", "s.yaml: empty file: a scenario is needed"),
        ("- 1\n", "s.yaml:1: the top level must be a mapping (shed, duration, ...), got a list"),
        ("shed: [\n", "s.yaml:2: YAML syntax error:"),
        ("duration: 1h\n", "s.yaml:1: shed: missing key 'shed'"),
        (GOOD + "faults: {at: 1}\n", "s.yaml:10: faults: expected a list, got a mapping"),
        (GOOD + "faults: []\nfaults: []\n", "s.yaml:11: faults: duplicate key (first at line 10)"),
        (
            GOOD + "faults: [{at: '19:00', do: crash, for: [1]}]\n",
            "s.yaml:10: faults[0].for: expected a plain value",
        ),
        (GOOD.replace("2h", "1y"), "s.yaml:3: duration: a time expected"),
        (
            GOOD + "cars: {rate: [{at: '1:00', per_hour: 1}], mix: []}\n",
            "s.yaml:10: cars.mix: who arrives",
        ),
        ("a: &a [*a]\n", "s.yaml:1: a: unknown key"),
    ],
)
def test_odd_files_are_one_line_problems(text: str, want: str) -> None:
    assert any(p.startswith(want) for p in problems(text)), problems(text)
