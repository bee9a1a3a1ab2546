"""Cars on wallboxes (IEC 61851): follow the offered current within a few seconds.

A car draws what is offered, up to its own maximum, less near full (the taper), on 1 or 3
phases, following a higher offer with a 1 s time constant and a lower one (or a pause) with
`drop_s` (2 s by default, up to 5 s); below 6 A offered it pauses (IEC 61851: the pilot
cannot ask for less than 6 A). A wallbox is one device with one car, so a car is a small
object of floats: a shed has a handful.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

MIN_OFFER_A = 6.0
MAX_DROP_S = 5.0  # IEC 61851-1: a car follows a lower offer within 5 s


@dataclass(slots=True)
class Car:
    max_a: float = 16.0
    phases: int = 3
    soc: float = 0.3
    capacity_kwh: float = 40.0
    taper_soc: float = 0.8  # above this the car accepts less and less
    follow_s: float = 1.0  # time constant following a higher offer
    # Time constant following a lower offer or a pause. IEC 61851-1 gives a car 5 s; 2 s is a
    # slow but ordinary car (about 8 % of the step still above the new offer after 5 s).
    drop_s: float = 2.0
    amps: float = 0.0  # drawn on each of its phases

    def __post_init__(self) -> None:
        if self.phases not in (1, 3):
            raise ValueError(f"car phases must be 1 or 3, got {self.phases}")
        if self.max_a <= 0:
            raise ValueError(f"car max_a must be > 0, got {self.max_a}")
        if not 0.0 <= self.soc <= 1.0:
            raise ValueError(f"car soc must be within 0..1, got {self.soc}")
        if self.capacity_kwh <= 0:
            raise ValueError(f"car capacity_kwh must be > 0, got {self.capacity_kwh}")
        if not 0.0 < self.drop_s <= MAX_DROP_S:
            raise ValueError(f"car drop_s must be > 0 and <= {MAX_DROP_S:g}, got {self.drop_s}")

    def accepts_a(self) -> float:
        """What the car itself would take now (its maximum, tapered near full)."""
        if self.soc >= 1.0:
            return 0.0
        if self.soc <= self.taper_soc:
            return self.max_a
        # Never under 1 A before full, so a car does finish (a real one ends the session).
        return max(self.max_a * (1.0 - self.soc) / (1.0 - self.taper_soc), 1.0)

    def step(self, dt: float, offered_a: float, volts: float) -> float:
        """Advance by dt under `offered_a` at `volts`; returns the current per phase."""
        target = 0.0 if offered_a < MIN_OFFER_A or volts <= 0 else min(offered_a, self.accepts_a())
        tau = self.follow_s if target > self.amps else self.drop_s
        self.amps = target + (self.amps - target) * _decay(dt, tau)
        if self.amps < 0.05 and target == 0.0:
            self.amps = 0.0
        self.soc = min(
            1.0, self.soc + self.amps * self.phases * volts * dt / (self.capacity_kwh * 3.6e6)
        )
        return self.amps


@lru_cache(maxsize=64)
def _decay(dt: float, tau: float) -> float:
    return math.exp(-dt / tau)
