"""What the semantic checks report into: `Problem` (one line `FILE:LINE: PATH: MESSAGE`) and
`Context`, the shed under check with everything the checks look up (entries by id, the
topology's phases, the device templates) and where each object came from in the file.

The checks themselves are functions over a `Context`, one module per part of the config
(`check_settings`, `check_text`, `check_circuits`, `check_devices`, `check_templates`,
`check_sim`); `chargectl.config.check.check_shed` runs them in order.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from chargectl.config.schema import Shed
from chargectl.drivers.registry import Found, Role, find
from chargectl.drivers.template import Template
from chargectl.topology import SUPPLY_PHASES, topology_of

Severity = Literal["error", "warning"]


def listed(numbers: Iterable[int]) -> str:
    return ", ".join(str(n) for n in numbers)


def a(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong (or doubtful) in a config file."""

    file: str
    line: int | None  # 1-based; None when unknown (a missing file, a Shed built in code)
    path: str  # where in the config: `circuits[1].limit_a`; "" for the file as a whole
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        message = self.message if self.severity == "error" else f"warning: {self.message}"
        # One line per problem, whatever a message quoted (a YAML error can span lines).
        return ": ".join(p for p in (where, self.path, " ".join(message.split())) if p)


class Context:
    """A shed under check and the problems found so far.

    `where`: id(object) -> its path in the file; `lines`: path -> line; `left_out`: per
    section, the ids of entries the loader left out for their own problems (a reference to
    one is not "unknown"). A Shed built in code has none of them: paths are positions.
    """

    def __init__(
        self,
        shed: Shed,
        where: Mapping[int, str],
        lines: Mapping[str, int],
        left_out: Mapping[str, set[str]],
    ) -> None:
        self.shed = shed
        self.where = where
        self.lines = lines
        self.left_out = left_out
        self.problems: list[Problem] = []
        self.supply = SUPPLY_PHASES.get(shed.shed.phases, (1, 2, 3))
        self.circuits = {c.id: c for c in shed.circuits}
        self.devices = {d.id: d for d in shed.devices}
        self.buses = {b.id: b for b in shed.buses}
        # Phases of each circuit: the topology's (never raises; a circuit in a cycle or under
        # an unknown parent carries the supply's), so check and the daemon agree. Of the
        # circuits alone: a pile's `ports` is not checked yet here (2**63 would be its bays).
        self.topology = topology_of(dataclasses.replace(shed, devices=()))
        self.found: Found = find(shed.template_dirs())

    # -- lookups ---------------------------------------------------------------------------

    def phases_of(self, circuit_id: str) -> tuple[int, ...]:
        return self.topology.phases_of(circuit_id)

    def template(self, kind: str) -> Template | None:
        return self.found.templates.get(kind)

    def role(self, kind: str) -> Role | None:
        return self.found.role(kind)

    # -- reporting -------------------------------------------------------------------------

    def path(self, obj: object, fallback: str) -> str:
        return self.where.get(id(obj), fallback)

    def line(self, path: str) -> int | None:
        # The line of the path, or of its nearest enclosing part present in the file.
        while path:
            if path in self.lines:
                return self.lines[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return None

    def report(self, path: str, message: str, severity: Severity = "error") -> None:
        file = str(self.shed.source)
        self.problems.append(Problem(file, self.line(path), path, message, severity))

    def warn(self, path: str, message: str) -> None:
        self.report(path, message, "warning")

    def known(self, section: str, ref: str) -> bool:
        """Whether `ref` names an entry of `section`, or one left out for its own problems."""
        tables: dict[str, Mapping[str, object]] = {
            "circuits": self.circuits,
            "buses": self.buses,
            "devices": self.devices,
        }
        return ref in tables[section] or ref in self.left_out.get(section, set())

    def unknown(self, path: str, what: str, ref: str, names: Iterable[str]) -> None:
        names = sorted(names)
        close = difflib.get_close_matches(ref, names, n=1)
        hint = (
            f"; did you mean '{close[0]}'?" if close else f"; known: {', '.join(names) or 'none'}"
        )
        self.report(path, f"unknown {what} '{ref}'{hint}")
