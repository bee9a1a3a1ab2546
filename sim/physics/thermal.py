"""Socket temperature: first order towards ambient + k * I^2 (contact resistance heating).

IEC 60884-1 lets a socket's terminals rise at most 45 K at its rated current, so k is
45 K / rating^2: 0.45 K/A^2 for a 10 A socket, 0.176 K/A^2 for 16 A. With a 10 A socket at
25 C ambient a charger at 2.3 A warms it by 2.4 K and a 2 kW heater (9.1 A at 220 V) settles
near 62 C: a healthy socket under a heater stays below the pile's 65 C cut-off (the pile's
2000 W over-power cut is what stops a heater). `extra_c` is a fault injection: a loose or
corroded contact that runs hot whatever the load, the way a real socket reaches 65 C.
"""

from __future__ import annotations

import math

import numpy as np

RISE_AT_RATED_K = 45.0  # IEC 60884-1: terminal temperature rise at rated current


class SocketThermal:
    def __init__(
        self, n: int, ambient_c: float = 25.0, rating_a: float = 10.0, tau_s: float = 300.0
    ) -> None:
        if rating_a <= 0:
            raise ValueError(f"socket rating must be > 0 A, got {rating_a}")
        self.ambient_c = ambient_c
        self.rating_a = rating_a
        self.k = RISE_AT_RATED_K / (rating_a * rating_a)
        self.tau_s = tau_s
        self.temp_c = np.full(n, ambient_c)
        self.extra_c = np.zeros(n)

    def step(self, dt: float, amps: np.ndarray) -> None:
        target = self.ambient_c + self.extra_c + self.k * amps * amps
        # In place: the piles hold views of this array.
        self.temp_c[:] = target + (self.temp_c - target) * math.exp(-dt / self.tau_s)
