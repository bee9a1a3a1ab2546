"""Scenario files: timed actions of the same vocabulary as the control API (sim/actions.py).

    # times are simulated seconds from the start: 90, "90s", "1m30s", "2h", "01:30:00"
    end: 2h                 # optional: the run stops here
    events:
      - {at: 0, do: plug, bay: pile-a/3, profile: li48, soc: 0.2}
      - {at: 5m, do: tap, bay: pile-a/3, uid: 04a1b2c3}
      - {at: 1h, do: heater, bay: pile-a/5, watts: 2000}

A scenario is checked whole before anything runs: every problem is reported with the file,
the line and the path (`events[2].bay: ...`), and names are checked against the shed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from chargectl.config.schema import Shed
from chargectl.drivers.template import Template
from chargectl.sim.actions import ActionError, check
from chargectl.topology import topology_of


class ScenarioError(ValueError):
    """A scenario file that cannot run; `problems` lists every one found."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Event:
    at: float  # simulated seconds from the start
    action: dict[str, Any]  # {"do": ..., params}
    where: str  # "file:line: events[i]" for messages


@dataclass(frozen=True, slots=True)
class Scenario:
    source: str
    events: tuple[Event, ...]  # sorted by time (stable: file order within one time)
    end: float | None = None


_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")
_CLOCK = re.compile(r"^(\d+):([0-5]\d)(?::([0-5]\d(?:\.\d+)?))?$")


def parse_time(value: object) -> float:
    """90, 90.5, "90s", "1m30s", "2h", "01:30" (h:mm) or "01:30:15"; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"a time expected, got {value!r}")
    if isinstance(value, int | float):
        t = float(value)
    elif isinstance(value, str) and (m := _CLOCK.match(value.strip())):
        t = int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3] or 0)
    elif isinstance(value, str) and value.strip() and (m := _DURATION.match(value.strip())):
        t = float(m[1] or 0) * 3600 + float(m[2] or 0) * 60 + float(m[3] or 0)
    else:
        raise ValueError(f"a time expected (90, '90s', '1m30s', '2h', '01:30'), got {value!r}")
    if t < 0:
        raise ValueError(f"a time must be >= 0, got {value!r}")
    return t


def load_scenario(
    path: str | Path, shed: Shed | None = None, templates: Mapping[str, Template] | None = None
) -> Scenario:
    """`templates`: the shed's kinds (default: the shipped ones), to know its bays."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError([f"{p}: cannot read: {exc.strerror or exc}"]) from None
    return parse_scenario(text, str(p), shed, templates)


def parse_scenario(
    text: str,
    source: str,
    shed: Shed | None = None,
    templates: Mapping[str, Template] | None = None,
) -> Scenario:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ScenarioError([f"{source}{line}: not valid YAML: {exc}"]) from None
    if root is None:
        raise ScenarioError([f"{source}: empty scenario (expected 'events:')"])
    data = yaml.safe_load(text)
    problems: list[str] = []
    bays = set(topology_of(shed, templates).bay_ids) if shed is not None else set()

    def line_of(node: yaml.Node | None) -> str:
        return f"{source}:{node.start_mark.line + 1}" if node is not None else source

    if not isinstance(data, dict) or not isinstance(root, yaml.MappingNode):
        raise ScenarioError([f"{line_of(root)}: a mapping with 'events' expected"])
    nodes = {k.value: v for k, v in root.value}
    for key in sorted(set(data) - {"events", "end"}):
        problems.append(f"{line_of(nodes.get(key))}: {key}: unknown key (known: end, events)")
    end: float | None = None
    if "end" in data:
        try:
            end = parse_time(data["end"])
        except ValueError as exc:
            problems.append(f"{line_of(nodes.get('end'))}: end: {exc}")
    raw = data.get("events")
    ev_node = nodes.get("events")
    events: list[Event] = []
    if not isinstance(raw, list) or not isinstance(ev_node, yaml.SequenceNode):
        problems.append(f"{line_of(ev_node or root)}: events: a list of events expected")
        raw = []
    for i, item in enumerate(raw):
        node = ev_node.value[i] if isinstance(ev_node, yaml.SequenceNode) else None
        where = f"{line_of(node)}: events[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: a mapping expected (at, do, ...)")
            continue
        if "at" not in item:
            problems.append(f"{where}.at: required")
            continue
        try:
            at = parse_time(item["at"])
        except ValueError as exc:
            problems.append(f"{where}.at: {exc}")
            continue
        try:
            check(item, where)
        except ActionError as exc:
            problems.append(str(exc))
            continue
        if shed is not None:
            problems += _check_names(item, shed, where, bays)
        action = {k: v for k, v in item.items() if k != "at"}
        events.append(Event(at, action, where))
    if problems:
        raise ScenarioError(problems)
    events.sort(key=lambda e: e.at)
    return Scenario(source, tuple(events), end)


def _check_names(item: dict[str, Any], shed: Shed, where: str, bays: set[str]) -> list[str]:
    """The names an event uses exist in the shed (caught before the run, not an hour in)."""
    out: list[str] = []
    devices = {d.id: d for d in shed.devices}
    circuits = {c.id for c in shed.circuits}
    bay = item.get("bay")
    if isinstance(bay, str) and bay not in bays:
        out.append(f"{where}.bay: no bay {bay!r} in the shed")
    dev_id = item.get("device")
    if isinstance(dev_id, str) and dev_id not in devices:
        out.append(f"{where}.device: no device {dev_id!r} in the shed")
    circuit = item.get("circuit")
    if isinstance(circuit, str) and circuit not in circuits:
        out.append(f"{where}.circuit: no circuit {circuit!r} in the shed")
    return out


class ScenarioPlayer:
    """Hands out the events that are due; the runner applies them between steps."""

    def __init__(self, scenario: Scenario, start: float = 0.0) -> None:
        self.scenario = scenario
        self.start = start
        self.next = 0
        self.applied: list[dict[str, Any]] = []  # {"at", "do", "error"} for read-back

    def due(self, now: float) -> list[Event]:
        events = self.scenario.events
        out: list[Event] = []
        while self.next < len(events) and events[self.next].at <= now - self.start + 1e-9:
            out.append(events[self.next])
            self.next += 1
        return out

    def next_at(self) -> float | None:
        events = self.scenario.events
        return self.start + events[self.next].at if self.next < len(events) else None

    def finished(self, now: float) -> bool:
        end = self.scenario.end
        if end is not None:
            return now - self.start >= end - 1e-9
        return False

    def status(self) -> dict[str, Any]:
        return {
            "source": self.scenario.source,
            "events": len(self.scenario.events),
            "applied": self.applied,
            "end": self.scenario.end,
        }
