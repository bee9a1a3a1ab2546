"""Small pure checks shared by the role decoders: every failure is a `BadValue` naming the
device and the register. A decoder calls a check directly for a critical field (the
`BadValue` fails the whole reading) and through `Fields.soft` for a non-critical one (the
field becomes None and is listed as a `BadField`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

from chargectl.drivers.errors import BadValue
from chargectl.drivers.readings import BadField, Tap
from chargectl.drivers.template import Field, Image, Template, raw_value
from chargectl.drivers.template_fields import label

if TYPE_CHECKING:
    from chargectl.drivers.bus import ModbusBus

T = TypeVar("T")

# Sensor range of the temperature sensors these devices carry; beyond it the sensor is broken
# (or the register is garbage), not the socket on fire: smoke and over-temperature have their
# own status bits.
TEMP_MIN_C = -55.0
TEMP_MAX_C = 155.0
UID_LENGTHS = (4, 7, 8)


class Fields:
    """The non-critical fields of one decode: each is checked on its own, and a bad one is
    recorded, not raised."""

    def __init__(self) -> None:
        self.bad: list[BadField] = []

    def soft(self, name: str, check: Callable[[], T]) -> T | None:
        """`check()`, or None with the field recorded as bad when it raises `BadValue`."""
        try:
            return check()
        except BadValue as err:
            register = err.register if err.register is not None else -1
            self.bad.append(BadField(name, register, err.value, err.why))
            return None

    def result(self) -> tuple[BadField, ...]:
        return tuple(self.bad)


def expect(device: str, reg: int, value: int, wanted: int, what: str) -> None:
    if value != wanted:
        raise BadValue(device, reg, value, f"{what} must be {wanted}")


def in_range(device: str, reg: int, value: float, bounds: tuple[float, float], what: str) -> float:
    lo, hi = bounds
    if not math.isfinite(value):
        raise BadValue(device, reg, value, f"{what} is not a finite number")
    if not lo <= value <= hi:
        raise BadValue(device, reg, value, f"{what} outside {lo:g}..{hi:g}")
    return value


def tap(device: str, reg: int, words: Sequence[int], max_port: int) -> Tap | None:
    """The tap registers: seq, info (UID length << 8 | port), 4 words of UID right-aligned in
    8 bytes. `reg` is the address of seq. None when seq is 0 (no tap since power-up)."""
    seq, info = words[0], words[1]
    if seq == 0:
        return None
    length, port = info >> 8, info & 0xFF
    if length not in UID_LENGTHS:
        raise BadValue(device, reg + 1, info, f"UID length {length} is not 4, 7 or 8")
    if not 1 <= port <= max_port:
        raise BadValue(device, reg + 1, info, f"tap port {port} outside 1..{max_port}")
    raw = b"".join(w.to_bytes(2, "big") for w in words[2:6])
    if any(raw[: 8 - length]):
        raise BadValue(device, reg + 2, raw.hex(), f"a {length}-byte UID must be zero-padded")
    return Tap(seq=seq, port=port, uid=raw[8 - length :].hex().upper())


def reported(bus: ModbusBus, unit: int, decode: Callable[[], T]) -> T:
    """Run a decoder; a `BadValue` is counted in the unit's health, then raised."""
    try:
        return decode()
    except BadValue as err:
        bus.report(unit, err)
        raise


# ---------------------------------------------------------------------- template fields
def bits_text(defined: Iterable[int], width: int = 16) -> str:
    """The bits not in `defined`, as people say them: "above bit4", "2..7", "5, 9..15"."""
    known = set(defined)
    free = [b for b in range(width) if b not in known]
    if not free:
        return "none"
    if known and free[0] == max(known) + 1 and free == list(range(free[0], width)):
        return f"above bit{max(known)}"
    parts: list[str] = []
    start = prev = free[0]
    for b in [*free[1:], -1]:
        if b == prev + 1:
            prev = b
            continue
        parts.append(str(start) if start == prev else f"{start}..{prev}")
        start = prev = b
    return ", ".join(parts)


def bits_mask(defined: Iterable[int]) -> int:
    return sum(1 << b for b in set(defined))


def check_bits(device: str, reg: int, word: int, defined: Iterable[int], what: str) -> None:
    """A word whose set bits are not all `defined` is not what the template says it is: its
    defined bits cannot be trusted either."""
    bits = list(defined)
    if word & ~bits_mask(bits):
        raise BadValue(device, reg, word, f"{what} has bits {bits_text(bits)} set")


def code_of(f: Field, word: int) -> int:
    """The code a field's word holds: the whole word, or its `code_bits`."""
    if f.code_bits is None:
        return word
    lo, hi = f.code_bits
    return (word >> lo) & ((1 << (hi - lo + 1)) - 1)


def check_identity(device: str, template: Template, image: Image, *, ports: int = 1) -> None:
    """The identity fields (model, protocol version, port count) read what the template's
    `equals` says (`ports`: the configured port count)."""
    for name in ("model", "protocol_version", "port_count"):
        f = template.fields.get(name)
        if f is None or f.equals is None:
            continue
        wanted = ports if f.equals == "ports" else int(f.equals)
        value = int(raw_value(f, image))
        expect(device, f.address, value, wanted, label(template.role, name))
