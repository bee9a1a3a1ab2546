"""Config text for the tests: a small valid shed as YAML, and helpers to edit and inspect it."""

from __future__ import annotations

from chargectl.config.load import Problem

# A valid 3-phase shed that exercises every section: a sub-circuit on two phases, a TCP and an
# RTU bus, two meters, a pile (with the `phase:` shorthand), a wallbox and the simulator lists.
BASE = """\
shed:
  name: test
  phases: 3
  voltage_v: 230
circuits:
  - id: main
    limit_a: 60
    breaker: {rating_a: 63, curve: C}
    meter: m-main
  - id: row
    parent: main
    limit_a: 30
    breaker: {rating_a: 32}
    phases: [1, 2]
    meter: m-row
buses:
  - id: line-1
    tcp: {host: 127.0.0.1, port: 5020}
  - id: line-2
    rtu: {port: /dev/ttyUSB0, baudrate: 19200, parity: E}
    timeout_s: 0.3
devices:
  - {id: m-main, kind: sdm630, bus: line-1, unit: 10, phases: [1, 2, 3]}
  - {id: m-row, kind: sdm630, bus: line-2, unit: 10, phases: [1, 2, 3]}
  - {id: pile-1, kind: pile, bus: line-2, unit: 1, circuit: row, phase: 1, ports: 10}
  - {id: wb-1, kind: evse, bus: line-1, unit: 2, circuit: main, phases: [1, 2, 3],
     max_current_a: 32}
control: {tick_s: 1.0, watchdog_s: 10}
sim:
  base_load:
    - {circuit: row, amps: [1.0, 0.5]}
  chargers:
    - {bay: pile-1/1, profile: li48}
  cars:
    - {device: wb-1, max_a: 16}
"""


def edit(text: str, old: str, new: str) -> str:
    """Replace the one occurrence of `old` (a test edits exactly what it means to)."""
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


def line_of(text: str, fragment: str) -> int:
    """The 1-based line holding `fragment` (it must occur once)."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if fragment in line]
    assert len(hits) == 1, f"{fragment!r} on lines {hits}"
    return hits[0]


def only(found: list[Problem], path: str) -> Problem:
    """The single problem at `path` (fails listing everything found otherwise)."""
    at = [p for p in found if p.path == path]
    assert len(at) == 1, f"expected one problem at {path!r}, got:\n" + "\n".join(map(str, found))
    return at[0]
