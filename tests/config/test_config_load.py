"""Pass 1 of the loader: YAML -> typed Shed, and the mistakes found generically."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from chargectl.config.load import ConfigError, Problem, load_checked, load_shed, parse_shed
from chargectl.config.schema import Breaker, Circuit, ControlSettings, RtuBus, Shed, TcpBus
from tests.config.cfgtext import BASE, edit, line_of, only

Errors = Callable[[str], list[Problem]]
EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"


def test_base_loads_into_typed_objects(write: Callable[[str], Path]) -> None:
    path = write(BASE)
    checked = load_checked(path)
    shed = checked.shed
    assert checked.warnings == ()
    assert shed.source == path.absolute()
    assert shed.shed.phases == 3 and shed.shed.voltage_v == 230.0
    assert shed.circuit("row") == Circuit(
        id="row",
        limit_a=30.0,
        breaker=Breaker(rating_a=32.0, curve="C"),
        parent="main",
        phases=(1, 2),
        meter="m-row",
    )
    assert shed.bus("line-1") == TcpBus(id="line-1", host="127.0.0.1", port=5020)
    assert shed.bus("line-2") == RtuBus(
        id="line-2", port="/dev/ttyUSB0", baudrate=19200, parity="E", timeout_s=0.3
    )
    pile = shed.device("pile-1")
    assert pile.phases == (1,)  # `phase: 1` is shorthand for `phases: [1]`
    assert pile.circuit == "row" and pile.ports == 10
    assert shed.device("m-main").circuit is None  # optional for a meter
    assert isinstance(shed.circuit("main").limit_a, float)  # `60` in YAML, a float here
    assert shed.sim.chargers[0].bay == "pile-1/1"
    assert shed.sim.base_load[0].amps == (1.0, 0.5)


@pytest.mark.parametrize("name", ["small.yaml", "campus.yaml"])
def test_examples_load_clean(name: str) -> None:
    checked = load_checked(EXAMPLES / name)
    assert checked.warnings == ()


def test_small_example_is_what_the_issue_describes() -> None:
    shed = load_shed(EXAMPLES / "small.yaml")
    assert shed.shed.phases == 1
    assert [c.breaker.rating_a for c in shed.circuits] == [32.0]
    assert sorted((d.kind, d.ports) for d in shed.devices) == [("pile", 12), ("sdm120", 0)]


def test_campus_example_is_what_the_issue_describes() -> None:
    shed = load_shed(EXAMPLES / "campus.yaml")
    root = next(c for c in shed.circuits if c.parent is None)
    subs = [c for c in shed.circuits if c.parent == root.id]
    assert shed.shed.phases == 3 and root.breaker.rating_a == 63
    assert [c.limit_a for c in subs] == [40.0, 40.0]
    piles = [d for d in shed.devices if d.kind == "pile"]
    assert len(piles) == 10 and {p.ports for p in piles} == {20}
    walls = [d for d in shed.devices if d.kind == "evse"]
    assert len(walls) == 2 and all(w.phases == (1, 2, 3) and w.max_current_a == 16 for w in walls)
    metered = {shed.device(c.meter).kind for c in shed.circuits if c.meter}
    assert metered == {"sdm630"} and all(c.meter for c in shed.circuits)


def test_parse_shed_is_pure_and_names_the_given_file() -> None:
    with pytest.raises(ConfigError) as info:
        parse_shed(edit(BASE, "limit_a: 30", "limit_a: x"), Path("/nowhere/s.yaml"), "s.yaml")
    [p] = info.value.errors
    assert (p.file, p.path) == ("s.yaml", "circuits[1].limit_a")


# -- unknown keys ----------------------------------------------------------------------------


def test_unknown_key_names_path_line_and_a_close_match(errors: Errors) -> None:
    text = edit(BASE, "    limit_a: 30\n", "    limit_a: 30\n    limt_a: 3\n")
    p = only(errors(text), "circuits[1].limt_a")
    assert p.line == line_of(text, "limt_a")
    assert "unknown key 'limt_a'" in p.message and "did you mean 'limit_a'" in p.message


def test_unknown_top_level_key_lists_the_known_ones(errors: Errors) -> None:
    p = only(errors(BASE + "frobnicate: 1\n"), "frobnicate")
    assert "known:" in p.message and "circuits" in p.message


def test_unknown_key_inside_a_bus_connection(errors: Errors) -> None:
    text = edit(BASE, "port: 5020}", "port: 5020, hots: x}")
    p = only(errors(text), "buses[0].tcp.hots")
    assert "did you mean 'host'" in p.message


def test_source_is_not_a_config_key(errors: Errors) -> None:
    only(errors(BASE + "source: elsewhere.yaml\n"), "source")


# -- wrong types -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "path", "want"),
    [
        ("limit_a: 30", "limit_a: thirty", "circuits[1].limit_a", ("a number", "'thirty'")),
        ("limit_a: 30", "limit_a: true", "circuits[1].limit_a", ("a number", "boolean")),
        ("limit_a: 30", "limit_a: .nan", "circuits[1].limit_a", ("a number", "nan")),
        ("limit_a: 30", "limit_a: [30]", "circuits[1].limit_a", ("a number", "a list")),
        ("unit: 1,", "unit: 1.5,", "devices[2].unit", ("an integer", "1.5")),
        ("unit: 1,", "unit: '1',", "devices[2].unit", ("an integer", "'1'")),
        ("id: main", "id: 7", "circuits[0].id", ("a string", "an integer 7")),
        ("name: test", "name: {a: 1}", "shed.name", ("a string", "a mapping")),
        ("phases: [1, 2]", "phases: 1", "circuits[1].phases", ("a list", "[1]")),
        ("phases: [1, 2]", "phases: [1, two]", "circuits[1].phases[1]", ("an integer", "'two'")),
        ("tick_s: 1.0", "tick_s: soon", "control.tick_s", ("a number", "'soon'")),
        ("sim:\n", "sim:\n  pace: 3\n", "sim.pace", ("true or false", "3")),
        ("parent: main", "parent: [main]", "circuits[1].parent", ("a string or null", "a list")),
    ],
)
def test_wrong_type(errors: Errors, old: str, new: str, path: str, want: tuple[str, str]) -> None:
    expected, got = want
    text = edit(BASE, old, new)
    p = only(errors(text), path)
    assert p.message.startswith(f"expected {expected}, got ")
    assert got in p.message
    assert p.line == line_of(text, new.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("old", "new", "path", "choices"),
    [
        ("phases: 3", "phases: 2", "shed.phases", "1 or 3"),
        ("phases: 3", "phases: true", "shed.phases", "1 or 3"),  # True == 1 in Python
        ("curve: C", "curve: K", "circuits[0].breaker.curve", "'B' or 'C' or 'D'"),
        ("parity: E", "parity: X", "buses[1].rtu.parity", "'N' or 'E' or 'O'"),
    ],
)
def test_value_outside_a_fixed_set(
    errors: Errors, old: str, new: str, path: str, choices: str
) -> None:
    p = only(errors(edit(BASE, old, new)), path)
    assert f"expected {choices}" in p.message


def test_a_list_entry_that_is_not_a_mapping(errors: Errors) -> None:
    text = edit(BASE, "devices:\n", "devices:\n  - just-a-name\n")
    p = only(errors(text), "devices[0]")
    assert "expected a mapping" in p.message and p.line == line_of(text, "just-a-name")


def test_a_section_of_the_wrong_shape(errors: Errors) -> None:
    text = edit(BASE, "control: {tick_s: 1.0, watchdog_s: 10}", "control: [1, 10]")
    p = only(errors(text), "control")
    assert "expected a mapping, got a list" in p.message


# -- missing keys and duplicates --------------------------------------------------------------


def test_missing_key_points_at_its_mapping(errors: Errors) -> None:
    text = edit(BASE, "    limit_a: 30\n", "")
    p = only(errors(text), "circuits[1].limit_a")
    assert p.message == "missing key 'limit_a'"
    assert p.line == line_of(text, "id: row")


def test_missing_phases_mentions_the_shorthand(errors: Errors) -> None:
    text = edit(BASE, " phase: 1,", "")
    p = only(errors(text), "devices[2].phases")
    assert "'phase'" in p.message


def test_missing_section(errors: Errors) -> None:
    start = BASE.index("devices:")
    text = BASE[:start] + BASE[BASE.index("control:") :]
    p = only(errors(text), "devices")
    assert p.message == "missing key 'devices'"


def test_missing_bus_id_and_connection(errors: Errors) -> None:
    text = edit(BASE, "  - id: line-1\n    tcp: {host: 127.0.0.1, port: 5020}\n", "  - {}\n")
    found = errors(text)
    assert "missing key 'id'" in only(found, "buses[0].id").message
    assert "exactly one of 'tcp' or 'rtu' (neither)" in only(found, "buses[0]").message


def test_bus_with_both_connections(errors: Errors) -> None:
    text = edit(BASE, "    timeout_s: 0.3\n", "    tcp: {host: h, port: 1}\n")
    assert "(both)" in only(errors(text), "buses[1]").message


def test_phase_and_phases_together(errors: Errors) -> None:
    text = edit(BASE, "phase: 1,", "phase: 1, phases: [1],")
    assert "not both" in only(errors(text), "devices[2].phase").message


def test_duplicate_yaml_key(errors: Errors) -> None:
    text = edit(BASE, "    limit_a: 60\n", "    limit_a: 60\n    limit_a: 61\n")
    p = only(errors(text), "circuits[0].limit_a")
    assert p.message == f"duplicate key (first at line {line_of(text, 'limit_a: 60')})"
    assert p.line == line_of(text, "limit_a: 61")


# -- the file itself ---------------------------------------------------------------------------


def test_yaml_syntax_error_has_its_line(errors: Errors) -> None:
    text = edit(BASE, "  - {id: pile-1,", "  - {id: pile-1 [,")
    [p] = errors(text)
    assert p.message.startswith("YAML syntax error")
    assert p.line == line_of(text, "pile-1 [")


def test_two_documents_are_a_syntax_error(errors: Errors) -> None:
    [p] = errors(BASE + "---\nshed: {name: other}\n")
    assert "single document" in p.message and p.line is not None


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file(errors: Errors, text: str) -> None:
    [p] = errors(text)
    assert p.message.startswith("empty file") and p.path == ""


@pytest.mark.parametrize(("text", "got"), [("- a\n- b\n", "a list"), ("42\n", "an integer 42")])
def test_file_that_is_not_a_mapping(errors: Errors, text: str, got: str) -> None:
    [p] = errors(text)
    assert "top level must be a mapping" in p.message and got in p.message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_shed(path)
    [p] = info.value.problems
    assert (p.file, p.line, p.path) == (str(path), None, "")
    assert "No such file" in p.message
    assert str(p) == f"{path}: cannot read: No such file or directory"


def test_a_directory_is_not_a_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_shed(tmp_path)
    assert info.value.problems[0].message.startswith("cannot read")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("shed: {name: caf\xe9}\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_shed(path)
    assert "not UTF-8" in info.value.problems[0].message


# -- all at once, and YAML conveniences ---------------------------------------------------------


def test_every_problem_is_reported_not_just_the_first(errors: Errors) -> None:
    text = BASE
    text = edit(text, "limit_a: 30", "limit_a: lots")  # wrong type
    text = edit(text, "name: test", "nmae: test")  # unknown key (and so name is missing)
    text = edit(text, "unit: 2,", "unit: 500,")  # semantic: out of range
    text = edit(text, "bus: line-2, unit: 1,", "bus: line-9, unit: 1,")  # unknown reference
    found = errors(text)
    paths = {p.path for p in found}
    assert {"circuits[1].limit_a", "shed.nmae", "shed.name"} <= paths
    # The shed section is broken, so the semantic checks cannot run on this one yet; fix it
    # and they report the rest while the broken circuit is still reported.
    found = errors(edit(text, "nmae: test", "name: test"))
    paths = {p.path for p in found}
    assert {"circuits[1].limit_a", "devices[3].unit", "devices[2].bus"} <= paths


def test_problems_come_in_file_order(errors: Errors) -> None:
    text = edit(BASE, "ports: 10", "ports: 99")
    text = edit(text, "curve: C", "curve: Z")
    text = edit(text, "tick_s: 1.0", "tick_s: -1")
    lines = [p.line or 0 for p in errors(text)]
    assert lines == sorted(lines) and len(lines) == 3
    assert lines[0] == line_of(text, "curve: Z") and lines[-1] == line_of(text, "tick_s: -1")


def test_a_broken_entry_does_not_cascade_into_unknown_references(errors: Errors) -> None:
    # The row circuit and the pile are broken; what refers to them is not "unknown".
    text = edit(BASE, "limit_a: 30", "limit_a: lots")
    text = edit(text, "ports: 10", "ports: ten")
    found = errors(text)
    assert [p.path for p in found] == ["circuits[1].limit_a", "devices[2].ports"]


def test_anchors_and_merge_keys(write: Callable[[str], Path]) -> None:
    text = edit(
        BASE,
        "  - {id: pile-1, kind: pile, bus: line-2, unit: 1, circuit: row, phase: 1, ports: 10}\n",
        "  - &pile {id: pile-1, kind: pile, bus: line-2, unit: 1, circuit: row, phase: 1,"
        " ports: 10}\n"
        "  - {<<: *pile, id: pile-2, unit: 2, phase: 2}\n",
    )
    shed = load_shed(write(text))
    assert shed.device("pile-2").phases == (2,) and shed.device("pile-2").ports == 10


def test_an_empty_section_takes_its_defaults(write: Callable[[str], Path]) -> None:
    text = edit(BASE, "control: {tick_s: 1.0, watchdog_s: 10}", "control:\n  # tick_s: 2.0")
    text = edit(text, "  cars:\n    - {device: wb-1, max_a: 16}\n", "  cars:\n")
    shed = load_shed(write(text))
    assert shed.control == ControlSettings() and shed.sim.cars == ()


def test_an_empty_value_is_not_a_default(errors: Errors) -> None:
    p = only(errors(edit(BASE, "limit_a: 30", "limit_a:")), "circuits[1].limit_a")
    assert p.message == "expected a number, got null"


def test_a_broken_supply_does_not_invent_phase_problems(errors: Errors) -> None:
    assert [p.path for p in errors(edit(BASE, "phases: 3", "phases: 2"))] == ["shed.phases"]


def test_a_broken_setting_is_reported_with_the_rest(errors: Errors) -> None:
    # A broken setting takes its default for the checks that follow, so they still run.
    text = edit(BASE, "tick_s: 1.0", "tick_s: fast")
    text = edit(text, "ports: 10", "ports: 40")
    assert [p.path for p in errors(text)] == ["devices[2].ports", "control.tick_s"]


def test_a_bad_merge_key(errors: Errors) -> None:
    text = edit(BASE, "  - id: main\n", "  - <<: 5\n    id: main\n")
    p = only(errors(text), "circuits[0]")
    assert p.message.startswith("bad merge key: expected a mapping") and "\n" not in str(p)


def test_loaded_objects_are_frozen(write: Callable[[str], Path]) -> None:
    shed: Shed = load_shed(write(BASE))
    with pytest.raises(AttributeError):
        shed.circuits[0].limit_a = 1  # type: ignore[misc]


@pytest.mark.parametrize("tagged", ["!!int x", "!!float x", "!!int 0x", "!!timestamp 2020-99-99"])
def test_a_tagged_value_that_cannot_be_read_is_a_problem(errors: Errors, tagged: str) -> None:
    """PyYAML raises ValueError (not a YAMLError) for these: a problem, never a traceback."""
    text = edit(BASE, "unit: 1,", f"unit: {tagged},")
    p = only(errors(text), "devices[2].unit")
    assert p.message.startswith("unreadable value: ")
    assert p.line == line_of(text, f"unit: {tagged},")
