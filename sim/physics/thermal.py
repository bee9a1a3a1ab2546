"""Socket temperature: first order towards ambient + k * I^2 (contact resistance heating).

With the defaults a charger at 2.3 A warms its socket by about 4.5 C; a 2 kW heater (9.1 A)
settles near 95 C and crosses the pile's 65 C cut-off after about 4 minutes. `extra_c` is a
fault injection: a loose or corroded contact that runs hot whatever the load.
"""

from __future__ import annotations

import math

import numpy as np


class SocketThermal:
    def __init__(
        self, n: int, ambient_c: float = 25.0, k_c_per_a2: float = 0.85, tau_s: float = 300.0
    ) -> None:
        self.ambient_c = ambient_c
        self.k = k_c_per_a2
        self.tau_s = tau_s
        self.temp_c = np.full(n, ambient_c)
        self.extra_c = np.zeros(n)

    def step(self, dt: float, amps: np.ndarray) -> None:
        target = self.ambient_c + self.extra_c + self.k * amps * amps
        # In place: the piles hold views of this array.
        self.temp_c[:] = target + (self.temp_c - target) * math.exp(-dt / self.tau_s)
