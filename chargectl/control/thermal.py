"""The controller's estimate of each breaker's thermal state (pure, vectorised over circuits).

A first-order model per circuit and phase (DOMAIN.md): theta' = (I^2 / In^2 - theta) / tau,
starting cold (theta = 0). A thermal trip can begin once theta reaches k^2 with k = 1.13, the
smallest current IEC 60898-1 allows to trip at all; the exported ratio is theta / k^2 of the
hottest phase. Sustained load at In settles at 1 / 1.13^2 = 0.78: a ratio above 0.8 therefore
means the breaker has been carrying more than its rating, and the controller plans below the
limit until it cools (`Derate`).

The simulator models the real breaker independently (sim/physics): this estimate is what the
controller believes from its meters, deliberately on the cautious side (k = 1.13 against a real
breaker tripping between 1.13 and 1.45 In; tau short, so it heats fast).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from chargectl.control.layout import FloatArray

K_NO_TRIP = 1.13
TAU_S = 120.0


class BreakerThermal:
    def __init__(self, rating_a: FloatArray, tau_s: float = TAU_S) -> None:
        self.rating_a = np.asarray(rating_a, dtype=np.float64)
        self.tau_s = tau_s
        self.theta = np.zeros((len(self.rating_a), 3))

    def step(self, dt: float, current_a: FloatArray) -> None:
        """Advance by `dt` seconds at the measured per-phase currents [C, 3] (exact for a
        constant current over the step)."""
        target = (current_a / self.rating_a[:, None]) ** 2
        decay = math.exp(-dt / self.tau_s)
        self.theta = target + (self.theta - target) * decay

    def ratio(self) -> FloatArray:
        """[C]: theta / k^2 of the hottest phase; 1.0 is where a trip may begin."""
        return np.asarray(self.theta.max(axis=1) / K_NO_TRIP**2)


@dataclass
class Derate:
    """Plan below the limit while a breaker is hot, with hysteresis so it does not flap."""

    above: float = 0.8  # start derating at this ratio
    below: float = 0.7  # stop once cooled below this
    factor: float = 0.85  # plan at this fraction of the limit meanwhile

    def __post_init__(self) -> None:
        self.active: np.ndarray | None = None

    def apply(self, ratio: FloatArray, limit_a: FloatArray) -> FloatArray:
        if self.active is None:
            self.active = np.zeros(len(ratio), dtype=np.bool_)
        self.active = np.where(self.active, ratio > self.below, ratio > self.above)
        return np.where(self.active[:, None], limit_a * self.factor, limit_a)
