"""What each charger would have drawn alone: from its plug to its departure, always on.

No controller can deliver more to a session than its charger draws on a socket that is never
switched off (a pause in CC only delays the taper; the battery's own charger sets the pace).
`alone_wh` steps one `ChargerBank` holding every session's charger at once, each from its own
plug, at the world's once-a-second rate of charge, at the shed's nominal voltage, and returns
each one's energy at the socket over its stay. The report's energy bound caps each session at
this (chargectl/replay/report.py); a car is capped by what its battery wanted only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from chargectl.sim.physics.chargers import ChargerBank

STEP_S = 1.0


def alone_wh(
    profiles: Sequence[str], socs: Sequence[float], stays_s: Sequence[float], volts: float
) -> np.ndarray:
    """Per charger: Wh drawn alone over its stay (`stays_s` from its plug)."""
    n = len(profiles)
    out = np.zeros(n)
    if n == 0:
        return out
    bank = ChargerBank(n, nominal_v=volts)
    for i, (p, soc) in enumerate(zip(profiles, socs, strict=True)):
        bank.plug(i, p, soc)
    stays = np.asarray(stays_s, dtype=np.float64)
    closed = np.ones(n, dtype=bool)
    fed = np.ones(n, dtype=bool)
    cp_index = np.zeros(n, dtype=np.int64)
    own_a, own_w = np.zeros(3), np.zeros(3)
    t = 0.0
    end = float(stays.max())
    while t < end:
        dt = min(STEP_S, end - t)
        bank.step(
            dt, closed=closed, fed=fed, volts=volts, cp_index=cp_index, own_a=own_a, own_w=own_w
        )
        here = stays > t
        out += np.where(here, bank.watts * np.minimum(dt, np.maximum(stays - t, 0.0)), 0.0)
        bank.charge(dt, bank.watts)
        closed &= here  # a charger that has left no longer counts (nor costs much)
        t += dt
    return out / 3600.0
