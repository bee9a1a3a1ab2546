"""Helpers for the device-model tests: drive a pile like the world does."""

from __future__ import annotations

import numpy as np

from chargectl.sim.devices.pile import PileModel


def ports_array(pile: PileModel, value: float | list[float]) -> np.ndarray:
    if isinstance(value, list):
        assert len(value) == pile.ports
        return np.asarray(value, dtype=np.float64)
    return np.full(pile.ports, float(value))


def run_pile(
    pile: PileModel,
    t: float,
    seconds: float,
    *,
    amps: float | list[float] = 0.0,
    watts: float | list[float] = 0.0,
    temp: float | list[float] = 25.0,
    supply_v: float = 220.0,
    cabinet_c: float = 25.0,
    dt: float = 0.1,
) -> float:
    """Step the pile for `seconds` from time `t`; returns the new time. Like the world, a
    port draws its current only while its contacts are closed."""
    a, w, tc = ports_array(pile, amps), ports_array(pile, watts), ports_array(pile, temp)
    for _ in range(round(seconds / dt)):
        closed = pile.contact_closed()
        t += dt
        pile.step(
            t, dt, np.where(closed, a, 0.0), np.where(closed, w, 0.0), tc, supply_v, cabinet_c
        )
    return t


def s16(word: int) -> int:
    return word - 0x10000 if word & 0x8000 else word
