"""Register maps as data, and the generic reader that serves them.

A map file in `maps/` describes one device kind: per quantity its address, table (input or
holding), type (u16, i16, u32, i32, f32), scale and word order. The reader batches the
quantities of a table into as few contiguous reads as the map allows (`max_gap` lets it read
across unused registers on devices that answer them; the shipped maps say 0, because the
simulator, like many devices, answers exception 02 for addresses not in its map).

Decoding is pure: registers in, numbers out. Only `read_blocks` does I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal, cast

import yaml

from chargectl.drivers.bus import MAX_READ, ModbusBus
from chargectl.drivers.errors import BadValue, ConfigError

Table = Literal["input", "holding"]
ValueType = Literal["u16", "i16", "u32", "i32", "f32"]
WordOrder = Literal["big", "little"]

WIDTH: dict[str, int] = {"u16": 1, "i16": 1, "u32": 2, "i32": 2, "f32": 2}
MAPS_DIR = Path(__file__).parent / "maps"


# ---------------------------------------------------------------------- words -> values
def u32(hi: int, lo: int) -> int:
    return (hi << 16) | lo


def i16(word: int) -> int:
    return word - 0x10000 if word & 0x8000 else word


def decode_value(words: Sequence[int], vtype: ValueType, word_order: WordOrder = "big") -> float:
    """One value from its 1 or 2 registers (`words` in address order)."""
    if vtype == "u16":
        return words[0]
    if vtype == "i16":
        return i16(words[0])
    hi, lo = (words[0], words[1]) if word_order == "big" else (words[1], words[0])
    raw = u32(hi, lo)
    if vtype == "u32":
        return raw
    if vtype == "i32":
        return raw - (1 << 32) if raw & 0x8000_0000 else raw
    return cast(float, struct.unpack(">f", raw.to_bytes(4, "big"))[0])


# ---------------------------------------------------------------------- the map
@dataclass(frozen=True, slots=True)
class Quantity:
    name: str
    address: int
    table: Table
    type: ValueType
    scale: float
    word_order: WordOrder

    @property
    def width(self) -> int:
        return WIDTH[self.type]


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: `count` registers of `table` from `address`."""

    table: Table
    address: int
    count: int
    quantities: tuple[Quantity, ...]


@dataclass(frozen=True, slots=True)
class RegisterMap:
    kind: str
    role: str
    description: str
    source: str  # where the map comes from (a manual, a public project that confirms it)
    phases: int
    max_gap: int
    quantities: Mapping[str, Quantity]
    blocks: tuple[Block, ...]


def plan_blocks(quantities: Sequence[Quantity], max_gap: int = 0) -> tuple[Block, ...]:
    """Group quantities into reads: per table, in address order, a quantity joins the current
    block when the gap before it is at most `max_gap` registers and the block stays within
    the 125 registers one read may carry."""
    blocks: list[Block] = []
    for table in ("input", "holding"):
        qs = sorted((q for q in quantities if q.table == table), key=lambda q: q.address)
        run: list[Quantity] = []
        start = end = 0  # the run covers [start, end)
        for q in qs:
            if run and q.address - end <= max_gap and q.address + q.width - start <= MAX_READ:
                run.append(q)
                end = max(end, q.address + q.width)
                continue
            if run:
                blocks.append(Block(table, start, end - start, tuple(run)))
            run, start, end = [q], q.address, q.address + q.width
        if run:
            blocks.append(Block(table, start, end - start, tuple(run)))
    return tuple(blocks)


def parse_map(data: Any, where: str) -> RegisterMap:
    """A map from its parsed YAML; ConfigError names `where` (the file) and the field."""

    def fail(path: str, msg: str) -> ConfigError:
        return ConfigError(where, f"{path}: {msg}")

    if not isinstance(data, dict):
        raise fail("(top)", "a map must be a mapping")
    for key in ("kind", "role"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise fail(key, "required, a non-empty string")
    known = {"kind", "role", "description", "source", "phases", "word_order", "max_gap"}
    unknown = set(data) - known - {"quantities"}
    if unknown:
        raise fail(", ".join(sorted(unknown)), f"unknown keys (known: {', '.join(sorted(known))})")
    order = data.get("word_order", "big")
    if order not in ("big", "little"):
        raise fail("word_order", f"must be big or little, got {order!r}")
    phases = data.get("phases", 1)
    if phases not in (1, 3):
        raise fail("phases", f"must be 1 or 3, got {phases!r}")
    max_gap = data.get("max_gap", 0)
    if not isinstance(max_gap, int) or isinstance(max_gap, bool) or not 0 <= max_gap <= 100:
        raise fail("max_gap", f"must be an integer 0..100, got {max_gap!r}")
    raw_qs = data.get("quantities")
    if not isinstance(raw_qs, dict) or not raw_qs:
        raise fail("quantities", "required, a mapping of name -> {address, type, ...}")

    quantities: dict[str, Quantity] = {}
    for name, spec in raw_qs.items():
        path = f"quantities.{name}"
        if not isinstance(spec, dict):
            raise fail(path, "must be a mapping")
        extra = set(spec) - {"address", "table", "type", "scale", "word_order"}
        if extra:
            raise fail(path, f"unknown keys {', '.join(sorted(extra))}")
        addr = spec.get("address")
        if not isinstance(addr, int) or isinstance(addr, bool) or not 0 <= addr <= 0xFFFF:
            raise fail(f"{path}.address", f"must be an integer 0..65535, got {addr!r}")
        table = spec.get("table", "input")
        if table not in ("input", "holding"):
            raise fail(f"{path}.table", f"must be input or holding, got {table!r}")
        vtype = spec.get("type")
        if vtype not in WIDTH:
            raise fail(f"{path}.type", f"must be one of {', '.join(WIDTH)}, got {vtype!r}")
        scale = spec.get("scale", 1)
        if not isinstance(scale, int | float) or isinstance(scale, bool) or scale == 0:
            raise fail(f"{path}.scale", f"must be a non-zero number, got {scale!r}")
        q_order = spec.get("word_order", order)
        if q_order not in ("big", "little"):
            raise fail(f"{path}.word_order", f"must be big or little, got {q_order!r}")
        if addr + WIDTH[vtype] > 0x10000:
            raise fail(f"{path}.address", f"{vtype} at {addr} runs past 65535")
        quantities[str(name)] = Quantity(str(name), addr, table, vtype, float(scale), q_order)

    # Two quantities sharing a register is a typo in a map, never intended.
    seen: dict[tuple[str, int], str] = {}
    for q in quantities.values():
        for r in range(q.address, q.address + q.width):
            other = seen.setdefault((q.table, r), q.name)
            if other != q.name:
                raise fail(f"quantities.{q.name}", f"overlaps {other} at {q.table} register {r}")

    return RegisterMap(
        kind=data["kind"],
        role=data["role"],
        description=str(data.get("description", "")),
        source=str(data.get("source", "")),
        phases=phases,
        max_gap=max_gap,
        quantities=quantities,
        blocks=plan_blocks(list(quantities.values()), max_gap),
    )


def load_map(path: Path) -> RegisterMap:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(str(path), f"cannot read register map: {exc}") from None
    reg_map = parse_map(data, str(path))
    if reg_map.kind != path.stem:
        raise ConfigError(str(path), f"kind: {reg_map.kind!r} must match the file name")
    return reg_map


@cache
def shipped_maps() -> dict[str, RegisterMap]:
    """Every map in `maps/`, by kind."""
    return {p.stem: load_map(p) for p in sorted(MAPS_DIR.glob("*.yaml"))}


# ---------------------------------------------------------------------- reading
def decode_blocks(
    reg_map: RegisterMap, device: str, replies: Sequence[Sequence[int]]
) -> dict[str, float]:
    """Scaled values by quantity name from one reply per block. A float that is NaN or
    infinite stays so: the role's decoder decides whether its field is critical."""
    values: dict[str, float] = {}
    for block, regs in zip(reg_map.blocks, replies, strict=True):
        if len(regs) != block.count:
            raise BadValue(device, block.address, len(regs), f"block needs {block.count} registers")
        for q in block.quantities:
            off = q.address - block.address
            raw = decode_value(regs[off : off + q.width], q.type, q.word_order)
            values[q.name] = raw * q.scale
    return values


async def read_blocks(bus: ModbusBus, unit: int, reg_map: RegisterMap) -> list[list[int]]:
    """Read every block of the map, in turn (one request in flight per line)."""
    replies: list[list[int]] = []
    for b in reg_map.blocks:
        if b.table == "input":
            replies.append(await bus.read_input(unit, b.address, b.count))
        else:
            replies.append(await bus.read_holding(unit, b.address, b.count))
    return replies
