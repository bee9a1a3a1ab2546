"""`check` against device templates (issue 10): a device's settings within its template's
ranges, the safety rules a model must meet, and templates from directories of one's own (the
config's `templates:` and `--templates DIR`). Every rule is shown with a template written to a
temporary directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from chargectl.cli import main
from chargectl.config.load import ConfigError, Problem, load_checked
from chargectl.drivers.template import SHIPPED_DIR
from chargectl.runtime.daemon import build_offline
from tests.config.cfgtext import BASE, edit, line_of, only

Found = Callable[[str], list[Problem]]

PILE = "  - {id: pile-1, kind: pile, bus: line-2, unit: 1, circuit: row, phase: 1, ports: 10}\n"
UNSAFE = "the shed would not be safe with the daemon dead"

# A new pile model, one file: relays and the fail-safe mask in coils, 4 sockets.
ACME4 = """\
kind: acme4
role: pile
description: Acme 4-socket pile (a model made up for the tests)
source: none
ports: 4
fields:
  port_current: {table: input, address: 0, per_port: true, scale: 0.01}
  relay_closed: {table: discrete, address: 0, per_port: true}
  relay: {table: coil, address: 0, per_port: true}
  failsafe_mask: {table: coil, address: 8, per_port: true}
  watchdog_timeout: {table: holding, address: 0}
  heartbeat: {table: holding, address: 1}
  port_power_limit: {table: holding, address: 2, min: 100, max: 2500}
"""
ACME_DEVICE = (
    "  - {id: acme-1, kind: acme4, bus: line-2, unit: 5, circuit: row, phase: 2, ports: 4}\n"
)

# A new wallbox model, one file.
BOXY = """\
kind: boxy
role: evse
description: Boxy wallbox (a model made up for the tests)
phases: 3
min_current_a: 6
max_current_a: [6, 32]
step_a: 1
fields:
  cp_state: {address: 0, codes: {1: A, 2: B, 3: C, 4: D, 5: E, 6: F}}
  current_l1: {address: 1, scale: 0.1}
  current_l2: {address: 2, scale: 0.1}
  current_l3: {address: 3, scale: 0.1}
  current_limit: {table: holding, address: 0, min: 6, max: 32}
  failsafe_current: {table: holding, address: 1}
  watchdog_timeout: {table: holding, address: 2}
  heartbeat: {table: holding, address: 3}
"""
BOXY_DEVICE = (
    "  - {id: boxy-1, kind: boxy, bus: line-1, unit: 6, circuit: main, phases: [1, 2, 3],"
    " max_current_a: 32}\n"
)


def add_device(text: str, line: str) -> str:
    return edit(text, PILE, PILE + line)


def with_templates(text: str, *dirs: str) -> str:
    return text + f"templates: [{', '.join(dirs)}]\n"


def template_dir(tmp_path: Path, *files: str, name: str = "tpl") -> Path:
    d = tmp_path / name
    d.mkdir(exist_ok=True)
    for text in files:
        kind = text.split("kind: ", 1)[1].split("\n", 1)[0]
        (d / f"{kind}.yaml").write_text(text, encoding="utf-8")
    return d


def drop(template: str, field: str) -> str:
    """The template without the line of `field`."""
    lines = [ln for ln in template.splitlines(True) if not ln.startswith(f"  {field}:")]
    assert len(lines) == len(template.splitlines()) - 1, field
    return "".join(lines)


# -- a device's settings against its template -----------------------------------------------


def test_voltbay_refuses_the_default_cut_off(errors: Found) -> None:
    # The config's default 2000 W is beyond the VoltBay's 50..1500 W: the driver would raise
    # at set-up; check says so first, naming device, setting, template and range.
    line = (
        "  - {id: vb-1, kind: voltbay10, bus: line-2, unit: 7, circuit: row, phase: 1, ports: 10}\n"
    )
    text = add_device(BASE, line)
    p = only(errors(text), "devices[3].port_power_limit_w")
    assert p.line == line_of(text, "id: vb-1")
    assert p.message == (
        "pile 'vb-1': 2000 W is outside the per-port cut-off range of its template "
        "'voltbay10' (50..1500 W)"
    )


def test_voltbay_with_a_cut_off_in_its_range_passes(write: Callable[[str], Path]) -> None:
    line = (
        "  - {id: vb-1, kind: voltbay10, bus: line-2, unit: 7, circuit: row, phase: 1,"
        " ports: 10, port_power_limit_w: 1500}\n"
    )
    shed = load_checked(write(add_device(BASE, line))).shed
    daemon = build_offline(shed)
    assert daemon.layout.n_bays == 21


@pytest.mark.parametrize("ports", [8, 12])
def test_a_fixed_port_count_is_that_count(errors: Found, ports: int) -> None:
    line = (
        "  - {id: vb-1, kind: voltbay10, bus: line-2, unit: 7, circuit: row, phase: 1,"
        f" ports: {ports}, port_power_limit_w: 1000}}\n"
    )
    p = only(errors(add_device(BASE, line)), "devices[3].ports")
    assert p.message == f"a pile of kind 'voltbay10' has exactly 10 ports, got {ports}"


@pytest.mark.parametrize("value", [5, 33])
def test_wallbox_maximum_within_its_template(errors: Found, value: int) -> None:
    line = (
        "  - {id: alfen-1, kind: alfen_ng9xx, bus: line-1, unit: 8, circuit: main,"
        f" phases: [1, 2, 3], max_current_a: {value}}}\n"
    )
    p = only(errors(add_device(BASE, line)), "devices[3].max_current_a")
    assert p.message == f"wallbox 'alfen-1': its template 'alfen_ng9xx' takes 6..32 A, got {value}"


def test_meter_phases_come_from_its_template(tmp_path: Path, errors: Found) -> None:
    # A 1-channel meter of one's own: its template says how many phases it measures.
    meter = (SHIPPED_DIR / "sdm120.yaml").read_text().replace("kind: sdm120", "kind: mono1")
    d = template_dir(tmp_path, meter)
    text = with_templates(edit(BASE, "{id: m-row, kind: sdm630", "{id: m-row, kind: mono1"), str(d))
    assert only(errors(text), "devices[1].phases").message == "kind 'mono1' measures 1 phase, got 3"


def test_unknown_kind_names_the_kinds_and_the_directories(tmp_path: Path, errors: Found) -> None:
    d = template_dir(tmp_path, ACME4)
    text = with_templates(edit(BASE, "kind: pile", "kind: toaster"), str(d))
    p = only(errors(text), "devices[2].kind")
    assert p.message.startswith("unknown device kind 'toaster'; known: acme4, alfen_ng9xx, ")
    assert f"templates looked for in {SHIPPED_DIR} (shipped), {d}" in p.message


def test_a_wallbox_with_more_phases_than_its_template(tmp_path: Path, errors: Found) -> None:
    d = template_dir(tmp_path, BOXY.replace("phases: 3", "phases: 1"))
    p = only(errors(with_templates(add_device(BASE, BOXY_DEVICE), str(d))), "devices[3].phases")
    assert p.message == "wallbox 'boxy-1': its template 'boxy' carries 1 phase, got 3"


def test_a_mask_register_too_narrow_for_the_ports(tmp_path: Path, errors: Found) -> None:
    wide = ACME4.replace("ports: 4", "ports: {min: 1, max: 32}").replace(
        "failsafe_mask: {table: coil, address: 8, per_port: true}",
        "failsafe_mask: {table: holding, address: 3}",  # a u16: 16 ports
    )
    d = template_dir(tmp_path, wide)
    text = with_templates(add_device(BASE, ACME_DEVICE.replace("ports: 4", "ports: 20")), str(d))
    p = only(errors(text), "devices[3].ports")
    assert (
        p.message
        == "pile 'acme-1': the failsafe_mask of its template 'acme4' (u16) holds 16 ports, got 20"
    )


def test_a_box_set_watchdog_must_outlast_a_tick(tmp_path: Path, errors: Found) -> None:
    box = drop(drop(BOXY, "watchdog_timeout"), "heartbeat").replace(
        "step_a: 1\n", "step_a: 1\nwatchdog_s: 2\nsetpoint_heartbeat: true\n"
    )
    d = template_dir(tmp_path, box)
    text = edit(with_templates(add_device(BASE, BOXY_DEVICE), str(d)), "tick_s: 1.0", "tick_s: 2.0")
    p = only(errors(text), "devices[3].kind")
    assert "sets a watchdog of 2 s on the box, not longer than control.tick_s (2 s)" in p.message


# -- the safety rules --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "missing"),
    [
        ("heartbeat", "has no watchdog (fields watchdog_timeout and heartbeat)"),
        ("watchdog_timeout", "has no watchdog (fields watchdog_timeout and heartbeat)"),
        ("failsafe_mask", "has no fail-safe mask (field failsafe_mask)"),
        ("port_power_limit", "has no per-port power cut-off (field port_power_limit)"),
    ],
)
def test_an_unsafe_pile_model_is_refused(
    tmp_path: Path, errors: Found, field: str, missing: str
) -> None:
    d = template_dir(tmp_path, drop(ACME4, field))
    text = with_templates(add_device(BASE, ACME_DEVICE), str(d))
    p = only(errors(text), "devices[3].kind")
    assert p.message.startswith(f"pile 'acme-1': its template 'acme4' {missing}")
    assert p.message.endswith(UNSAFE)
    assert p.line == line_of(text, "id: acme-1")


@pytest.mark.parametrize(
    ("field", "missing"),
    [
        ("heartbeat", "has no watchdog"),
        ("failsafe_current", "has no fail-safe current (field failsafe_current): nothing takes"),
    ],
)
def test_an_unsafe_wallbox_model_is_refused(
    tmp_path: Path, errors: Found, field: str, missing: str
) -> None:
    d = template_dir(tmp_path, drop(BOXY, field))
    text = with_templates(add_device(BASE, BOXY_DEVICE), str(d))
    p = only(errors(text), "devices[3].kind")
    assert p.message.startswith(f"evse 'boxy-1': its template 'boxy' {missing}")
    assert p.message.endswith(UNSAFE)


def test_a_wallbox_whose_watchdog_is_set_on_the_box_is_safe(
    tmp_path: Path, write: Callable[[str], Path]
) -> None:
    # No heartbeat register: a box-set timeout that every setpoint write restarts (Alfen).
    box = drop(drop(BOXY, "watchdog_timeout"), "heartbeat").replace(
        "step_a: 1\n", "step_a: 1\nwatchdog_s: 60\nsetpoint_heartbeat: true\n"
    )
    d = template_dir(tmp_path, box)
    load_checked(write(with_templates(add_device(BASE, BOXY_DEVICE), str(d))))


# -- a model added as one template file --------------------------------------------------------


def test_a_model_in_the_configs_template_directory(
    tmp_path: Path, write: Callable[[str], Path]
) -> None:
    template_dir(tmp_path, ACME4, BOXY)  # beside the config: `templates: [tpl]` is relative
    text = with_templates(add_device(add_device(BASE, BOXY_DEVICE), ACME_DEVICE), "tpl")
    shed = load_checked(write(text)).shed
    assert shed.templates == ("tpl",)
    daemon = build_offline(shed)
    assert [b.id for b in daemon.layout.bays if b.device == "acme-1"] == [
        f"acme-1/{p}" for p in range(1, 5)
    ]
    assert "boxy-1" in daemon.layout.evse_index
    assert daemon.io.drivers["acme-1"].template.kind == "acme4"
    assert daemon.io.drivers["boxy-1"].template.kind == "boxy"
    assert daemon.topology.roles["acme-1"] == "pile"


def test_a_model_given_on_the_command_line(
    tmp_path: Path, write: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    d = template_dir(tmp_path, ACME4, name="elsewhere")
    path = write(add_device(BASE, ACME_DEVICE))
    with pytest.raises(ConfigError):
        load_checked(path)  # without the directory the kind is unknown
    assert main(["check", str(path), "--templates", str(d)]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: ok: ")
    shed = load_checked(path, [d]).shed
    assert shed.templates == (str(d),)
    assert build_offline(shed).layout.n_bays == 15


def test_check_counts_the_bays_of_a_new_model(
    tmp_path: Path, write: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    d = template_dir(tmp_path, ACME4, name="elsewhere")
    path = write(add_device(BASE, ACME_DEVICE))
    assert main(["check", "--templates", str(d), str(path)]) == 0
    out = capsys.readouterr().out
    assert out == f"{path}: ok: 2 circuits, 2 buses, 5 devices, 15 bays, 0 warnings\n"


def test_templates_from_the_config_and_the_command_line_together(
    tmp_path: Path, write: Callable[[str], Path]
) -> None:
    template_dir(tmp_path, ACME4)
    other = template_dir(tmp_path, BOXY, name="other")
    text = with_templates(add_device(add_device(BASE, BOXY_DEVICE), ACME_DEVICE), "tpl")
    shed = load_checked(write(text), [other]).shed
    assert shed.templates == ("tpl", str(other))
    assert build_offline(shed).layout.n_bays == 16


# -- a template directory's own problems -------------------------------------------------------


def test_a_malformed_template_is_refused_at_its_line(tmp_path: Path, errors: Found) -> None:
    bad = ACME4.replace("scale: 0.01}", "scale: 0}")
    d = template_dir(tmp_path, bad)
    found = errors(with_templates(add_device(BASE, ACME_DEVICE), str(d)))
    file = str(d / "acme4.yaml")
    [p] = [p for p in found if p.file == file]
    assert (p.line, p.path) == (line_of(bad, "port_current:"), "fields.port_current.scale")
    assert p.message == "must be a non-zero number, got 0"
    # The device of that kind is then of an unknown kind, and says where it was looked for.
    assert str(d) in only(found, "devices[3].kind").message


def test_a_malformed_template_through_the_cli(
    tmp_path: Path, write: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    d = template_dir(tmp_path, ACME4.replace("role: pile", "role: pyle"), name="elsewhere")
    path = write(add_device(BASE, ACME_DEVICE))
    assert main(["check", str(path), "--templates", str(d)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == f"{path}: 2 errors, 0 warnings"
    assert f"{d / 'acme4.yaml'}:2: role: required, one of pile, evse, meter; got 'pyle'" in err
    assert not any("Traceback" in line for line in err)


def test_a_yaml_error_in_a_template(tmp_path: Path, errors: Found) -> None:
    d = template_dir(tmp_path, ACME4 + "  relay: [\n")
    found = errors(with_templates(add_device(BASE, ACME_DEVICE), str(d)))
    [p] = [p for p in found if p.file == str(d / "acme4.yaml")]
    assert p.path == "(file)" and p.message.startswith("YAML syntax error")


def test_a_shipped_kind_defined_again(tmp_path: Path, errors: Found) -> None:
    d = template_dir(tmp_path, ACME4.replace("kind: acme4", "kind: pile"))
    found = errors(with_templates(BASE, str(d)))
    [p] = [p for p in found if p.file == str(d / "pile.yaml")]
    assert (p.line, p.path) == (1, "kind")
    assert p.message == f"'pile' is already defined in {SHIPPED_DIR / 'pile.yaml'}"


def test_a_missing_template_directory(errors: Found) -> None:
    text = with_templates(BASE, "no-such-dir")
    p = only(errors(text), "templates[0]")
    assert p.line == line_of(text, "templates:")
    assert p.message.startswith("templates directory not found: ") and p.message.endswith(
        "no-such-dir"
    )


def test_an_empty_template_directory_name(errors: Found) -> None:
    p = only(errors(with_templates(BASE, '""')), "templates[0]")
    assert p.message == "must not be empty (a directory of templates)"


def test_a_template_fixed_on_disk_is_read_again(
    tmp_path: Path, errors: Found, write: Callable[[str], Path]
) -> None:
    d = template_dir(tmp_path, drop(ACME4, "heartbeat"))
    text = with_templates(add_device(BASE, ACME_DEVICE), str(d))
    assert UNSAFE in only(errors(text), "devices[3].kind").message
    (d / "acme4.yaml").write_text(ACME4 + "# fixed\n", encoding="utf-8")
    load_checked(write(text))


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        (("role: pile", "role: !weird pile"), "role", "unreadable value 'pile'"),
        (("ports: 4", "ports: !!int four"), "ports", "unreadable value 'four'"),
        (("source: none", "source: &a [*a]"), "source[0]", "an alias within itself"),
        (
            ("scale: 0.01}", "scale: 0.01, type: {a: 1}}"),
            "fields.port_current.type",
            "must be one of",
        ),
        (("fields:\n", "fields:\n  <<: {}\n"), "fields", "unreadable value '<<'"),
    ],
)
def test_odd_yaml_in_a_template_is_a_problem_not_a_traceback(
    tmp_path: Path, errors: Found, change: tuple[str, str], path: str, message: str
) -> None:
    bad = edit(ACME4, *change)
    d = template_dir(tmp_path, bad)
    found = errors(with_templates(add_device(BASE, ACME_DEVICE), str(d)))
    [p] = [p for p in found if p.file == str(d / "acme4.yaml")]
    assert p.path == path and message in p.message
    assert p.line == line_of(bad, change[1].strip().splitlines()[-1])
