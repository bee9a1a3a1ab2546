"""Pass 1 of the config loader: the composed YAML nodes (they keep their line numbers) ->
the frozen dataclasses of `chargectl.config.schema`, driven by the field types.

Unknown keys, wrong types, missing keys and duplicate keys are found generically, each with its
path (`circuits[1].limit_a`) and line. It is best effort: a broken list entry is left out and a
broken field with a default takes the default, so that pass 2 (`chargectl.config.check`) still
runs on everything that did convert. Whatever was left out is remembered (`left_out`) so that
references to it are not reported a second time.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml

from chargectl.config.problems import Problem, join
from chargectl.config.schema import Bus, Circuit, Device, RtuBus, Shed, TcpBus

YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Bad:
    """A value that did not convert (its problem is recorded already)."""


_BAD = _Bad()

_NONE = type(None)
_MERGE = "tag:yaml.org,2002:merge"


def node_line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def describe(node: yaml.Node) -> str:
    """What a node holds, for messages: `a list`, `an integer 7`, `a string 'x'`, `null`."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    value = _scalar_value(node)
    if value is None:
        return "null"
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(
        type(value), type(value).__name__
    )
    return f"{kind} {value!r}"


def _scalar_value(node: yaml.Node) -> Any:
    try:
        return _as_number(node, yaml.constructor.SafeConstructor().construct_object(node))
    except (yaml.YAMLError, ValueError):  # `!!int x`: PyYAML raises ValueError
        return node.value


# YAML 1.1 (PyYAML) reads a float only with a dot and a signed exponent: `1e300`, `1.5e3` and
# `1E-5` come out as strings. Written plain (unquoted) they are read as numbers here, as YAML
# 1.2 reads them, so they are taken where a number belongs and refused where a string does.
_YAML12_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_STR_TAG = "tag:yaml.org,2002:str"


def _as_number(node: yaml.Node, raw: Any) -> Any:
    if (
        isinstance(raw, str)
        and isinstance(node, yaml.ScalarNode)
        and not node.style  # plain: None from PyYAML's loader, '' from its C loader
        and node.tag == _STR_TAG
        and _YAML12_FLOAT.fullmatch(node.value)
    ):
        return float(node.value)
    return raw


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _is_section(tp: Any) -> bool:
    """A mapping or list type (not a plain value): left empty, it means its default."""
    return typing.get_origin(tp) is tuple or dataclasses.is_dataclass(tp)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (types.UnionType, typing.Union):
        names = [_type_name(a) for a in typing.get_args(tp) if a is not _NONE]
        return " or ".join(names) + (" or null" if _NONE in typing.get_args(tp) else "")
    if origin is tuple:
        return "a list"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        tp, str(tp)
    )


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


# Keys a mapping may hold besides its fields: `phase: N` is shorthand for `phases: [N]`.
_SHORTHAND: dict[type, dict[str, str]] = {Device: {"phase": "phases"}, Circuit: {"phase": "phases"}}
# Fields the loader sets itself rather than reading from the file.
_NOT_FROM_FILE: dict[type, frozenset[str]] = {Shed: frozenset({"source"})}
# Sections whose entries carry ids that other entries refer to.
_ID_SECTIONS = ("circuits", "buses", "devices")


class Converter:
    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []
        self.lines: dict[str, int] = {}  # config path -> line
        self.where: dict[int, str] = {}  # id(converted object) -> its config path
        # ids of entries left out because they were broken: not "unknown" when referred to.
        self.left_out: dict[str, set[str]] = {s: set() for s in _ID_SECTIONS}
        self._scalars = yaml.constructor.SafeConstructor()
        self._explicit: dict[int, set[int]] = {}  # id(mapping node) -> ids of its own keys

    def problem(self, path: str, line: int | None, message: str) -> None:
        self.problems.append(Problem(self.file, line, path, message))

    # -- the root and the special shapes ---------------------------------------------------

    def shed(self, root: yaml.MappingNode, source: Path) -> Shed | None:
        fields = self.mapping_fields(root, Shed, "")
        if fields is None:
            return None
        return Shed(source=source, **fields)

    def bus(self, node: yaml.Node, path: str) -> Bus | _Bad:
        """`{id, tcp: {host, port}, timeout_s}` or `{id, rtu: {port, baudrate, ...}}`."""
        if not isinstance(node, yaml.MappingNode):
            self.problem(path, node_line(node), f"expected a mapping, got {describe(node)}")
            return _BAD
        self.lines[path] = node_line(node)
        pairs = self.pairs(node, path)
        kinds = [k for k in ("tcp", "rtu") if k in pairs]
        allowed = {"id", "tcp", "rtu", "timeout_s"}
        self.unknown_keys(pairs, allowed, path)
        ok = True
        if len(kinds) != 1:
            got = "both" if kinds else "neither"
            self.problem(
                path, node_line(node), f"a bus needs exactly one of 'tcp' or 'rtu' ({got})"
            )
            ok = False
        common: dict[str, Any] = {}
        for key, tp in (("id", str), ("timeout_s", float)):
            if key in pairs:
                value = self.value(pairs[key][1], tp, join(path, key))
                ok = ok and value is not _BAD
                common[key] = value
        if "id" not in common:
            self.problem(join(path, "id"), node_line(node), "missing key 'id'")
            ok = False
        if len(kinds) != 1:
            return _BAD
        cls: type[TcpBus] | type[RtuBus] = TcpBus if kinds[0] == "tcp" else RtuBus
        inner = self.mapping_fields(
            pairs[kinds[0]][1], cls, join(path, kinds[0]), skip={"id", "timeout_s"}
        )
        if inner is None or not ok:
            return _BAD
        bus = cls(**common, **inner)
        self.where[id(bus)] = path
        return bus

    # -- generic conversion ----------------------------------------------------------------

    def pairs(self, node: yaml.MappingNode, path: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """The key -> (key node, value node) of a mapping; odd keys are reported.

        `<<: *anchor` merge keys are resolved as YAML says: a key written in the mapping wins
        over a merged one, and only keys written twice in the mapping itself are duplicates.
        """
        if id(node) not in self._explicit:  # a node reached twice (an alias) is flattened once
            self._explicit[id(node)] = {id(k) for k, _ in node.value if k.tag != _MERGE}
            try:
                self._scalars.flatten_mapping(node)
            except yaml.YAMLError as exc:  # `<<:` naming something that is not a mapping
                why = getattr(exc, "problem", None) or exc
                self.problem(path, node_line(node), f"bad merge key: {why}")
                node.value = [(k, v) for k, v in node.value if k.tag != _MERGE]
        explicit = self._explicit[id(node)]
        seen: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = (
                self._scalars.construct_object(key_node)
                if isinstance(key_node, yaml.ScalarNode)
                else None
            )
            if not isinstance(key, str):
                self.problem(
                    path, node_line(key_node), f"keys must be names, got {describe(key_node)}"
                )
                continue
            if key in seen and id(key_node) in explicit and id(seen[key][0]) in explicit:
                first = node_line(seen[key][0])
                self.problem(
                    join(path, key), node_line(key_node), f"duplicate key (first at line {first})"
                )
                continue
            if key in seen and id(seen[key][0]) in explicit:
                continue  # a merged key under one written in the mapping
            seen[key] = (key_node, value_node)
        return seen

    def unknown_keys(
        self, pairs: Mapping[str, tuple[yaml.Node, yaml.Node]], allowed: Iterable[str], path: str
    ) -> None:
        allowed = sorted(allowed)
        for key, (key_node, _) in pairs.items():
            if key in allowed:
                continue
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; known: {', '.join(allowed)}"
            self.problem(join(path, key), node_line(key_node), f"unknown key '{key}'{hint}")

    def mapping_fields(
        self, node: yaml.Node, cls: type, path: str, skip: frozenset[str] | set[str] = frozenset()
    ) -> dict[str, Any] | None:
        """The constructor arguments of `cls` from a mapping node, or None if it is broken.

        Outside lists (the one-off sections: control, sessions, sim, ...) a broken field with a
        default is left to its default, so the rest of the section is still checked. Inside a
        list entry (and in `shed`) any broken field breaks the entry: a default there (a pile's
        `ports: 0`) would only cause made-up problems further on."""
        if not isinstance(node, yaml.MappingNode):
            self.problem(path, node_line(node), f"expected a mapping, got {describe(node)}")
            return None
        self.lines[path] = node_line(node)
        skip = set(skip) | _NOT_FROM_FILE.get(cls, frozenset())
        names = [n for n in _field_names(cls) if n not in skip]
        shorthand = _SHORTHAND.get(cls, {})
        pairs = self.pairs(node, path)
        self.unknown_keys(pairs, [*names, *shorthand], path)
        hints = typing.get_type_hints(cls)
        defaults = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        }
        # The supply's phases feed every phase check: a default there would invent problems.
        lenient = "[" not in path and path.partition(".")[0] != "shed"
        out: dict[str, Any] = {}
        complete = True
        for short, full in shorthand.items():
            if short in pairs and full in pairs:
                self.problem(
                    join(path, short),
                    node_line(pairs[short][0]),
                    f"give '{short}' or '{full}', not both",
                )
                complete = False
            elif short in pairs:
                element = typing.get_args(hints[full])[0]
                value = self.value(pairs[short][1], element, join(path, short))
                if value is _BAD:
                    complete = complete and lenient and full in defaults
                else:
                    out[full] = (value,)
                    self.lines.setdefault(join(path, full), node_line(pairs[short][1]))
        for name in names:
            if name in out:
                continue
            fpath = join(path, name)
            if name not in pairs:
                if name in defaults:
                    continue
                if _NONE in typing.get_args(hints[name]):  # optional: an absent key is None
                    out[name] = None
                    continue
                also = [s for s, f in shorthand.items() if f == name]
                alt = f" (or '{also[0]}')" if also else ""
                self.problem(fpath, node_line(node), f"missing key '{name}'{alt}")
                complete = False
                continue
            value_node = pairs[name][1]
            if name in defaults and _is_null(value_node) and _is_section(hints[name]):
                # `control:` with everything under it commented out: the section's defaults.
                self.lines.setdefault(fpath, node_line(value_node))
                continue
            value = self.value(value_node, hints[name], fpath)
            if value is _BAD:
                complete = complete and lenient and name in defaults
            else:
                out[name] = value
        return out if complete else None

    def value(self, node: yaml.Node, tp: Any, path: str) -> Any:
        """Convert one node to type `tp`, or report why not and return _BAD."""
        self.lines.setdefault(path, node_line(node))
        origin = typing.get_origin(tp)
        if tp is Bus or (
            origin in (types.UnionType, typing.Union)
            and set(typing.get_args(tp)) == {TcpBus, RtuBus}
        ):
            return self.bus(node, path)
        if origin is tuple:
            return self.sequence(node, typing.get_args(tp)[0], path)
        if origin in (types.UnionType, typing.Union):
            inner = [a for a in typing.get_args(tp) if a is not _NONE]
            if len(inner) == 1 and dataclasses.is_dataclass(inner[0]):  # an optional section
                if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
                    return None
                if isinstance(node, yaml.MappingNode):
                    return self.value(node, inner[0], path)
        if dataclasses.is_dataclass(tp):
            assert isinstance(tp, type)
            fields = self.mapping_fields(node, tp, path)
            if fields is None:
                return _BAD
            obj = tp(**fields)
            self.where[id(obj)] = path
            return obj
        if isinstance(node, yaml.ScalarNode):
            try:
                raw = _as_number(node, self._scalars.construct_object(node))
            except (yaml.YAMLError, ValueError) as exc:  # `!!int x`: PyYAML raises ValueError
                self.problem(path, node_line(node), f"unreadable value: {exc}")
                return _BAD
            if (
                isinstance(raw, float)
                and not math.isfinite(raw)
                and float in (tp, *typing.get_args(tp))
            ):
                self.problem(
                    path, node_line(node), f"expected a number, got {node.value} (not finite)"
                )
                return _BAD
        else:
            raw = node  # a mapping or list where a plain value belongs: wrong in every case
        ok, value = _scalar(raw, tp)
        if ok:
            return value
        self.problem(path, node_line(node), f"expected {_type_name(tp)}, got {describe(node)}")
        return _BAD

    def sequence(self, node: yaml.Node, element: Any, path: str) -> tuple[Any, ...] | _Bad:
        if not isinstance(node, yaml.SequenceNode):
            scalar = isinstance(node, yaml.ScalarNode) and _scalar_value(node) is not None
            hint = f" (one item is written [{node.value}])" if scalar else ""
            self.problem(path, node_line(node), f"expected a list, got {describe(node)}{hint}")
            return _BAD
        self.lines[path] = node_line(node)
        out = []
        for i, item in enumerate(node.value):
            ipath = f"{path}[{i}]"
            value = self.value(item, element, ipath)
            if value is _BAD:
                self._remember_left_out(path, item)
            else:
                out.append(value)
        return tuple(out)

    def _remember_left_out(self, path: str, item: yaml.Node) -> None:
        if path not in self.left_out or not isinstance(item, yaml.MappingNode):
            return
        for key_node, value_node in item.value:
            if (
                isinstance(key_node, yaml.ScalarNode)
                and key_node.value == "id"
                and isinstance(value_node, yaml.ScalarNode)
            ):
                self.left_out[path].add(str(value_node.value))


def _scalar(raw: Any, tp: Any) -> tuple[bool, Any]:
    """(True, value) if `raw` (a constructed YAML scalar) is acceptable as `tp`."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        # `True == 1` in Python: a boolean must not pass for the phase count 1.
        hit = [c for c in choices if c == raw and type(c) is type(raw)]
        return (True, hit[0]) if hit else (False, None)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if raw is None:
            return (_NONE in args), None
        for arg in args:
            if arg is _NONE:
                continue
            ok, value = _scalar(raw, arg)
            if ok:
                return True, value
        return False, None
    if isinstance(raw, bool):
        return (tp is bool), raw
    if tp is float and isinstance(raw, int | float):
        return (math.isfinite(raw)), float(raw)
    if tp is int and isinstance(raw, int):
        return True, raw
    if tp is str and isinstance(raw, str):
        return True, raw
    return False, None
