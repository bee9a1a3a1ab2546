"""The per-step work of a pile, over all its ports in one compiled call.

The world steps every pile every 0.1 s; with numpy each of the dozen small array operations
costs about a microsecond, which alone would eat the 50 us budget of a 200-socket step. One
numba call over two state matrices costs about one.

State layout (columns are ports):
  fstate float64 rows: AMPS, WATTS, TEMP, ENERGY (Wh, unwrapped), OVER_S (time above the limit)
  bstate uint8 rows:   CMD (relay command as it reads back), WELDED, CLOSED (contacts),
                       LOCK (a latched fault 1/2/4 holds the relay open), FAULT (code)
"""

from __future__ import annotations

import numba
import numpy as np

AMPS, WATTS, TEMP, ENERGY, OVER_S = range(5)
CMD, WELDED, CLOSED, LOCK, FAULT = range(5)
F_ROWS = 5
B_ROWS = 5

LOAD_PRESENT_A = 0.020  # port_state bit1 and the welded check
OVER_POWER_HOLD_S = 2.0  # fault 1: above the limit for more than this
OVER_TEMP_C = 65.0  # fault 2: at or above this
EPS = 1e-9  # float sums of 0.1 s steps drift by ~1e-15; never let that move a threshold

FAULT_OVER_POWER = 1
FAULT_OVER_TEMP = 2
FAULT_WELDED = 3
FAULT_SHORT = 4


@numba.njit(cache=True)
def step_ports(  # noqa: PLR0917 (numba: positional arrays)
    amps: np.ndarray,
    watts: np.ndarray,
    temp: np.ndarray,
    fstate: np.ndarray,
    bstate: np.ndarray,
    dt: float,
    limit_w: float,
) -> bool:
    """Record one step's truth, integrate energy, latch faults. True if a fault latched.

    The welded check uses the command the world saw when it computed these currents (this
    step's), so it runs before any new latch opens a relay. A more severe code replaces a
    lesser one (4 > 3 > 2 > 1): a welded contact on an over-powered port is what matters."""
    n = fstate.shape[1]
    if amps.shape[0] != n or watts.shape[0] != n or temp.shape[0] != n:
        # numba does not check bounds: a wrong length would write past the state arrays.
        raise ValueError("pile step: amps, watts and temp_c need one value per port")
    latched = False
    for p in range(n):
        a = amps[p]
        w = watts[p]
        t = temp[p]
        fstate[AMPS, p] = a
        fstate[WATTS, p] = w
        fstate[TEMP, p] = t
        fstate[ENERGY, p] += w * dt / 3600.0
        if limit_w > 0 and w > limit_w:
            fstate[OVER_S, p] += dt
        else:
            fstate[OVER_S, p] = 0.0

        code = 0
        lock = False
        if bstate[CMD, p] == 0 and a >= LOAD_PRESENT_A - EPS:
            code = FAULT_WELDED
        if fstate[OVER_S, p] > OVER_POWER_HOLD_S + EPS:
            lock = True
            code = max(code, FAULT_OVER_POWER)
        if t >= OVER_TEMP_C - EPS:
            lock = True
            code = max(code, FAULT_OVER_TEMP)
        if code > bstate[FAULT, p]:
            bstate[FAULT, p] = code
            latched = True
        if lock and bstate[LOCK, p] == 0:
            bstate[LOCK, p] = 1
            bstate[CMD, p] = 0
            bstate[CLOSED, p] = bstate[WELDED, p]
            latched = True
    return latched
