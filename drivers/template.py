"""Device templates: one YAML file per model, read by the driver, `chargectl check` and the
simulator alike.

A template (`drivers/templates/<kind>.yaml`, or a file in a directory the config or the
command line names) says which role the model plays (pile, evse, meter) and where each field
of the role's vocabulary (`template_fields`) lives: table (input, holding, coil, discrete),
address, type (u16, i16, u32, i32, f32, f64; coils and discretes are bits), word order,
scale (register value x scale = the vocabulary's unit), per-port layout (address of port p =
address + (p - 1) x stride), bit meanings, code meanings, identity checks and write ranges.
docs/devices.md explains every key with a worked example.

Parsing keeps the YAML nodes' line numbers, so a malformed template is refused with
`FILE:LINE: PATH: MESSAGE`, never a traceback. Decoding and encoding values is pure.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal, cast

import yaml

from chargectl.drivers.errors import ConfigError
from chargectl.drivers.template_fields import (
    TAP_WIDTH,
    capabilities_of,
    meter_required,
)

Table = Literal["input", "holding", "coil", "discrete"]
ValueType = Literal["u16", "i16", "u32", "i32", "f32", "f64", "bit"]
WordOrder = Literal["big", "little"]
Role = Literal["pile", "evse", "meter"]

TABLES = ("input", "holding", "coil", "discrete")
BIT_TABLES = ("coil", "discrete")
WIDTH: dict[str, int] = {"u16": 1, "i16": 1, "u32": 2, "i32": 2, "f32": 2, "f64": 4, "bit": 1}
SHIPPED_DIR = Path(__file__).parent / "templates"
MAX_PORTS = 32
# Fields that may live in coils or discrete inputs (one bit each).
BIT_FIELDS = frozenset({"relay", "relay_closed", "load_present", "failsafe_mask", "enable"})


# ---------------------------------------------------------------------- the template
@dataclass(frozen=True, slots=True, eq=False)
class Field:
    name: str
    table: Table
    address: int
    type: ValueType
    word_order: WordOrder = "big"
    scale: float = 1.0
    per_port: bool = False
    stride: int = 1
    bits: Mapping[str, int] = field(default_factory=dict)  # meaning -> bit number
    codes: Mapping[int, str] = field(default_factory=dict)  # raw value -> meaning
    code_bits: tuple[int, int] | None = None  # (first, last) bit holding the code
    equals: int | str | None = None  # identity: a number, or "ports"
    min: float | None = None  # write range, in the vocabulary's unit
    max: float | None = None
    special: Mapping[str, int] = field(default_factory=dict)  # e.g. fault_reset all: 0xFFFF
    writable: bool = True  # failsafe_current set on the box by its installer: read, not written
    line: int = 0

    @property
    def width(self) -> int:
        """Registers (or bits) one value takes."""
        return TAP_WIDTH if self.name == "tap" else WIDTH[self.type]

    def address_of(self, port: int | None = None) -> int:
        return self.address if port is None else self.address + (port - 1) * self.stride


@dataclass(frozen=True, slots=True, eq=False)  # one object per file: hashed by identity
class Template:
    kind: str
    role: Role
    description: str
    source: str
    path: Path | None
    fields: Mapping[str, Field]
    max_gap: int = 0
    # Ranges every register of which answers (reserved ones read 0), so one read may span
    # the gaps inside them: (table, first, last).
    readable: tuple[tuple[Table, int, int], ...] = ()
    ports: tuple[int, int] = (1, 1)  # pile: (min, max) the config may choose; fixed if equal
    phases: int = 1  # meter: channels; evse: phases the connector may carry
    capabilities: frozenset[str] = frozenset()
    min_current_a: float | None = None  # evse: the least current it offers (IEC 61851: 6 A)
    max_current_a: tuple[float, float] | None = None  # evse: the range of its maximum
    step_a: float | None = None  # evse: the setpoint's resolution
    watchdog_s: int | None = None  # evse: a timeout set on the box, not over Modbus
    setpoint_heartbeat: bool = False  # evse: each setpoint write restarts the box's timeout

    def has(self, name: str) -> bool:
        return name in self.fields

    @property
    def fixed_ports(self) -> int | None:
        lo, hi = self.ports
        return lo if lo == hi else None


# ---------------------------------------------------------------------- values
def decode_value(words: Sequence[int], vtype: str, word_order: str = "big") -> float:
    """One value from its registers (`words` in address order)."""
    if vtype in ("u16", "bit"):
        return words[0]
    if vtype == "i16":
        return words[0] - 0x10000 if words[0] & 0x8000 else words[0]
    ordered = list(words) if word_order == "big" else list(reversed(words))
    raw = b"".join(w.to_bytes(2, "big") for w in ordered)
    if vtype == "u32":
        return int.from_bytes(raw, "big")
    if vtype == "i32":
        return int.from_bytes(raw, "big", signed=True)
    fmt = ">f" if vtype == "f32" else ">d"
    return cast(float, struct.unpack(fmt, raw)[0])


def encode_value(value: float, vtype: str, word_order: str = "big") -> list[int]:
    """The registers of one raw value (already divided by the scale), in address order.
    Integers are truncated toward zero and must fit the type (ValueError)."""
    if vtype in ("f32", "f64"):
        raw = struct.pack(">f" if vtype == "f32" else ">d", value)
    else:
        n = int(value)
        width = WIDTH[vtype]
        signed = vtype in ("i16", "i32")
        try:
            raw = n.to_bytes(2 * width, "big", signed=signed)
        except OverflowError:
            raise ValueError(f"{value!r} does not fit {vtype}") from None
    words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    return words if word_order == "big" or len(words) == 1 else list(reversed(words))


# ---------------------------------------------------------------------- reads
@dataclass(frozen=True, slots=True)
class Slot:
    """One value to read: a field, its port (None: not per port) and its address."""

    field: Field
    port: int | None
    address: int


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: `count` registers (or bits) of `table` from `address`."""

    table: Table
    address: int
    count: int
    slots: tuple[Slot, ...]


MAX_READ = 125


def slots_of(fields: Sequence[Field], ports: int) -> list[Slot]:
    out: list[Slot] = []
    for f in fields:
        for port in range(1, ports + 1) if f.per_port else (None,):
            out.append(Slot(f, port, f.address_of(port)))
    return out


def plan_blocks(
    fields: Sequence[Field],
    max_gap: int = 0,
    *,
    ports: int = 1,
    readable: Sequence[tuple[str, int, int]] = (),
) -> tuple[Block, ...]:
    """Group the values of `fields` into reads: per table, in address order, a value joins
    the current read when the gap before it is at most `max_gap` registers or lies inside a
    `readable` range, and the read stays within the 125 registers one request carries."""

    def bridged(table: str, start: int, end: int) -> bool:
        return any(t == table and lo <= start and end - 1 <= hi for t, lo, hi in readable)

    blocks: list[Block] = []
    for table in TABLES:
        slots = sorted(
            (s for s in slots_of(fields, ports) if s.field.table == table),
            key=lambda s: s.address,
        )
        run: list[Slot] = []
        start = end = 0  # the run covers [start, end)
        for s in slots:
            stop = s.address + s.field.width
            if (
                run
                and stop - start <= MAX_READ
                and (s.address - end <= max_gap or bridged(table, end, s.address))
            ):
                run.append(s)
                end = max(end, stop)
                continue
            if run:
                blocks.append(Block(cast(Table, table), start, end - start, tuple(run)))
            run, start, end = [s], s.address, stop
        if run:
            blocks.append(Block(cast(Table, table), start, end - start, tuple(run)))
    return tuple(blocks)


Image = dict[tuple[str, int], int]  # (table, address) -> register value (or bit)


def image_of(blocks: Sequence[Block], replies: Sequence[Sequence[int]]) -> Image:
    image: Image = {}
    for b, regs in zip(blocks, replies, strict=True):
        for i, v in enumerate(regs[: b.count]):
            image[(b.table, b.address + i)] = v
    return image


def raw_value(f: Field, image: Mapping[tuple[str, int], int], port: int | None = None) -> float:
    """The unscaled value of a field (for a port) from an image."""
    addr = f.address_of(port)
    if f.type == "u16":  # most values: one register as it is
        return image[(f.table, addr)]
    words = [image[(f.table, a)] for a in range(addr, addr + WIDTH[f.type])]
    return decode_value(words, f.type, f.word_order)


def words_of(f: Field, image: Mapping[tuple[str, int], int], port: int | None = None) -> list[int]:
    addr = f.address_of(port)
    return [image[(f.table, a)] for a in range(addr, addr + f.width)]


# ---------------------------------------------------------------------- finding templates
@cache
def shipped() -> dict[str, Template]:
    """The templates that come with chargectl, by kind."""
    return {p.stem: load_template(p) for p in sorted(SHIPPED_DIR.glob("*.yaml"))}


def templates(extra_dirs: Sequence[Path] = ()) -> Mapping[str, Template]:
    """The shipped templates plus those in `extra_dirs`; a kind defined twice is an error
    naming both files."""
    found = dict(shipped())
    for d in extra_dirs:
        if not d.is_dir():
            raise ConfigError(str(d), "templates directory not found")
        for p in sorted(d.glob("*.yaml")):
            t = load_template(p)
            if t.kind in found:
                other = found[t.kind].path
                raise ConfigError(f"{p}:1", f"kind: {t.kind!r} is already defined in {other}")
            found[t.kind] = t
    return found


def load_template(path: Path) -> Template:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}:1", f"(file): cannot read the template: {exc}") from None
    return parse_template_text(text, str(path), path)


def parse_template_text(text: str, where: str, path: Path | None = None) -> Template:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = 1 if mark is None else mark.line + 1
        what = " ".join(str(s) for s in (exc.context, exc.problem) if s)
        raise ConfigError(f"{where}:{line}", f"(file): YAML syntax error: {what}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}:1", f"(file): YAML error: {exc}") from None
    if root is None:
        raise ConfigError(f"{where}:1", "(top): empty file: a template is a mapping")
    lines: dict[str, int] = {}
    data = _plain(root, "", lines, where)
    template = parse_template(data, where, lines=lines, path=path)
    if path is not None and template.kind != path.stem:
        line = lines.get("kind", 1)
        raise ConfigError(
            f"{where}:{line}", f"kind: {template.kind!r} must match the file name {path.stem!r}"
        )
    return template


_SCALARS = yaml.constructor.SafeConstructor()


def _scalar(node: yaml.Node, path: str, where: str) -> Any:
    try:
        return _SCALARS.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, TypeError) as exc:  # `!weird x`, `!!int abc`, `<<:`
        line = node.start_mark.line + 1
        why = getattr(exc, "problem", None) or exc
        raise ConfigError(
            f"{where}:{line}", f"{path or '(top)'}: unreadable value {node.value!r}: {why}"
        ) from None


def _plain(
    node: yaml.Node,
    path: str,
    lines: dict[str, int],
    where: str,
    inside: frozenset[int] = frozenset(),
) -> Any:
    """Python data from a composed node, recording each path's line. `inside`: the nodes
    this one is within (an alias to one of them, `&a [*a]`, would never end)."""
    lines[path] = node.start_mark.line + 1
    if id(node) in inside:
        raise ConfigError(f"{where}:{lines[path]}", f"{path or '(top)'}: an alias within itself")
    inside = inside | {id(node)}
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for k, v in node.value:
            key = _scalar(k, path, where) if isinstance(k, yaml.ScalarNode) else None
            if not isinstance(key, str | int) or isinstance(key, bool):
                line = k.start_mark.line + 1
                raise ConfigError(f"{where}:{line}", f"{path or '(top)'}: keys must be plain")
            sub = f"{path}.{key}" if path else str(key)
            if key in out:
                line = k.start_mark.line + 1
                raise ConfigError(f"{where}:{line}", f"{sub}: duplicate key")
            out[key] = _plain(v, sub, lines, where, inside)
            lines[sub] = k.start_mark.line + 1  # a key's problem is on the key's line
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_plain(v, f"{path}[{i}]", lines, where, inside) for i, v in enumerate(node.value)]
    return _scalar(node, path, where)


def parse_template(
    data: Any,
    where: str,
    *,
    lines: Mapping[str, int] | None = None,
    path: Path | None = None,
) -> Template:
    """A template from its parsed YAML. `where` names the file; `lines` maps a key path to
    its line (without it every message says line 1). ConfigError: `FILE:LINE: PATH: MSG`."""
    from chargectl.drivers.template_parse import TemplateParser  # the checks, one module

    return TemplateParser(where, lines or {}).template(data, path)


__all__ = [
    "MAX_PORTS",
    "Block",
    "Field",
    "Image",
    "Slot",
    "Template",
    "capabilities_of",
    "decode_value",
    "encode_value",
    "image_of",
    "load_template",
    "meter_required",
    "parse_template",
    "plan_blocks",
    "raw_value",
    "shipped",
    "templates",
]
