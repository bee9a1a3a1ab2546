"""The holes `check` let through to `run` (issue 9), one test each, and the assembly helper."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from chargectl.config.load import Problem, load_checked
from chargectl.runtime.daemon import build_offline
from tests.config.cfgtext import BASE, edit, line_of, only

Found = Callable[[str], list[Problem]]

PILE = "  - {id: pile-1, kind: pile, bus: line-2, unit: 1, circuit: row, phase: 1, ports: 10}\n"


def add_device(text: str, line: str) -> str:
    return edit(text, PILE, PILE + line)


def test_a_wallbox_named_like_a_pile_port_is_refused(errors: Found) -> None:
    line = "  - {id: pile-1/3, kind: evse, bus: line-1, unit: 3, circuit: main, phase: 1}\n"
    text = add_device(BASE, line)
    p = only(errors(text), "devices[3].id")
    assert p.line == line_of(text, "id: pile-1/3")
    assert "bay 'pile-1/3' of wallbox 'pile-1/3' is also the bay of port 3 of pile 'pile-1'" in (
        p.message
    )
    assert "must be unique" in p.message


def test_a_pile_whose_ports_meet_a_wallbox_is_refused(errors: Found) -> None:
    # The pile comes second: the problem is reported where the second bay appears.
    line = "  - {id: wb-1/1, kind: evse, bus: line-1, unit: 3, circuit: main, phase: 1}\n"
    text = edit(
        add_device(BASE, line),
        line,
        line
        + "  - {id: wb-1, kind: pile, bus: line-1, unit: 4, circuit: row, phase: 1, ports: 2}\n",
    )
    text = edit(text, "  - {id: wb-1, kind: evse", "  - {id: wb-2, kind: evse")
    text = edit(text, "device: wb-1", "device: wb-2")
    p = only(errors(text), "devices[4].id")
    assert p.message.startswith(
        "bay 'wb-1/1' of port 1 of pile 'wb-1' is also the bay of wallbox 'wb-1/1' (line 26)"
    )


@pytest.mark.parametrize(
    ("old", "new", "value"),
    [
        ("limit_a: 60", "limit_a: 6e1", 60.0),
        ("limit_a: 60", "limit_a: 1.2E+1", 12.0),
        ("limit_a: 60", "limit_a: .6e2", 60.0),
    ],
)
def test_exponent_numbers_are_numbers(
    write: Callable[[str], Path], old: str, new: str, value: float
) -> None:
    # YAML 1.1 reads `6e1` as a string; where a number belongs it is read as the number.
    shed = load_checked(write(edit(BASE, old, new))).shed
    assert shed.circuits[0].limit_a == value


@pytest.mark.parametrize(
    ("old", "new", "path", "message"),
    [
        ("limit_a: 60", "limit_a: 1e400", "circuits[0].limit_a", "(not finite)"),
        ("limit_a: 60", "limit_a: -1e300", "circuits[0].limit_a", "must be > 0"),
        ("limit_a: 60", "limit_a: .nan", "circuits[0].limit_a", "(not finite)"),
        ("limit_a: 60", 'limit_a: "6e1"', "circuits[0].limit_a", "got a string '6e1'"),
        ("unit: 1,", "unit: 1e0,", "devices[2].unit", "expected an integer, got a number"),
        ("id: pile-1,", "id: 1e3,", "devices[2].id", "expected a string, got a number"),
    ],
)
def test_exponent_numbers_are_never_strings(
    errors: Found, old: str, new: str, path: str, message: str
) -> None:
    p = only(errors(edit(BASE, old, new)), path)
    assert message in p.message


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ("name: test", 'name: "te\\u202est"', "shed.name"),
        ("id: pile-1,", 'id: "pile\\u00001",', "devices[2].id"),
        ("id: row", 'id: "row\\n"', "circuits[1].id"),
    ],
)
def test_control_and_bidi_characters_in_names_and_ids(
    errors: Found, old: str, new: str, path: str
) -> None:
    p = next(p for p in errors(edit(BASE, old, new)) if p.path == path)
    assert "control or bidi characters" in p.message


@pytest.mark.parametrize(
    ("addition", "path", "message"),
    [
        ('ledger: "a\\u0000b.db"\n', "ledger", "without control characters"),
        ("ledger: data/\n", "ledger", "names a file, not a folder"),
        ("api: {host: '::1'}\n", "api.host", "an IPv4 address of this machine or localhost"),
        ("api: {host: 127.0.0.1x}\n", "api.host", "IPv4 address"),
        ("metrics: {host: my-box}\n", "metrics.host", "an IP address of this machine"),
        ("mqtt: {host: 'broker example'}\n", "mqtt.host", "a host name or an IP address"),
        ("mqtt: {host: 'bröker.example'}\n", "mqtt.host", "a host name or an IP address"),
    ],
)
def test_paths_and_hosts_run_could_not_use(
    errors: Found, addition: str, path: str, message: str
) -> None:
    found = errors(BASE + addition)
    assert any(p.path == path and message in p.message for p in found), found


def test_a_tcp_bus_host_must_be_a_host(errors: Found) -> None:
    p = only(
        errors(edit(BASE, "host: 127.0.0.1, port: 5020", "host: 'a b', port: 5020")),
        "buses[0].tcp.host",
    )
    assert "a host name or an IP address" in p.message


def test_an_rtu_port_with_a_nul_is_refused(errors: Found) -> None:
    text = edit(BASE, "port: /dev/ttyUSB0", 'port: "/dev/tty\\u0000"')
    p = only(errors(text), "buses[1].rtu.port")
    assert "without control characters" in p.message


@pytest.mark.parametrize(
    "addition",
    [
        "metrics: {host: '::1', port: 9100}\n",
        "metrics: {host: localhost, port: 9100}\n",
        "api: {host: localhost}\n",
        "mqtt: {host: broker-1.example.net.}\n",
        "mqtt: {host: 'fd00::7'}\n",
    ],
)
def test_usable_hosts_pass(write: Callable[[str], Path], addition: str) -> None:
    text = edit(BASE, "name: test", "name: test") + addition
    build_offline(load_checked(write(text)).shed)


def test_build_offline_leaves_the_ledger_alone(write: Callable[[str], Path]) -> None:
    path = write(BASE + "ledger: shed.db\n")
    daemon = build_offline(load_checked(path).shed)
    assert daemon.layout.n_bays == 11
    assert not (path.parent / "shed.db").exists()
    assert daemon.shed.ledger == "shed.db"
