"""Scenario files of `chargectl replay`: YAML -> `Scenario`, every problem found at once.

A scenario names its shed config (a path relative to the scenario file), when the replay
starts and how long it runs, the seed and the tick, who arrives (sockets and wallboxes, each
with a rate by time of day), the unmanaged load per circuit and phase by time of day, and the
faults it schedules (docs/replay.md). Pass 1 is the config's converter (chargectl.config.
convert) over the types of `scenario_types`, so odd YAML reads as it does in a shed config;
pass 2 (`scenario_check`) checks values and names against the shed's topology and the
simulator's vocabulary. Every problem is a `Problem` (`FILE:LINE: PATH: MESSAGE`); any YAML
gives a `Scenario` or a `ScenarioError`, never another exception.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from pathlib import Path

import yaml

from chargectl.config.convert import Converter, node_line
from chargectl.config.load import ConfigError, compose_mapping
from chargectl.config.problems import Problem
from chargectl.replay.scenario_check import Checker
from chargectl.replay.scenario_types import Scenario, ScenarioFile

__all__ = ["Scenario", "ScenarioError", "load_scenario", "parse_scenario"]

SHIPPED = Path(__file__).resolve().parents[2] / "sim" / "scenarios"


class ScenarioError(ConfigError):
    """The scenario cannot run; `problems` holds every problem (the CLI exits 2)."""


def load_scenario(path: str | Path) -> Scenario:
    name = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        raise ScenarioError(
            [Problem(name, None, "", f"cannot read: {exc.strerror or exc}")]
        ) from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(
            [Problem(name, None, "", f"not UTF-8 text (byte {exc.start}: {exc.reason})")]
        ) from None
    return parse_scenario(text, Path(path), display_name=name)


def parse_scenario(text: str, source: Path, display_name: str | None = None) -> Scenario:
    """The scenario in `text`; `source` places the shed path (relative to its folder)."""
    name = str(source) if display_name is None else display_name
    root = compose_mapping(text, name, "a scenario", "shed, duration, ...", ScenarioError)
    conv = Converter(name)
    _read_scalars(root, conv)
    # The faults' parameters follow the simulator's actions: checked on their own.
    faults = [(k, v) for k, v in root.value if _is_key(k, "faults")]
    root.value = [(k, v) for k, v in root.value if not _is_key(k, "faults")]
    for k, _ in faults[1:]:
        first = node_line(faults[0][0])
        conv.problem("faults", node_line(k), f"duplicate key (first at line {first})")
    try:
        fields = conv.mapping_fields(root, ScenarioFile, "")
        checker = Checker(conv, Path(source), name)
        scenario = checker.scenario(
            None if fields is None else ScenarioFile(**fields),
            faults[0][1] if faults else None,
        )
    except RecursionError:
        conv.problem("", None, "nested too deeply (an alias inside itself?)")
        scenario = None
    _known_keys_with_faults(conv)
    problems = sorted(conv.problems, key=lambda p: (p.file != name, p.line or 0))
    if scenario is None or any(p.severity == "error" for p in problems):
        raise ScenarioError(problems)
    return scenario


def _known_keys_with_faults(conv: Converter) -> None:
    # The converter saw the top level without `faults`: name it among the known keys.
    known = ", ".join(sorted([f.name for f in dataclasses.fields(ScenarioFile)] + ["faults"]))
    for i, p in enumerate(conv.problems):
        if p.path and p.path.isidentifier() and p.message.startswith("unknown key"):
            key = p.message.split("'")[1]
            close = difflib.get_close_matches(key, known.split(", "), n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known: {known}"
            conv.problems[i] = dataclasses.replace(p, message=f"unknown key '{key}'; {hint}")


def _is_key(node: yaml.Node, key: str) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.value == key


# YAML 1.1 reads a plain 18:00 as the sexagesimal number 1080; a scenario means a time of day
# (as YAML 1.2 reads it): such scalars are taken as text.
_CLOCK_LIKE = re.compile(r"[0-9]+(:[0-9]+)+(\.[0-9]*)?")
_STR_TAG = "tag:yaml.org,2002:str"


def _read_scalars(root: yaml.Node, conv: Converter) -> None:
    """Times of day as text, and a scalar its tag cannot read (`!!int x`: a ValueError, not
    a YAMLError, from PyYAML) reported here and then taken as text, so no later step trips."""
    scalars = yaml.constructor.SafeConstructor()
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            if not node.style and node.tag != _STR_TAG and _CLOCK_LIKE.fullmatch(node.value):
                node.tag = _STR_TAG
            try:
                scalars.construct_object(node)
            except yaml.YAMLError:
                pass  # reported with its path where it is read
            except (ValueError, TypeError, OverflowError) as exc:
                conv.problem("", node_line(node), f"unreadable value {node.value!r}: {exc}")
                node.tag = _STR_TAG
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                stack.extend((k, v))
