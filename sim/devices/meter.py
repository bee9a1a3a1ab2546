"""An Eastron SDM630 (3-phase) or SDM120 (1-phase) meter: the subset in
../shared/hardware/meter-sdm.md, each value an IEEE-754 float32, high word first.

The meter serves exactly the listed registers; any other input address, every holding
address and every write answer exception 02 (a real meter has more registers: a driver that
reads one this simulator lacks is reading something the contract does not promise).
Values change only on `update` (the world calls it about once a second, as a real meter
refreshes); `frozen` keeps the last values, the "stale meter" fault.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from chargectl.sim.devices.registers import ILLEGAL_ADDRESS, Block, float32_words, read_blocks

# quantity -> register address of each channel (L1, L2, L3)
VOLTS = (0, 2, 4)
AMPS = (6, 8, 10)
WATTS = (12, 14, 16)
TOTAL_WATTS = 52
FREQUENCY = 70
IMPORT_KWH = 72
IMAGE_SIZE = 74

KINDS = {"sdm630": 3, "sdm120": 1}


class MeterModel:
    def __init__(self, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"meter kind must be one of {', '.join(KINDS)}, got {kind!r}")
        self.kind = kind
        self.channels = KINDS[kind]
        self.frozen = False
        self.updates = 0  # updates applied (a frozen meter ignores them)
        self._image = [0] * IMAGE_SIZE
        self._values: dict[str, Any] = {}
        n = self.channels
        spans = [(VOLTS[0], 2 * n), (AMPS[0], 2 * n), (WATTS[0], 2 * n)]
        if kind == "sdm630":  # the three channels of each quantity are contiguous: 0..17
            spans = [(0, 18), (TOTAL_WATTS, 2)]
        spans.append((FREQUENCY, 4))
        self._blocks = tuple(Block(start, size, self._view(start, size)) for start, size in spans)
        self.update(np.zeros(n), np.zeros(n), np.zeros(n), 0.0, 0.0)
        self.updates = 0

    def _view(self, start: int, size: int) -> Any:
        return lambda: self._image[start : start + size]

    # ------------------------------------------------------------------ Modbus side
    def read_input(self, addr: int, count: int) -> list[int] | int:
        return read_blocks(self._blocks, addr, count)

    def read_holding(self, addr: int, count: int) -> list[int] | int:
        return ILLEGAL_ADDRESS

    def write_holding(self, addr: int, values: list[int]) -> int | None:
        return ILLEGAL_ADDRESS

    # ------------------------------------------------------------------ the world
    def update(
        self,
        volts: Sequence[float] | np.ndarray,
        amps: Sequence[float] | np.ndarray,
        watts: Sequence[float] | np.ndarray,
        frequency: float,
        import_kwh: float,
    ) -> None:
        """New readings: one value per channel (3 for an SDM630, 1 for an SDM120)."""
        if self.frozen:
            return
        n = self.channels
        for name, arr in (("volts", volts), ("amps", amps), ("watts", watts)):
            if len(arr) != n:
                raise ValueError(f"{self.kind} update: {name} needs {n} values, got {len(arr)}")
        image = self._image
        for ch in range(n):
            image[VOLTS[ch] : VOLTS[ch] + 2] = float32_words(volts[ch])
            image[AMPS[ch] : AMPS[ch] + 2] = float32_words(amps[ch])
            image[WATTS[ch] : WATTS[ch] + 2] = float32_words(watts[ch])
        if n == 3:
            image[TOTAL_WATTS : TOTAL_WATTS + 2] = float32_words(float(sum(watts)))
        image[FREQUENCY : FREQUENCY + 2] = float32_words(frequency)
        image[IMPORT_KWH : IMPORT_KWH + 2] = float32_words(import_kwh)
        self._values = {
            "volts": [float(v) for v in volts],
            "amps": [float(a) for a in amps],
            "watts": [float(w) for w in watts],
            "frequency": float(frequency),
            "import_kwh": float(import_kwh),
        }
        self.updates += 1

    def snapshot(self) -> dict[str, Any]:
        return {"kind": self.kind, "frozen": self.frozen, "updates": self.updates, **self._values}
