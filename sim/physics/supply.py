"""The supply voltage: a set level, a seeded slow wander around it, and scheduled sags.

GB/T 12325 lets a 220 V supply sit anywhere in 198..235 V (+7 / -10 %), and evening peaks in
old compounds sit near the low end. The wander is an Ornstein-Uhlenbeck process (standard
deviation `noise_v`, correlation time `wander_s`, exact discretisation, its own seeded stream
so that it repeats and does not disturb the unmanaged load's), kept within 198..242 V.

A sag takes the level down to `volts` over `ramp_s`, holds it `seconds`, and comes back over
`ramp_s` (an evening sag: tens of minutes; a dip when a neighbour's motor starts: a second,
no ramp). The wander rides on the sag. A level set outside 198..242 V (an outage at 0 V, an
undervoltage at 170 V) is served exactly, without wander: it is a test of the piles' supply
fault bit, not of the controller's arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LOW_V = 198.0
HIGH_V = 242.0
MAX_V = 300.0


@dataclass(frozen=True, slots=True)
class Sag:
    start: float
    volts: float
    seconds: float
    ramp_s: float

    @property
    def end(self) -> float:
        return self.start + self.seconds + 2.0 * self.ramp_s

    def level(self, now: float, base: float) -> float:
        """The level at `now` while the sag runs (`base` before and after)."""
        t = now - self.start
        if t < 0.0 or now >= self.end:
            return base
        down = 1.0 if self.ramp_s <= 0 else min(t / self.ramp_s, 1.0)
        up_t = self.end - now
        up = 1.0 if self.ramp_s <= 0 else min(up_t / self.ramp_s, 1.0)
        f = min(down, up)
        return base + (self.volts - base) * f


class Supply:
    def __init__(
        self, nominal_v: float, noise_v: float = 0.0, wander_s: float = 300.0, seed: int = 1
    ) -> None:
        if noise_v < 0:
            raise ValueError(f"supply noise must be >= 0 V, got {noise_v}")
        if wander_s <= 0:
            raise ValueError(f"supply wander time must be > 0 s, got {wander_s}")
        self.level_v = float(nominal_v)
        self.noise_v = float(noise_v)
        self.wander_s = float(wander_s)
        self.wander_v = 0.0
        self.sag: Sag | None = None
        self._rng = np.random.default_rng([seed, 0x5A9])
        self._dt = -1.0
        self._a = self._b = 0.0

    def set_level(self, volts: float) -> None:
        if not 0.0 <= volts <= MAX_V:
            raise ValueError(f"supply voltage must be within 0..{MAX_V:g} V, got {volts}")
        self.level_v = float(volts)

    def start_sag(self, now: float, volts: float, seconds: float, ramp_s: float = 0.0) -> None:
        """A sag to `volts` for `seconds` (after a ramp of `ramp_s`, before one back)."""
        if not 0.0 <= volts <= MAX_V:
            raise ValueError(f"sag volts must be within 0..{MAX_V:g} V, got {volts}")
        if seconds <= 0 or ramp_s < 0:
            raise ValueError(f"sag needs seconds > 0 and ramp_s >= 0, got {seconds}, {ramp_s}")
        self.sag = Sag(now, float(volts), float(seconds), float(ramp_s))

    @property
    def changing(self) -> bool:
        """True while a sag runs: the voltage is then worked out every step."""
        return self.sag is not None

    def wander(self, dt: float) -> None:
        """Move the wander on by `dt` (the world calls this once a second)."""
        if self.noise_v <= 0.0 or dt <= 0.0:
            return
        if dt != self._dt:
            self._dt = dt
            self._a = math.exp(-dt / self.wander_s)
            self._b = math.sqrt(1.0 - self._a * self._a)
        self.wander_v = self.wander_v * self._a + self.noise_v * self._b * float(
            self._rng.standard_normal()
        )

    def volts(self, now: float) -> float:
        """The true supply voltage at `now`."""
        level = self.level_v
        if self.sag is not None:
            level = self.sag.level(now, level)
            if now >= self.sag.end:
                self.sag = None
        if not LOW_V <= level <= HIGH_V:
            return level  # an explicit fault level: exact
        return min(max(level + self.wander_v, LOW_V), HIGH_V)
