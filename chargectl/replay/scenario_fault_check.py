"""The scenario's faults, checked against the simulator's actions (their parameters and
types), the fault table (`scenario_faults`: what each acts on, whether it ends) and the shed's
topology (the device or bay it names, and its role)."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from types import MappingProxyType
from typing import Any

import yaml

from chargectl.config.convert import Converter, _as_number, describe, node_line
from chargectl.config.problems import join
from chargectl.config.schema import Shed
from chargectl.drivers.registry import find
from chargectl.replay.scenario_faults import FAULTS, SET_BY_REPLAY, value_problem
from chargectl.replay.scenario_types import Fault, Time
from chargectl.sim.actions import ACTIONS, REQUIRED
from chargectl.topology import Topology

_DAY = 86400.0


def hint(ref: str, names: Iterable[str], limit: int = 12) -> str:
    """`; did you mean 'x'?` or `; known: a, b, ...`."""
    names = sorted(names)
    close = difflib.get_close_matches(ref, names, n=1)
    if close:
        return f"; did you mean '{close[0]}'?"
    shown = ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")
    return f"; known: {shown or 'none'}"


class FaultChecks:
    """The fault part of `scenario_check.Checker` (which provides these)."""

    conv: Converter
    topology: Topology | None
    shed: Shed | None

    def report(self, path: str, message: str) -> None:
        raise NotImplementedError

    def time_of_day(self, value: Time, path: str) -> float | None:
        raise NotImplementedError

    def duration(self, value: Time, path: str, least: float = 0.0) -> float | None:
        raise NotImplementedError

    # -- faults ----------------------------------------------------------------------------

    def faults(
        self, node: yaml.Node | None, start: float | None, duration: float | None
    ) -> list[Fault] | None:
        if node is None:
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.conv.problem("faults", node_line(node), f"expected a list, got {describe(node)}")
            return None
        self.conv.lines["faults"] = node_line(node)
        out: list[Fault] = []
        ok = True
        for i, item in enumerate(node.value):
            fault = self.fault(item, f"faults[{i}]", start, duration)
            ok = ok and fault is not None
            if fault is not None:
                out.append(fault)
        return out if ok else None

    def fault(
        self, node: yaml.Node, path: str, start: float | None, duration: float | None
    ) -> Fault | None:
        conv = self.conv
        if not isinstance(node, yaml.MappingNode):
            conv.problem(
                path,
                node_line(node),
                f"expected a mapping (at, do, for, ...), got {describe(node)}",
            )
            return None
        conv.lines[path] = node_line(node)
        pairs = conv.pairs(node, path)
        values: dict[str, Any] = {}
        for key, (_, vnode) in pairs.items():
            conv.lines[join(path, key)] = node_line(vnode)
            if not isinstance(vnode, yaml.ScalarNode):
                self.report(join(path, key), f"expected a plain value, got {describe(vnode)}")
                return None
            try:
                values[key] = _as_number(vnode, conv._scalars.construct_object(vnode))
            except (yaml.YAMLError, ValueError, TypeError) as exc:
                self.report(join(path, key), f"unreadable value: {exc}")
                return None
        kind = values.get("do")
        if not isinstance(kind, str) or kind not in FAULTS:
            self.report(
                join(path, "do"),
                f"a fault expected, got {kind!r}{hint(str(kind), FAULTS, limit=len(FAULTS))}",
            )
            return None
        row = FAULTS[kind]
        params = {p.name: p for p in (ACTIONS[kind].params if kind in ACTIONS else row.params)}
        ok = True
        allowed = (set(params) - SET_BY_REPLAY) | {"do", "at"}
        if row.target != "staff":  # a staff action is one moment: no 'for'
            allowed.add("for")
        for key in sorted(set(values) - allowed):
            why = (
                "the replay sets it (on at 'at', off after 'for')"
                if key in SET_BY_REPLAY
                else f"'{kind}' takes: {', '.join(sorted(allowed))}"
            )
            self.report(join(path, key), f"unknown parameter '{key}'; {why}")
            ok = False
        action: dict[str, Any] = {"do": kind}
        for name, p in params.items():
            if name in SET_BY_REPLAY:
                continue
            if name not in values:
                if p.default is REQUIRED:
                    self.report(join(path, name), f"missing key '{name}' (required by '{kind}')")
                    ok = False
                continue
            v = values[name]
            kinds = p.kind if isinstance(p.kind, tuple) else (p.kind,)
            if (
                not isinstance(v, kinds)
                or (isinstance(v, bool) and bool not in kinds)
                or (isinstance(v, float) and not math.isfinite(v))
            ):
                self.report(join(path, name), f"expected {_kind(kinds)}, got {v!r}")
                ok = False
                continue
            bad = value_problem(kind, name, v)
            if bad:
                self.report(join(path, name), bad)
                ok = False
            action[name] = v
        ok = self.target(row.name, action, path) and ok
        at = None
        if "at" not in values:
            self.report(join(path, "at"), "missing key 'at' (a time of day)")
        else:
            tod = self.time_of_day(values["at"], join(path, "at"))
            if tod is not None and start is not None and duration is not None:
                at = (tod - start) % _DAY
                if at >= duration:
                    self.report(join(path, "at"), f"{values['at']} falls after the replay's end")
                    at = None
        for_s = None
        if "for" in values and row.target != "staff":  # a staff 'for': reported above
            if row.end is None and not row.needs_for:
                self.report(join(path, "for"), f"'{kind}' does not end on its own: no 'for'")
                ok = False
            else:
                for_s = self.duration(values["for"], join(path, "for"), least=1.0)
                ok = ok and for_s is not None
        elif row.needs_for:
            self.report(join(path, "for"), f"missing key 'for' ('{kind}' needs how long)")
            ok = False
        if not ok or at is None:
            return None
        return Fault(kind, at, for_s, MappingProxyType(action), path)

    def target(self, kind: str, action: dict[str, Any], path: str) -> bool:
        topo = self.topology
        if topo is None:
            return True
        row = FAULTS[kind]
        if row.target == "device" and isinstance(action.get("device"), str):
            dev = action["device"]
            role = topo.roles.get(dev)
            if role is None:
                self.report(join(path, "device"), f"unknown device '{dev}'{hint(dev, topo.roles)}")
                return False
            if row.roles and role not in row.roles:
                want = " or ".join(sorted(row.roles))
                self.report(join(path, "device"), f"'{kind}' needs a {want}, '{dev}' is a {role}")
                return False
            if row.status_bit is not None and self.shed is not None:
                kinds = {d.id: d.kind for d in self.shed.devices}
                t = find(self.shed.template_dirs()).templates.get(kinds.get(dev, ""))
                status = None if t is None else t.fields.get("status")
                if status is None or row.status_bit not in status.bits:
                    self.report(
                        join(path, "device"),
                        f"'{dev}' has no {row.status_bit} input in its template",
                    )
                    return False
        if row.target in ("bay", "staff") and isinstance(action.get("bay"), str):
            bay = action["bay"]
            if bay not in topo.bay_index:
                self.report(join(path, "bay"), f"unknown bay '{bay}'{hint(bay, topo.bay_ids)}")
                return False
            if row.sockets_only and not topo.bays[topo.bay_index[bay]].is_socket:
                self.report(
                    join(path, "bay"), f"'{kind}' needs a pile's socket, '{bay}' is a wallbox"
                )
                return False
        return True


def _kind(kinds: tuple[type, ...]) -> str:
    if set(kinds) >= {int, float}:
        return "a number" + (" or null" if type(None) in kinds else "")
    names = {
        "NoneType": "null",
        "int": "an integer",
        "float": "a number",
        "str": "a string",
        "bool": "true or false",
    }
    return " or ".join(names.get(k.__name__, k.__name__) for k in kinds)
