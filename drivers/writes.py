"""Writes in as few frames as the addresses allow: a contiguous run of holding registers is
one function-16 write (a lone register: function 06), a run of coils one function-15 write
(a lone coil: function 05). A value of several registers is always inside one run."""

from __future__ import annotations

from collections.abc import Mapping

from chargectl.drivers.bus import MAX_WRITE, ModbusBus


def address_runs(words: Mapping[int, int], most: int = MAX_WRITE) -> list[tuple[int, list[int]]]:
    """Contiguous runs of address -> word, in address order, each at most `most` long."""
    out: list[tuple[int, list[int]]] = []
    for addr in sorted(words):
        if out and out[-1][0] + len(out[-1][1]) == addr and len(out[-1][1]) < most:
            out[-1][1].append(words[addr])
        else:
            out.append((addr, [words[addr]]))
    return out


async def write_runs(
    bus: ModbusBus,
    unit: int,
    table: str,
    words: Mapping[int, int],
    *,
    retry_for_s: float = 0.0,
) -> int:
    """Write `words` (address -> register value, or 0/1 for a coil); returns the frames."""
    frames = 0
    for addr, run in address_runs(words):
        if table == "coil":
            if len(run) == 1:
                await bus.write_coil(unit, addr, bool(run[0]), retry_for_s=retry_for_s)
            else:
                await bus.write_coils(unit, addr, [bool(v) for v in run], retry_for_s=retry_for_s)
        elif len(run) == 1:
            await bus.write_register(unit, addr, run[0], retry_for_s=retry_for_s)
        else:
            await bus.write_registers(unit, addr, run, retry_for_s=retry_for_s)
        frames += 1
    return frames
