"""An energy meter: the role's behaviour, served through any meter template (Eastron SDM630
and SDM120 as ../shared/hardware/meter-sdm.md restates them, Chint DTSU666, or any other).

The meter serves exactly its template's fields (`image.RegisterImage`); any other address
answers exception 02, and so does every write (a real meter has more registers: a driver that
reads one the template lacks is reading something the template does not promise).
Values change only on `update` (the world calls it about once a second, as a real meter
refreshes); `frozen` keeps the last values, the "stale meter" fault.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from chargectl.drivers.template import Template, shipped
from chargectl.sim.devices.image import ImageDevice, RegisterImage
from chargectl.sim.devices.registers import WriteLog

QUANTITIES = ("voltage", "current", "power")


class MeterModel(ImageDevice):
    def __init__(self, kind: str | Template, *, write_log_size: int = 100) -> None:
        if isinstance(kind, str):
            meters = {k: t for k, t in shipped().items() if t.role == "meter"}
            if kind not in meters:
                raise ValueError(f"meter kind must be one of {', '.join(meters)}, got {kind!r}")
            kind = meters[kind]
        if kind.role != "meter":
            raise ValueError(f"template {kind.kind!r} is a {kind.role} template, not a meter's")
        self.kind = kind.kind
        self.channels = kind.phases
        self.image = RegisterImage(kind)
        self.writes = WriteLog(write_log_size)
        self._now = 0.0
        self.frozen = False
        self.updates = 0  # updates applied (a frozen meter ignores them)
        self._numbers: dict[str, float] = {}
        self._values: dict[str, Any] = {}
        n = self.channels
        self.update(np.zeros(n), np.zeros(n), np.zeros(n), 0.0, 0.0)
        self.updates = 0

    # ------------------------------------------------------------------ the image's source
    def number(self, name: str) -> float:
        return self._numbers[name]

    def flags(self, name: str) -> Mapping[str, Any]:
        raise KeyError(name)  # no meter field has bits

    def meanings(self, name: str) -> tuple[tuple[str, ...], int]:
        raise KeyError(name)

    def words(self, name: str) -> list[int]:
        raise KeyError(name)

    def valid(self, name: str, port: int | None, value: float | str) -> bool:
        return False  # nothing to write

    def apply(self, name: str, port: int | None, value: float | str) -> None:
        raise KeyError(name)

    # ------------------------------------------------------------------ the world
    def update(
        self,
        volts: Sequence[float] | np.ndarray,
        amps: Sequence[float] | np.ndarray,
        watts: Sequence[float] | np.ndarray,
        frequency: float,
        import_kwh: float,
    ) -> None:
        """New readings: one value per channel (3 for a 3-phase meter, 1 for a 1-phase one)."""
        if self.frozen:
            return
        n = self.channels
        for name, arr in (("volts", volts), ("amps", amps), ("watts", watts)):
            if len(arr) != n:
                raise ValueError(f"{self.kind} update: {name} needs {n} values, got {len(arr)}")
        numbers = self._numbers
        for q, arr in zip(QUANTITIES, (volts, amps, watts), strict=True):
            for ch in range(n):
                numbers[f"{q}_l{ch + 1}"] = float(arr[ch])
        numbers["power_total"] = float(sum(watts))
        numbers["frequency"] = float(frequency)
        numbers["import_energy"] = float(import_kwh)
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
