"""A simulated device's Modbus face, built from its template: which addresses each table
answers, how each field's value becomes registers (or bits), and which writes reach which
field. The device's role model (pile, evse, meter) holds the state in the vocabulary's units;
this module is the only place that knows tables, addresses, types, word order, scale, bits
and codes, so one role model serves every template of its role.

What an address answers (../shared/hardware/README.md, for every template alike):
- a field's registers; a per-port field's for ports 1..N only;
- inside a template's `readable` ranges, every address (reserved ones read 0);
- between two fields of a table at most `max_gap` registers apart, the registers between
  (a device that answers its reserved registers: 0);
- anything else answers exception 02. A write must touch only fields the role writes
  (else 02), each value in range (else 03, and nothing changes).

The role model answers `number(name)` (units; an array for a per-port field), `flags(name)`
(meaning -> bool or bool array, for a field with `bits`), `meanings(name)` (for a field with
`codes`: a vocabulary of meanings and the index of the present one in it, an int array for a
per-port field), `words(name)` (the tap's six registers), and takes
writes as `valid(name, port, value)` then `apply(name, port, value)`: value in units, or the
name of a `special` raw value (fault_reset's "all"). A role lists in `zero_is_off` the fields
whose 0 is always in range (a paused setpoint), whatever the template's `min`.
"""

from __future__ import annotations

import bisect
import itertools
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from chargectl.drivers.template import Field, Template
from chargectl.drivers.template_fields import VOCABULARY
from chargectl.sim.devices.registers import (
    ILLEGAL_ADDRESS,
    ILLEGAL_FUNCTION,
    ILLEGAL_VALUE,
    MAX_READ,
    MAX_WRITE,
    U32_WRAP,
    WriteLog,
)
from chargectl.sim.modbus_frame import MAX_BITS_READ, MAX_BITS_WRITE

ENERGY_EPS = 1e-6  # counters are sums of many steps: never let drift lose a whole unit
COUNTER_UNITS = ("Wh", "kWh")  # an energy counter in an integer register counts whole units
INT_RANGE = {
    "u16": (0, 0xFFFF),
    "i16": (-0x8000, 0x7FFF),
    "u32": (0, U32_WRAP - 1),
    "i32": (-(1 << 31), (1 << 31) - 1),
    "bit": (0, 1),
}


class FieldSource(Protocol):
    """What a role model gives the image (see the module docstring)."""

    def number(self, name: str) -> Any: ...
    def flags(self, name: str) -> Mapping[str, Any]: ...
    def meanings(self, name: str) -> tuple[Sequence[str], Any]: ...
    def words(self, name: str) -> list[int]: ...
    def valid(self, name: str, port: int | None, value: float | str) -> bool: ...
    def apply(self, name: str, port: int | None, value: float | str) -> None: ...


@dataclass(frozen=True, slots=True)
class Cell:
    """One address of a table: which field, which port (index 0.. or 0 for a plain field),
    which of the field's registers."""

    field: int  # index into RegisterImage.fields
    port: int
    offset: int


# A read worked out once (`RegisterImage._plan`): the fields to encode, then (which of them,
# out from, out to, its words from, its words to) for each run of words copied.
ReadPlan = tuple[tuple[int, ...], tuple[tuple[int, int, int, int, int], ...]]
SHARED: Any = object()  # a table where fields share addresses: read cell by cell
MAX_PLANS = 4096  # reads worked out and kept per image (a poll reads a few blocks)


class TemplateMismatch(ValueError):
    """A template the simulator cannot serve as given (names the template and field)."""


class RegisterImage:
    def __init__(self, template: Template, ports: int = 1) -> None:
        self.template = template
        self.ports = ports
        vocabulary = VOCABULARY[template.role]
        self.fields: tuple[Field, ...] = tuple(template.fields.values())
        self._writable = tuple(
            (vocabulary[f.name].write if f.name in vocabulary else False) and f.writable
            for f in self.fields
        )
        self._counter = tuple(
            f.name in vocabulary
            and vocabulary[f.name].unit in COUNTER_UNITS
            and f.type not in ("f32", "f64")
            for f in self.fields
        )
        self._cells: dict[str, dict[int, list[Cell]]] = {t: {} for t in TABLES}
        # Reads copy runs of a field's words: (start, end, field, offset into its words).
        runs: dict[str, list[tuple[int, int, int, int]]] = {t: [] for t in TABLES}
        for i, f in enumerate(self.fields):
            n = ports if f.per_port else 1
            for p in range(n):
                start = f.address_of(p + 1) if f.per_port else f.address
                for off in range(f.width):
                    self._cells[f.table].setdefault(start + off, []).append(Cell(i, p, off))
            if f.per_port and f.stride == f.width:
                runs[f.table].append((f.address, f.address + n * f.width, i, 0))
            else:
                for p in range(n):
                    start = f.address_of(p + 1) if f.per_port else f.address
                    runs[f.table].append((start, start + f.width, i, p * f.width))
        for table_runs in runs.values():
            table_runs.sort()
        self._runs = {t: tuple(r) for t, r in runs.items()}
        self._run_starts = {t: [r[0] for r in rs] for t, rs in runs.items()}
        # Fields sharing an address (bits of one register named apart) are ORed cell by cell.
        self._shared = {
            t: any(len(c) > 1 for c in cells.values()) for t, cells in self._cells.items()
        }
        # What answers: the fields, the template's readable ranges, gaps of at most max_gap.
        spans: dict[str, list[tuple[int, int]]] = {
            t: [(r[0], r[1]) for r in runs[t]] for t in TABLES
        }
        for table, first, last in template.readable:
            spans[table].append((first, last + 1))
        if template.max_gap > 0:
            for name, cells in self._cells.items():
                addrs = sorted(cells)
                for a, b in itertools.pairwise(addrs):
                    if 1 < b - a <= template.max_gap + 1:
                        spans[name].append((a + 1, b))
        self._answers = {t: _merged(s) for t, s in spans.items()}
        self._answer_starts = {t: [lo for lo, _ in s] for t, s in self._answers.items()}
        self.has_table = {t: bool(self._cells[t]) for t in TABLES}
        self._code_tables: dict[tuple[int, int], tuple[np.ndarray, bool]] = {}
        self._encoders = tuple(self._encoder(i) for i in range(len(self.fields)))
        self._plans: dict[tuple[str, int, int], ReadPlan | int] = {}

    # ------------------------------------------------------------------ reads
    def read(self, source: FieldSource, table: str, addr: int, count: int) -> list[int] | int:
        """The values of `addr .. addr+count-1` of `table`, or an exception code."""
        key = (table, addr, count)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plan(table, addr, count)
            if len(self._plans) < MAX_PLANS:
                self._plans[key] = plan
        if isinstance(plan, int):
            return plan
        if plan is SHARED:
            return self._read_cells(source, table, addr, count)
        fields, copies = plan
        encoders = self._encoders
        encoded = [encoders[index](source) for index in fields]
        out = [0] * count
        for k, lo, hi, first, last in copies:
            out[lo:hi] = encoded[k][first:last]
        return out

    def _plan(self, table: str, addr: int, count: int) -> ReadPlan | int:
        """What a read of `addr .. addr+count-1` does, worked out once per block (a poll
        reads the same blocks again and again): its exception code, SHARED, or the fields to
        encode (each once, in address order) and the slices of their words to copy."""
        bits = table in ("coil", "discrete")
        if bits and not self.has_table[table]:
            return ILLEGAL_FUNCTION
        if not 1 <= count <= (MAX_BITS_READ if bits else MAX_READ):
            return ILLEGAL_VALUE
        end = addr + count
        i = bisect.bisect_right(self._answer_starts[table], addr) - 1
        if i < 0 or self._answers[table][i][1] < end:
            return ILLEGAL_ADDRESS  # some address in no field and no readable range
        if self._shared[table]:
            return SHARED
        runs = self._runs[table]
        j = max(0, bisect.bisect_right(self._run_starts[table], addr) - 1)
        fields: list[int] = []
        copies: list[tuple[int, int, int, int, int]] = []
        while j < len(runs):
            start, stop, index, off = runs[j]
            j += 1
            if start >= end:
                break
            if stop <= addr:
                continue
            if index not in fields:
                fields.append(index)
            lo, hi = max(start, addr), min(stop, end)
            copies.append(
                (fields.index(index), lo - addr, hi - addr, off + lo - start, off + hi - start)
            )
        return tuple(fields), tuple(copies)

    def _read_cells(self, source: FieldSource, table: str, addr: int, count: int) -> list[int]:
        cells = self._cells[table]
        out = [0] * count
        encoded: dict[int, list[int]] = {}
        for i in range(count):
            for c in cells.get(addr + i, ()):
                words = encoded.get(c.field)
                if words is None:
                    words = encoded[c.field] = self.encode(source, c.field)
                out[i] |= words[c.port * self.fields[c.field].width + c.offset]
        return out

    def encode(self, source: FieldSource, index: int) -> list[int]:
        """One field's registers (or bits), port after port for a per-port field."""
        return self._encoders[index](source)

    def _encoder(self, index: int) -> Callable[[FieldSource], list[int]]:
        """A field's encoder, specialised once: a hot-block read calls a dozen of them."""
        f = self.fields[index]
        name, n, per_port = f.name, (self.ports if f.per_port else 1), f.per_port
        if name == "tap":
            return lambda s: s.words(name)
        if f.bits or f.codes:
            bits = tuple(f.bits.items())
            shift = f.code_bits[0] if f.code_bits else 0
            codes = bool(f.codes)

            def flags_and_codes(s: FieldSource) -> list[int]:
                raw: Any = 0
                if bits:
                    flags = s.flags(name)
                    for meaning, bit in bits:
                        on = flags.get(meaning)
                        if on is None:
                            raise TemplateMismatch(
                                f"{self.template.kind}: fields.{name}.bits: the simulator has "
                                f"no {meaning!r}"
                            )
                        raw = raw | (np.asarray(on, dtype=np.int64) if per_port else int(on)) << bit
                if codes:
                    raw = raw | self._codes(s, index) << shift
                if not per_port:
                    return [int(raw) & 0xFFFF]
                if isinstance(raw, np.ndarray) and raw.shape == (n,):
                    return (raw & 0xFFFF).tolist()  # already one word per port
                return (np.broadcast_to(raw, (n,)) & 0xFFFF).tolist()

            return flags_and_codes
        if f.equals is not None:
            words = _words(f, float(self.ports if f.equals == "ports" else f.equals), counter=False)
            return lambda s: words
        counter = self._counter[index]
        if per_port and f.width == 1 and f.type != "bit" and not counter:
            lo, hi = INT_RANGE[f.type]
            mul, div = _scale_factors(f)

            def one_register_per_port(s: FieldSource) -> list[int]:
                values = s.number(name)
                if not isinstance(values, np.ndarray) or values.shape != (n,):
                    values = np.broadcast_to(np.asarray(values, dtype=np.float64), (n,))
                scaled = values * mul if div == 1.0 else values / div
                raw = np.clip(np.rint(scaled), lo, hi).astype(np.int64)
                return (raw & 0xFFFF).tolist()

            return one_register_per_port
        if per_port:
            return lambda s: _port_words(
                f, np.broadcast_to(np.asarray(s.number(name), dtype=np.float64), (n,)), counter
            )
        if f.width == 1 and f.type != "bit" and not counter:
            lo, hi = INT_RANGE[f.type]
            mul, div = _scale_factors(f)

            def one_register(s: FieldSource) -> list[int]:
                return [max(lo, min(hi, round(float(s.number(name)) * mul / div))) & 0xFFFF]

            return one_register
        words_of = _words_encoder(f, counter=counter)
        return lambda s: words_of(float(s.number(name)))

    def _codes(self, source: FieldSource, index: int) -> Any:
        """The raw codes of a field's meanings: the source names its vocabulary and the index
        of each port's meaning in it; the lookup table is built once per vocabulary."""
        f = self.fields[index]
        names, which = source.meanings(f.name)
        key = (index, id(names))
        known = self._code_tables.get(key)
        if known is None:
            by_meaning = {m: raw for raw, m in f.codes.items()}
            by_meaning.setdefault("none", 0)  # no fault, no code: 0
            table = np.array([by_meaning.get(m, -1) for m in names], dtype=np.int64)
            known = self._code_tables[key] = (table, bool(np.any(table < 0)))
        table, some_missing = known
        code = table[which]
        # A vocabulary with a code for every meaning cannot give a missing one: skip the check.
        if some_missing and np.any(code < 0):
            bad = [names[k] for k in np.atleast_1d(which)[np.atleast_1d(code) < 0]]
            raise TemplateMismatch(
                f"{self.template.kind}: fields.{f.name}.codes has no code for {bad[0]!r}"
            )
        return code

    # ------------------------------------------------------------------ writes
    def write(
        self, source: FieldSource, table: str, addr: int, values: Sequence[int]
    ) -> int | None:
        """Check a whole write first (02 for an address, then 03 for a value), then apply it
        field by field in address order. Returns None or the exception code."""
        bits = table == "coil"
        if bits and not self.has_table["coil"]:
            return ILLEGAL_FUNCTION
        if not 1 <= len(values) <= (MAX_BITS_WRITE if bits else MAX_WRITE):
            return ILLEGAL_VALUE
        cells = self._cells[table]
        touched: dict[tuple[int, int], dict[int, int]] = {}  # (field, port) -> offset: word
        for i, v in enumerate(values):
            here = cells.get(addr + i)
            if not here or not all(self._writable[c.field] for c in here):
                return ILLEGAL_ADDRESS
            for c in here:
                touched.setdefault((c.field, c.port), {})[c.offset] = int(v)
        if any(not 0 <= int(v) <= (1 if bits else 0xFFFF) for v in values):
            return ILLEGAL_VALUE
        changes: list[tuple[str, int | None, float | str]] = []
        in_address_order = sorted(touched.items(), key=lambda kv: self._address(*kv[0]))
        for (index, port), new_words in in_address_order:
            f = self.fields[index]
            flat = self.encode(source, index) if len(new_words) < f.width else []
            words = flat[port * f.width : (port + 1) * f.width]
            words = [new_words.get(o, words[o] if words else 0) for o in range(f.width)]
            raw = _decode(f, words)
            special = next((k for k, v in f.special.items() if v == raw), None)
            value: float | str = special if special is not None else _unscaled(f, raw)
            p = port + 1 if f.per_port else None
            if special is None and not self._in_range(f, source, raw, float(value)):
                return ILLEGAL_VALUE
            if not source.valid(f.name, p, value):
                return ILLEGAL_VALUE
            changes.append((f.name, p, value))
        for name, p, value in changes:
            source.apply(name, p, value)
        return None

    def _address(self, index: int, port: int) -> int:
        f = self.fields[index]
        return f.address_of(port + 1) if f.per_port else f.address

    def _in_range(self, f: Field, source: FieldSource, raw: float, value: float) -> bool:
        if not math.isfinite(raw):
            return False
        if value == 0 and f.name in getattr(source, "zero_is_off", ()):
            return True
        eps = 1e-9 * max(1.0, abs(value))
        if f.min is not None and value < f.min - eps:
            return False
        return not (f.max is not None and value > f.max + eps)


TABLES = ("input", "holding", "coil", "discrete")


def _merged(spans: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Touching or overlapping [lo, hi) ranges joined."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(spans):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


def _port_words(f: Field, values: np.ndarray, counter: bool) -> list[int]:
    """`_words` over every port at once (numpy): the same rounding, saturation and wrap."""
    if f.type in ("f32", "f64"):
        words = (
            values.astype(">f4" if f.type == "f32" else ">f8").view(">u2").reshape(len(values), -1)
        )
    else:
        raw = _scaled(f, values)
        lo, hi = INT_RANGE[f.type]
        if counter:
            n = np.floor(raw + ENERGY_EPS).astype(np.int64) % (hi - lo + 1) + lo
        else:
            n = np.clip(np.rint(raw), lo, hi).astype(np.int64)
        if f.width == 1:
            return (n & 0xFFFF).tolist()
        u = n & 0xFFFFFFFF
        words = np.stack([u >> 16, u & 0xFFFF], axis=1)
    if f.word_order != "big":
        words = words[:, ::-1]
    return words.astype(np.int64).ravel().tolist()


def _scale_factors(f: Field) -> tuple[float, float]:
    """(mul, div) with register number = units x mul / div. Scale 0.1 is x 10, as the
    contract pages mean it (/ 0.1 can differ in the last bit and round the other way)."""
    inverse = 1.0 / f.scale
    return (float(round(inverse)), 1.0) if inverse == round(inverse) else (1.0, f.scale)


def _scaled(f: Field, value: Any) -> Any:
    """Units to the register's number (`_scale_factors`)."""
    mul, div = _scale_factors(f)
    return value * mul / div


def _unscaled(f: Field, raw: float) -> float:
    """The register's number in units: 160 x 0.1 is 16.0 exactly (160 / 10), not 16.000...04."""
    inverse = 1.0 / f.scale
    return raw / round(inverse) if inverse == round(inverse) else raw * f.scale


def _words(f: Field, value: float, *, counter: bool) -> list[int]:
    """A value in units as the field's registers: scaled, then rounded and saturated (a
    reading never wraps), except an energy counter: whole units, wrapping like the device's."""
    raw = _scaled(f, value)
    if f.type in ("f32", "f64"):
        packed = struct.pack(">f" if f.type == "f32" else ">d", raw)
        words = [int.from_bytes(packed[i : i + 2], "big") for i in range(0, len(packed), 2)]
        return words if f.word_order == "big" else words[::-1]
    lo, hi = INT_RANGE[f.type]
    if counter:
        n = math.floor(raw + ENERGY_EPS) % (hi - lo + 1) + lo
    else:
        n = max(lo, min(hi, round(raw)))
    if f.width == 1:
        return [n & 0xFFFF]
    u = n & 0xFFFFFFFF
    words = [u >> 16, u & 0xFFFF]
    return words if f.word_order == "big" else words[::-1]


def _words_encoder(f: Field, *, counter: bool) -> Callable[[float], list[int]]:
    """`_words` for one field, its type, scale and word order looked up once: the same
    arithmetic in the same order, so the same registers."""
    mul, div = _scale_factors(f)
    little = f.word_order != "big"
    if f.type in ("f32", "f64"):
        pack = struct.Struct(">f" if f.type == "f32" else ">d").pack
        unpack = struct.Struct(">HH" if f.type == "f32" else ">HHHH").unpack

        def floats(value: float) -> list[int]:
            words = list(unpack(pack(value * mul / div)))
            return words[::-1] if little else words

        return floats
    lo, hi = INT_RANGE[f.type]
    span = hi - lo + 1
    width = f.width

    def integers(value: float) -> list[int]:
        raw = value * mul / div
        n = math.floor(raw + ENERGY_EPS) % span + lo if counter else max(lo, min(hi, round(raw)))
        if width == 1:
            return [n & 0xFFFF]
        u = n & 0xFFFFFFFF
        return [u & 0xFFFF, u >> 16] if little else [u >> 16, u & 0xFFFF]

    return integers


def _decode(f: Field, words: Sequence[int]) -> float:
    if f.type in ("u16", "bit"):
        return words[0]
    if f.type == "i16":
        return words[0] - 0x10000 if words[0] & 0x8000 else words[0]
    ordered = list(words) if f.word_order == "big" else list(reversed(words))
    raw = b"".join(w.to_bytes(2, "big") for w in ordered)
    if f.type == "u32":
        return int.from_bytes(raw, "big")
    if f.type == "i32":
        return int.from_bytes(raw, "big", signed=True)
    return float(struct.unpack(">f" if f.type == "f32" else ">d", raw)[0])


class ImageDevice:
    """The Modbus side every template-built device shares: the four tables served from its
    image, writes checked whole and logged. A role model sets `image`, `writes` and `_now`
    and is the image's FieldSource."""

    image: RegisterImage
    writes: WriteLog
    _now: float

    def read_input(self, addr: int, count: int) -> list[int] | int:
        return self.image.read(self, "input", addr, count)  # type: ignore[arg-type]

    def read_holding(self, addr: int, count: int) -> list[int] | int:
        return self.image.read(self, "holding", addr, count)  # type: ignore[arg-type]

    def read_coils(self, addr: int, count: int) -> list[int] | int:
        return self.image.read(self, "coil", addr, count)  # type: ignore[arg-type]

    def read_discrete(self, addr: int, count: int) -> list[int] | int:
        return self.image.read(self, "discrete", addr, count)  # type: ignore[arg-type]

    def write_holding(self, addr: int, values: list[int]) -> int | None:
        error = self.image.write(self, "holding", addr, values)  # type: ignore[arg-type]
        self.writes.add(self._now, addr, values, error)
        return error

    def write_coils(self, addr: int, values: list[int]) -> int | None:
        error = self.image.write(self, "coil", addr, values)  # type: ignore[arg-type]
        if error != ILLEGAL_FUNCTION:
            self.writes.add(self._now, addr, values, error, "coil")
        return error
