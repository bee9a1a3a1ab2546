"""Pass 2 of the loader: the semantic checks, one test per kind of mistake."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from chargectl.config.load import Problem, check_shed, load_checked
from chargectl.config.schema import Breaker, Circuit, Device, Shed, ShedInfo, TcpBus
from tests.config.cfgtext import BASE, edit, line_of, only

Found = Callable[[str], list[Problem]]

PILE = "  - {id: pile-1, kind: pile, bus: line-2, unit: 1, circuit: row, phase: 1, ports: 10}\n"


def add_device(text: str, line: str) -> str:
    return edit(text, PILE, PILE + line)


def add_circuit(text: str, block: str) -> str:
    return edit(text, "buses:\n", block + "buses:\n")


# -- references ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "path", "what"),
    [
        ("parent: main", "parent: mian", "circuits[1].parent", "unknown circuit 'mian'"),
        ("meter: m-row", "meter: m-rwo", "circuits[1].meter", "unknown device 'm-rwo'"),
        ("bus: line-2, unit: 1,", "bus: line-3, unit: 1,", "devices[2].bus", "unknown bus"),
        ("circuit: row, phase", "circuit: rows, phase", "devices[2].circuit", "'rows'"),
        ("bay: pile-1/1", "bay: pile-9/1", "sim.chargers[0].bay", "unknown device 'pile-9'"),
        ("device: wb-1", "device: wb-2", "sim.cars[0].device", "unknown device 'wb-2'"),
        ("circuit: row, amps", "circuit: raw, amps", "sim.base_load[0].circuit", "'raw'"),
    ],
)
def test_unknown_reference(errors: Found, old: str, new: str, path: str, what: str) -> None:
    text = edit(BASE, old, new)
    p = only(errors(text), path)
    assert what in p.message
    assert p.line == line_of(text, new)


def test_unknown_reference_suggests_the_close_name(errors: Found) -> None:
    p = only(errors(edit(BASE, "parent: main", "parent: mian")), "circuits[1].parent")
    assert "did you mean 'main'?" in p.message


def test_unknown_device_kind_lists_the_known_kinds(errors: Found) -> None:
    p = only(errors(edit(BASE, "kind: pile", "kind: toaster")), "devices[2].kind")
    assert "unknown device kind 'toaster'" in p.message
    assert all(k in p.message for k in ("pile", "evse", "sdm630", "sdm120"))


# -- the circuit tree -----------------------------------------------------------------------


def test_cycle(errors: Found) -> None:
    text = add_circuit(
        BASE,
        "  - {id: a, parent: b, limit_a: 10, breaker: {rating_a: 10}}\n"
        "  - {id: b, parent: a, limit_a: 10, breaker: {rating_a: 10}}\n",
    )
    found = errors(text)
    cycles = [p for p in found if "cycle" in p.message]
    assert len(cycles) == 1  # one cycle, reported once
    assert cycles[0].path == "circuits[2].parent" and "a -> b -> a" in cycles[0].message


def test_circuit_that_is_its_own_parent(errors: Found) -> None:
    p = only(errors(edit(BASE, "parent: main", "parent: row")), "circuits[1].parent")
    assert p.message == "cycle: row -> row"


def test_two_roots(errors: Found) -> None:
    text = edit(BASE, "    parent: main\n", "")
    p = only(errors(text), "circuits[1]")
    assert "second root circuit 'row'" in p.message and "'main'" in p.message


def test_no_root(errors: Found) -> None:
    text = edit(BASE, "  - id: main\n", "  - id: main\n    parent: row\n")
    found = errors(text)
    assert "no root circuit" in only(found, "circuits").message
    assert any("cycle" in p.message for p in found)


def test_no_circuits_at_all(errors: Found) -> None:
    start, end = BASE.index("circuits:\n"), BASE.index("buses:\n")
    text = BASE[:start] + "circuits: []\n" + BASE[end:]
    assert "at least one circuit" in only(errors(text), "circuits").message


# -- duplicate ids and units ------------------------------------------------------------------


def test_duplicate_circuit_id(errors: Found) -> None:
    text = add_circuit(BASE, "  - {id: row, parent: main, limit_a: 10, breaker: {rating_a: 10}}\n")
    p = only(errors(text), "circuits[2].id")
    assert p.message == f"duplicate circuit id 'row' (first at line {line_of(text, '- id: row')})"


def test_duplicate_bus_id(errors: Found) -> None:
    text = edit(BASE, "  - id: line-2\n", "  - id: line-1\n")
    text = text.replace("bus: line-2", "bus: line-1")
    found = errors(text)
    assert "duplicate bus id 'line-1'" in only(found, "buses[1].id").message


def test_duplicate_device_id(errors: Found) -> None:
    text = add_device(BASE, PILE.replace("unit: 1", "unit: 2"))
    p = only(errors(text), "devices[3].id")
    assert "duplicate device id 'pile-1'" in p.message


def test_two_devices_with_one_unit_on_a_bus(errors: Found) -> None:
    text = add_device(BASE, PILE.replace("pile-1", "pile-2"))
    p = only(errors(text), "devices[3].unit")
    assert "unit 1 on bus 'line-2' is taken by device 'pile-1'" in p.message
    assert f"(line {line_of(text, 'id: pile-1')})" in p.message


def test_one_unit_on_two_buses_is_fine(write: Callable[[str], Path]) -> None:
    text = add_device(BASE, PILE.replace("pile-1", "pile-2").replace("line-2", "line-1"))
    assert load_checked(write(text)).warnings == ()


@pytest.mark.parametrize("unit", [0, 248, -1])
def test_unit_out_of_range(errors: Found, unit: int) -> None:
    p = only(errors(edit(BASE, "unit: 1,", f"unit: {unit},")), "devices[2].unit")
    assert p.message == f"must be in 1..247, got {unit}"


def test_unit_limits_are_valid(write: Callable[[str], Path]) -> None:
    text = edit(BASE, "unit: 1,", "unit: 247,")
    text = edit(text, "unit: 2,", "unit: 1,")
    load_checked(write(text))


# -- piles, wallboxes, meters ----------------------------------------------------------------


@pytest.mark.parametrize("ports", [0, 33])
def test_pile_port_count(errors: Found, ports: int) -> None:
    p = only(errors(edit(BASE, "ports: 10", f"ports: {ports}")), "devices[2].ports")
    assert p.message == f"a pile of kind 'pile' has 1..32 ports, got {ports}"


def test_pile_without_ports_key(errors: Found) -> None:
    only(errors(edit(BASE, ", ports: 10}", "}")), "devices[2].ports")


def test_pile_of_32_ports_is_fine(write: Callable[[str], Path]) -> None:
    load_checked(write(edit(BASE, "ports: 10", "ports: 32")))


def test_pile_without_circuit(errors: Found) -> None:
    p = only(errors(edit(BASE, " circuit: row,", "")), "devices[2].circuit")
    assert "a pile hangs on a circuit" in p.message


def test_pile_on_two_phases(errors: Found) -> None:
    text = edit(BASE, "phase: 1, ports", "phases: [1, 2], ports")
    assert "one phase" in only(errors(text), "devices[2].phases").message


@pytest.mark.parametrize("value", [5, 5.9, 81, 100])
def test_evse_max_current_out_of_range(errors: Found, value: float) -> None:
    text = edit(BASE, "max_current_a: 32", f"max_current_a: {value}")
    p = only(errors(text), "devices[3].max_current_a")
    assert p.message == f"wallbox 'wb-1': its template 'evse' takes 6..80 A, got {value:g}"


@pytest.mark.parametrize("value", [6, 80])
def test_evse_max_current_limits_are_valid(write: Callable[[str], Path], value: int) -> None:
    load_checked(write(edit(BASE, "max_current_a: 32", f"max_current_a: {value}")))


def test_evse_on_two_phases(errors: Found) -> None:
    text = edit(BASE, "circuit: main, phases: [1, 2, 3]", "circuit: main, phases: [1, 2]")
    assert "1 or 3 phases" in only(errors(text), "devices[3].phases").message


@pytest.mark.parametrize("value", [-1, 0, 99, 3501])
def test_port_power_limit_out_of_range(errors: Found, value: int) -> None:
    # 0 disables the pile's cut-off, which the fail-safe budget counts on: refused too.
    text = edit(BASE, "ports: 10}", f"ports: 10, port_power_limit_w: {value}}}")
    p = only(errors(text), "devices[2].port_power_limit_w")
    assert p.message.startswith("must be in 100..3500 W (the fail-safe budget counts")
    assert p.message.endswith(f"got {value}")


@pytest.mark.parametrize("value", [100, 3500])
def test_port_power_limit_bounds_are_valid(write: Callable[[str], Path], value: int) -> None:
    load_checked(write(edit(BASE, "ports: 10}", f"ports: 10, port_power_limit_w: {value}}}")))


def test_a_setting_of_another_role(errors: Found) -> None:
    text = edit(BASE, "max_current_a: 32}", "max_current_a: 32, ports: 4}")
    p = only(errors(text), "devices[3].ports")
    assert p.message == "only a pile has 'ports' (this device is an evse)"


def test_circuit_meter_that_is_not_a_meter(errors: Found) -> None:
    p = only(errors(edit(BASE, "meter: m-row", "meter: pile-1")), "circuits[1].meter")
    assert p.message == "'pile-1' is a pile, not a meter (kind 'pile')"


def test_sdm120_measures_one_phase(errors: Found) -> None:
    text = edit(BASE, "{id: m-row, kind: sdm630", "{id: m-row, kind: sdm120")
    p = only(errors(text), "devices[1].phases")
    assert p.message == "kind 'sdm120' measures 1 phase, got 3"


def test_sdm630_measures_three_phases(errors: Found) -> None:
    text = edit(
        BASE, "unit: 10, phases: [1, 2, 3]}\n  - {id: m-row", "unit: 10, phase: 1}\n  - {id: m-row"
    )
    found = errors(text)
    assert only(found, "devices[0].phases").message == "kind 'sdm630' measures 3 phases, got 1"
    # ... and it then misses phases of the circuit it measures.
    assert "does not measure phase 2, 3" in only(found, "circuits[0].meter").message


def test_one_meter_for_two_circuits(errors: Found) -> None:
    p = only(errors(edit(BASE, "meter: m-row", "meter: m-main")), "circuits[1].meter")
    assert "already measures circuit 'main'" in p.message


def test_meter_placed_on_another_circuit(errors: Found) -> None:
    text = edit(
        BASE,
        "{id: m-row, kind: sdm630, bus: line-2,",
        "{id: m-row, kind: sdm630, bus: line-2, circuit: main,",
    )
    p = only(errors(text), "circuits[1].meter")
    assert "says it is on circuit 'main', not 'row'" in p.message


def test_meter_nobody_uses_is_a_warning(problems: Found) -> None:
    [p] = problems(edit(BASE, "    meter: m-row\n", ""))
    assert p.severity == "warning" and p.path == "devices[1]"


# -- phases ---------------------------------------------------------------------------------


def test_device_phase_the_supply_lacks(errors: Found) -> None:
    text = edit(BASE, "  phases: 3\n", "  phases: 1\n")
    found = errors(text)
    p = only(found, "devices[3].phases")
    assert p.message == "phase 2, 3: the supply is single-phase (shed.phases: 1)"
    # The row circuit's own phases [1, 2] are wrong on this supply too.
    assert "phase 2: the supply is single-phase" in only(found, "circuits[1].phases").message


def test_circuit_phase_its_parent_lacks(errors: Found) -> None:
    text = add_circuit(
        BASE,
        "  - {id: sub, parent: row, limit_a: 10, breaker: {rating_a: 10}, phases: [3]}\n",
    )
    p = only(errors(text), "circuits[2].phases")
    assert p.message == "phase 3: the parent circuit 'row' does not carry it"


def test_device_on_a_phase_its_circuit_lacks(errors: Found) -> None:
    p = only(errors(edit(BASE, "phase: 1, ports", "phase: 3, ports")), "devices[2].phases")
    assert p.message == "phase 3: circuit 'row' does not carry it (it carries 1, 2)"


def test_phase_that_does_not_exist(errors: Found) -> None:
    p = only(errors(edit(BASE, "phase: 1, ports", "phase: 4, ports")), "devices[2].phases")
    assert p.message == "phase 4 does not exist: phases are 1, 2, 3"


def test_phase_listed_twice(errors: Found) -> None:
    p = only(errors(edit(BASE, "phases: [1, 2]", "phases: [1, 1]")), "circuits[1].phases")
    assert p.message == "phase 1 listed twice"


def test_no_phase(errors: Found) -> None:
    text = edit(
        BASE, "unit: 2, circuit: main, phases: [1, 2, 3]", "unit: 2, circuit: main, phases: []"
    )
    p = only(errors(text), "devices[3].phases")
    assert p.message == "at least one phase is needed"


def test_circuit_with_an_empty_phase_list_carries_its_parents(write: Callable[[str], Path]) -> None:
    text = edit(BASE, "phases: [1, 2]", "phases: []")
    text = edit(text, "amps: [1.0, 0.5]", "amps: [1.0, 0.5, 0.2]")
    load_checked(write(text))


def test_circuit_inherits_phases(write: Callable[[str], Path]) -> None:
    # `sub` names no phases: it carries row's 1 and 2, so a pile on phase 2 under it is fine.
    text = add_circuit(BASE, "  - {id: sub, parent: row, limit_a: 10, breaker: {rating_a: 10}}\n")
    text = add_device(
        text, "  - {id: p2, kind: pile, bus: line-2, unit: 2, circuit: sub, phase: 2, ports: 4}\n"
    )
    load_checked(write(text))


def test_device_on_inherited_phase_the_parent_lacks(errors: Found) -> None:
    text = add_circuit(BASE, "  - {id: sub, parent: row, limit_a: 10, breaker: {rating_a: 10}}\n")
    text = add_device(
        text, "  - {id: p2, kind: pile, bus: line-2, unit: 2, circuit: sub, phase: 3, ports: 4}\n"
    )
    assert "circuit 'sub' does not carry it" in only(errors(text), "devices[3].phases").message


# -- limits and ratings ----------------------------------------------------------------------


def test_sub_circuit_limit_above_its_parents_is_a_warning(write: Callable[[str], Path]) -> None:
    text = edit(BASE, "limit_a: 30", "limit_a: 61")
    text = edit(text, "rating_a: 32}", "rating_a: 63}")
    checked = load_checked(write(text))  # loads: a warning is not an error
    [p] = checked.warnings
    assert (p.path, p.severity) == ("circuits[1].limit_a", "warning")
    assert "above the limit of its parent 'main' (60 A)" in p.message
    assert str(p).endswith(
        f":{line_of(text, 'limit_a: 61')}: circuits[1].limit_a: warning: {p.message}"
    )


def test_limit_above_breaker_rating_is_a_warning(write: Callable[[str], Path]) -> None:
    [p] = load_checked(write(edit(BASE, "limit_a: 30", "limit_a: 36"))).warnings
    assert p.severity == "warning" and "above the breaker rating (32 A)" in p.message


def test_limit_where_the_breaker_trips_is_an_error(errors: Found) -> None:
    # 1.13 x 32 A = 36.16 A: IEC 60898-1 lets the breaker trip above that.
    p = only(errors(edit(BASE, "limit_a: 30", "limit_a: 36.2")), "circuits[1].limit_a")
    assert "above 1.13 x the breaker rating (32 A)" in p.message


@pytest.mark.parametrize("value", [0, -5])
def test_non_positive_limit(errors: Found, value: int) -> None:
    p = only(errors(edit(BASE, "limit_a: 30", f"limit_a: {value}")), "circuits[1].limit_a")
    assert p.message == f"must be > 0, got {value}"


def test_non_positive_breaker_rating(errors: Found) -> None:
    p = only(errors(edit(BASE, "rating_a: 32}", "rating_a: 0}")), "circuits[1].breaker.rating_a")
    assert p.message == "must be > 0, got 0"


def test_negative_unmanaged_load(errors: Found) -> None:
    text = edit(BASE, "    meter: m-row\n", "    meter: m-row\n    unmanaged_worst_a: -1\n")
    assert only(errors(text), "circuits[1].unmanaged_worst_a").message == "must be >= 0, got -1"


@pytest.mark.parametrize("value", [0, 99, 251, 400])
def test_voltage_outside_a_phase_voltage(errors: Found, value: int) -> None:
    # 400 V is line-to-line: taken as a phase voltage it shrinks every watt-to-amp budget.
    p = only(errors(edit(BASE, "voltage_v: 230", f"voltage_v: {value}")), "shed.voltage_v")
    assert p.message == (f"the phase (line-to-neutral) voltage must be in 100..250 V, got {value}")


@pytest.mark.parametrize("value", [0, 9.9, 41])
def test_supply_sag_below_the_standard(errors: Found, value: float) -> None:
    text = edit(BASE, "voltage_v: 230", f"voltage_v: 230\n  supply_low_pct: {value}")
    p = only(errors(text), "shed.supply_low_pct")
    assert p.message.startswith("must be in 10..40")


# -- timings and other settings -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ("tick_s: 1.0", "tick_s: 0", "control.tick_s"),
        ("tick_s: 1.0", "tick_s: -1", "control.tick_s"),
        ("watchdog_s: 10", "watchdog_s: 0", "control.watchdog_s"),
        ("watchdog_s: 10}", "watchdog_s: 10, slow_poll_s: 0}", "control.slow_poll_s"),
        ("sim:\n", "sessions: {full_hold_s: 0}\nsim:\n", "sessions.full_hold_s"),
        ("sim:\n", "sessions: {checkpoint_s: -60}\nsim:\n", "sessions.checkpoint_s"),
        ("sim:\n", "sim:\n  step_s: 0\n", "sim.step_s"),
        ("sim:\n", "sim:\n  meter_refresh_s: -1\n", "sim.meter_refresh_s"),
        ("    timeout_s: 0.3\n", "    timeout_s: 0\n", "buses[1].timeout_s"),
    ],
)
def test_timing_must_be_positive(errors: Found, old: str, new: str, path: str) -> None:
    p = only(errors(edit(BASE, old, new)), path)
    assert p.message.startswith("must be > 0")


def test_watchdog_must_outlast_a_tick(errors: Found) -> None:
    text = edit(BASE, "tick_s: 1.0, watchdog_s: 10", "tick_s: 5.0, watchdog_s: 5")
    assert "longer than control.tick_s" in only(errors(text), "control.watchdog_s").message


def test_zero_minimum_on_time_is_allowed(write: Callable[[str], Path]) -> None:
    load_checked(write(edit(BASE, "watchdog_s: 10}", "watchdog_s: 10, min_on_s: 0}")))


def test_fraction_out_of_range(errors: Found) -> None:
    text = edit(BASE, "sim:\n", "sessions: {full_fraction: 1.5}\nsim:\n")
    assert only(errors(text), "sessions.full_fraction").message == "must be in 0..1, got 1.5"


def test_rtu_stopbits(errors: Found) -> None:
    text = edit(BASE, "parity: E}", "parity: E, stopbits: 3}")
    assert only(errors(text), "buses[1].rtu.stopbits").message == "must be 1 or 2, got 3"


def test_tcp_port_out_of_range(errors: Found) -> None:
    text = edit(BASE, "port: 5020}", "port: 70000}")
    assert "must be in 0..65535" in only(errors(text), "buses[0].tcp.port").message


def test_two_buses_on_one_line(errors: Found) -> None:
    text = edit(
        BASE,
        "    rtu: {port: /dev/ttyUSB0, baudrate: 19200, parity: E}\n",
        "    tcp: {host: 127.0.0.1, port: 5020}\n",
    )
    assert "same line as bus 'line-1'" in only(errors(text), "buses[1]").message


def test_endpoint_clash(errors: Found) -> None:
    text = BASE + "metrics: {host: 127.0.0.1, port: 8581}\n"  # the api's default port
    assert "used by metrics too" in only(errors(text), "api.port").message


def test_empty_ledger(errors: Found) -> None:
    assert only(errors(BASE + "ledger: ''\n"), "ledger").message == "must not be empty"


# -- the simulator section ----------------------------------------------------------------------


def test_charger_bay_port_outside_the_pile(errors: Found) -> None:
    p = only(errors(edit(BASE, "bay: pile-1/1", "bay: pile-1/11")), "sim.chargers[0].bay")
    assert p.message == "pile 'pile-1' has ports 1..10, got 11"


def test_charger_bay_that_is_not_a_pile(errors: Found) -> None:
    p = only(errors(edit(BASE, "bay: pile-1/1", "bay: wb-1/1")), "sim.chargers[0].bay")
    assert p.message == "'wb-1' is not a pile"


def test_charger_bay_format(errors: Found) -> None:
    p = only(errors(edit(BASE, "bay: pile-1/1", "bay: pile-1")), "sim.chargers[0].bay")
    assert "'<pile>/<port>'" in p.message


def test_two_chargers_in_one_bay(errors: Found) -> None:
    text = edit(
        BASE,
        "    - {bay: pile-1/1, profile: li48}\n",
        "    - {bay: pile-1/1, profile: li48}\n    - {bay: pile-1/1, profile: lead48}\n",
    )
    assert "second charger" in only(errors(text), "sim.chargers[1].bay").message


def test_car_on_a_pile(errors: Found) -> None:
    p = only(errors(edit(BASE, "device: wb-1", "device: pile-1")), "sim.cars[0].device")
    assert p.message == "'pile-1' is not a wallbox (evse)"


def test_car_phases(errors: Found) -> None:
    text = edit(BASE, "max_a: 16}", "max_a: 16, phases: 2}")
    assert only(errors(text), "sim.cars[0].phases").message == "must be 1 or 3, got 2"


def test_state_of_charge_range(errors: Found) -> None:
    text = edit(BASE, "profile: li48}", "profile: li48, soc: 1.2}")
    assert only(errors(text), "sim.chargers[0].soc").message == "must be in 0..1, got 1.2"


def test_base_load_one_value_per_phase(errors: Found) -> None:
    text = edit(BASE, "amps: [1.0, 0.5]", "amps: [1.0, 0.5, 0.2]")
    p = only(errors(text), "sim.base_load[0].amps")
    assert p.message == "one value per phase of circuit 'row' (2), got 3"


# -- check_shed on a Shed built in code ---------------------------------------------------------


def _coded_shed() -> Shed:
    return Shed(
        source=Path("coded"),
        shed=ShedInfo(name="coded", phases=1),
        circuits=(Circuit(id="main", limit_a=30, breaker=Breaker(32)),),
        buses=(TcpBus(id="l", host="127.0.0.1", port=0),),
        devices=(
            Device(id="p", kind="pile", bus="l", unit=1, circuit="main", phases=(1,), ports=4),
        ),
    )


def test_check_shed_on_a_coded_shed_is_clean() -> None:
    assert check_shed(_coded_shed()) == []


def test_check_shed_on_a_coded_shed_reports_positions() -> None:
    shed = _coded_shed()
    bad = dataclasses.replace(shed.devices[0], unit=0, circuit="nope")
    found = check_shed(dataclasses.replace(shed, devices=(bad,)))
    assert {(p.path, p.line, p.file) for p in found} == {
        ("devices[0].unit", None, "coded"),
        ("devices[0].circuit", None, "coded"),
    }
