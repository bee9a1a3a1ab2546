"""YAML shed config -> `chargectl.config.schema.Shed`, with every problem found at once.

Two passes. The first (`chargectl.config.convert`) walks the composed YAML nodes and converts
them into the frozen dataclasses of `chargectl.config.schema`, each problem with its path
(`circuits[1].limit_a`) and line; it is best effort, so that the second pass, the semantic
checks (`chargectl.config.check`), still runs on everything that did convert and reports its
problems too.

Errors make `load_shed` raise `ConfigError`; warnings (a sub-circuit limit above its parent's, a
limit above the breaker rating, ...) do not, and are returned by `load_checked`.

Device templates: the config's `templates:` directories (relative to its folder) and those the
command line adds (`templates=`, relative to the working directory) are checked with the
config, each problem of a template file as `FILE:LINE: PATH: MESSAGE` of that file, after the
config's own. Reading the files is the only I/O here: `check_shed(shed)` is pure but for
reading the shed's templates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from chargectl.config.check import Problem, Severity, check_shed
from chargectl.config.convert import YAML_LOADER, Converter, describe, node_line
from chargectl.config.schema import Shed

__all__ = [
    "Checked",
    "ConfigError",
    "Problem",
    "Severity",
    "check_shed",
    "load_checked",
    "load_shed",
    "parse_shed",
]


class ConfigError(Exception):
    """The config has at least one error. `problems` holds all of them, warnings included."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")


@dataclass(frozen=True, slots=True)
class Checked:
    """A config that loaded: the shed and the warnings it raised."""

    shed: Shed
    warnings: tuple[Problem, ...]


def load_shed(path: str | Path, templates: Sequence[str | Path] = ()) -> Shed:
    """Load and check a shed config; raise ConfigError listing every problem if it has errors.
    `templates`: directories of device templates besides the config's own (`--templates`)."""
    return load_checked(path, templates).shed


def load_checked(path: str | Path, templates: Sequence[str | Path] = ()) -> Checked:
    """As `load_shed`, also returning the warnings of a config that loaded."""
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(
            [Problem(name, None, "", f"cannot read: {exc.strerror or exc}")]
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [Problem(name, None, "", f"not UTF-8 text (byte {exc.start}: {exc.reason})")]
        ) from None
    return parse_shed(text, Path(path).absolute(), display_name=name, templates=templates)


def parse_shed(
    text: str,
    source: Path,
    display_name: str | None = None,
    templates: Sequence[str | Path] = (),
) -> Checked:
    """Convert and check the YAML text of a shed config (pure: no file is read but the
    templates'). `templates` are appended to the config's `templates:`, made absolute."""
    name = str(source) if display_name is None else display_name
    root = compose_mapping(text, name, "a shed config", "shed, circuits, buses, devices, ...")
    conv = Converter(name)
    shed = conv.shed(root, source)
    problems = list(conv.problems)
    if shed is not None:
        if templates:
            extra = tuple(str(Path(d).absolute()) for d in templates)
            shed = dataclasses.replace(shed, templates=shed.templates + extra)
        problems += check_shed(shed, where=conv.where, lines=conv.lines, left_out=conv.left_out)
    problems = _sorted(problems, {name, str(source)})
    if shed is None or any(p.severity == "error" for p in problems):
        raise ConfigError(problems)
    return Checked(shed, tuple(problems))


def compose_mapping(
    text: str,
    name: str,
    what: str,
    keys: str,
    error: type[ConfigError] = ConfigError,
) -> yaml.MappingNode:
    """The YAML nodes of a file whose top level must be a mapping (a shed config, a replay
    scenario); `error` names every way it is not one: `FILE:LINE: : MESSAGE`."""
    try:
        root = yaml.compose(text, Loader=YAML_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = None if mark is None else mark.line + 1
        why = " ".join(str(s) for s in (exc.context, exc.problem) if s)
        raise error([Problem(name, line, "", f"YAML syntax error: {why}")]) from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise error([Problem(name, None, "", f"YAML error: {exc}")]) from None
    if root is None:
        raise error([Problem(name, None, "", f"empty file: {what} is needed")])
    if not isinstance(root, yaml.MappingNode):
        why = f"the top level must be a mapping ({keys}), got {describe(root)}"
        raise error([Problem(name, node_line(root), "", why)])
    return root


def _sorted(problems: list[Problem], config: set[str]) -> list[Problem]:
    # The config's by line, so that the list reads along the file, then each template file's;
    # stable, so one line's problems keep their order.
    return sorted(
        problems,
        key=lambda p: (
            p.file not in config,
            "" if p.file in config else p.file,
            p.line if p.line is not None else 0,
        ),
    )
