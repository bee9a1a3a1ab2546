"""The generic reader: a template's fields read in as few requests as its layout allows.

`template.plan_blocks` groups the fields one read needs into blocks (contiguous runs per
table, across gaps of at most `max_gap` registers or inside a `readable` range: the shipped
meter templates say 0, because the simulator, like many devices, answers exception 02 for
addresses it does not serve). `read_blocks` puts them on the line; decoding is pure.
"""

from __future__ import annotations

from collections.abc import Sequence

from chargectl.drivers.bus import ModbusBus
from chargectl.drivers.errors import BadValue
from chargectl.drivers.template import Block, Field, Template, decode_value, plan_blocks


def u32(hi: int, lo: int) -> int:
    return (hi << 16) | lo


def i16(word: int) -> int:
    return word - 0x10000 if word & 0x8000 else word


def read_fields(template: Template, names: Sequence[str] | None = None) -> list[Field]:
    """The template's fields named (all but writes when None), in template order."""
    from chargectl.drivers.template_fields import VOCABULARY

    vocab = VOCABULARY[template.role]
    if names is None:
        return [f for n, f in template.fields.items() if not vocab[n].write]
    return [template.fields[n] for n in names if n in template.fields]


def meter_blocks(template: Template) -> tuple[Block, ...]:
    """The reads of a meter: every field it has."""
    return plan_blocks(read_fields(template), template.max_gap, readable=template.readable)


def decode_blocks(
    blocks: Sequence[Block], device: str, replies: Sequence[Sequence[int]]
) -> dict[str, float]:
    """Scaled values by field name (fields not per port) from one reply per block. A float
    that is NaN or infinite stays so: the role's decoder decides whether it is critical."""
    values: dict[str, float] = {}
    for block, regs in zip(blocks, replies, strict=True):
        if len(regs) != block.count:
            raise BadValue(device, block.address, len(regs), f"block needs {block.count} registers")
        for s in block.slots:
            f = s.field
            off = s.address - block.address
            values[f.name] = decode_value(regs[off : off + f.width], f.type, f.word_order) * f.scale
    return values


async def read_blocks(bus: ModbusBus, unit: int, blocks: Sequence[Block]) -> list[list[int]]:
    """Read every block, in turn (one request in flight per line)."""
    replies: list[list[int]] = []
    for b in blocks:
        replies.append(await bus.read(b.table, unit, b.address, b.count))
    return replies
