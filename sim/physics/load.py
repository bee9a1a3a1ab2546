"""Unmanaged load per circuit: lights, a fan, a vending machine. Not switchable by anyone.

Per circuit and phase: a base current, slow random wander around it (an Ornstein-Uhlenbeck
process from a seeded generator, so a run repeats exactly), and steps added by a scenario or
the control API. Resistive: watts = volts x amps.
"""

from __future__ import annotations

import math

import numpy as np


class UnmanagedLoad:
    def __init__(
        self, base_a: np.ndarray, noise_a: np.ndarray, seed: int, wander_s: float = 10.0
    ) -> None:
        """base_a: circuits x 3; noise_a: circuits (the standard deviation of the wander)."""
        self.base_a = np.array(base_a, dtype=np.float64)
        self.noise_a = np.asarray(noise_a, dtype=np.float64)[:, None] * np.ones((1, 3))
        self.step_a = np.zeros_like(self.base_a)
        self.wander = np.zeros_like(self.base_a)
        self.wander_s = wander_s
        self.rng = np.random.default_rng(seed)
        self._has_noise = bool((self.noise_a > 0).any())
        self._dt = -1.0
        self._a = self._b = 0.0

    def set_step(self, circuit: int, amps: np.ndarray) -> None:
        """Extra current per phase (replaces the previous step of that circuit)."""
        if (np.asarray(amps) < 0).any():
            raise ValueError("load step amps must be >= 0")
        self.step_a[circuit] = amps

    def amps(self, dt: float) -> np.ndarray:
        """The unmanaged current (circuits x 3) for the next `dt` seconds."""
        if self._has_noise:
            if dt != self._dt:
                # Exact OU discretisation: the stationary deviation stays noise_a at any dt.
                self._dt = dt
                self._a = math.exp(-dt / self.wander_s)
                self._b = math.sqrt(1.0 - self._a * self._a)
            self.wander = self.wander * self._a + self.noise_a * self._b * self.rng.standard_normal(
                self.wander.shape
            )
            return np.maximum(self.base_a + self.step_a + self.wander, 0.0)
        return self.base_a + self.step_a
