"""The per-step inner loops of the world, compiled: one call over all sockets, one over all poles.

Written as plain numpy, a step of the campus shed is about 25 small array operations at
roughly a microsecond each, half the 50 us budget before any device has run. These loops do
the same arithmetic in one call each (about 1 us). The device models already pay for numba's
import; `cache=True` keeps later start-ups at a few milliseconds per kernel.
`NUMBA_DISABLE_JIT=1` runs them as Python (slow, identical results).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def socket_step(  # noqa: PLR0917 (numba: positional arrays)
    closed: np.ndarray,  # bool[S] contacts closed (from the piles)
    fed: np.ndarray,  # bool[S] the socket's circuit has power
    on_s: np.ndarray,  # float[S] seconds since the contacts closed (in/out)
    stage_w: np.ndarray,  # float[S] charger power in its present stage
    appliance_w: np.ndarray,  # float[S]
    inv_pf: np.ndarray,  # float[S] 1 / power factor of the charger
    inrush_va: np.ndarray,  # float[S] extra volt-amperes on the first step after closing
    cp_index: np.ndarray,  # int[S] circuit * 3 + phase
    dt: float,
    inv_ramp_s: float,
    volts: float,
    amps: np.ndarray,  # out float[S]
    watts: np.ndarray,  # out float[S]
    own_a: np.ndarray,  # out float[C*3] socket current fed directly by each circuit and phase
    own_w: np.ndarray,  # out float[C*3]
) -> None:
    own_a[:] = 0.0
    own_w[:] = 0.0
    inv_v = 1.0 / volts if volts > 0.0 else 0.0
    for i in range(closed.shape[0]):
        if closed[i] and fed[i] and volts > 0.0:
            first = on_s[i] == 0.0
            on_s[i] += dt
            ramp = min(on_s[i] * inv_ramp_s, 1.0)
            cw = stage_w[i] * ramp
            w = cw + appliance_w[i]
            va = cw * inv_pf[i] + appliance_w[i]
            if first:
                va += inrush_va[i]
            a = va * inv_v
            amps[i] = a
            watts[i] = w
            k = cp_index[i]
            own_a[k] += a
            own_w[k] += w
        else:
            on_s[i] = 0.0
            amps[i] = 0.0
            watts[i] = 0.0


@numba.njit(cache=True)
def breaker_step(  # noqa: PLR0917 (numba: positional arrays)
    theta: np.ndarray,  # float[C, 3] thermal state (in/out)
    amps: np.ndarray,  # float[C, 3] current through each pole this step
    inv_rating2: np.ndarray,  # float[C] 1 / In^2
    magnetic_a: np.ndarray,  # float[C] instantaneous trip current
    closed: np.ndarray,  # bool[C] an open breaker cannot trip again
    decay: float,  # exp(-dt / tau)
    k2: float,
) -> bool:
    """theta <- target + (theta - target) * decay; True if a closed breaker has a pole at a
    trip condition."""
    trip = False
    for c in range(theta.shape[0]):
        for p in range(3):
            a = amps[c, p]
            target = a * a * inv_rating2[c]
            t = target + (theta[c, p] - target) * decay
            theta[c, p] = t
            if closed[c] and (t >= k2 or a > magnetic_a[c]):
                trip = True
    return trip


@numba.njit(cache=True)
def circuit_totals(  # noqa: PLR0917 (numba: positional arrays)
    own_a: np.ndarray,  # float[C, 3] fed directly by each circuit: sockets and wallboxes
    own_w: np.ndarray,
    unmanaged_a: np.ndarray,  # float[C, 3]
    unmanaged_w: np.ndarray,
    subtree: np.ndarray,  # bool[C, C]: subtree[a, b] when b is a or lies below a
    total_a: np.ndarray,  # out float[C, 3]: through each breaker
    total_w: np.ndarray,  # out
    energy_ws: np.ndarray,  # float[C, 3] (in/out) energy through each breaker
    dt: float,
) -> None:
    n = own_a.shape[0]
    for a in range(n):
        for p in range(3):
            sa = 0.0
            sw = 0.0
            for b in range(n):
                if subtree[a, b]:
                    sa += own_a[b, p] + unmanaged_a[b, p]
                    sw += own_w[b, p] + unmanaged_w[b, p]
            total_a[a, p] = sa
            total_w[a, p] = sw
            energy_ws[a, p] += sw * dt


@numba.njit(cache=True)
def charge_step(  # noqa: PLR0917 (numba: positional arrays)
    plugged: np.ndarray,  # bool[S]
    watts: np.ndarray,  # float[S] drawn at the socket over the interval
    soc_per_ws: np.ndarray,  # float[S] state of charge per joule at the socket
    cv_soc: np.ndarray,  # float[S]
    float_frac: np.ndarray,  # float[S]
    full_w: np.ndarray,  # float[S]
    float_w: np.ndarray,  # float[S]
    soc: np.ndarray,  # in/out float[S]
    stage: np.ndarray,  # in/out int8[S]: 0 none, 1 cc, 2 cv, 3 float
    stage_w: np.ndarray,  # out float[S]: what the charger asks for in its stage
    dt: float,
) -> None:
    for i in range(plugged.shape[0]):
        if not plugged[i]:
            continue
        s = soc[i]
        if stage[i] == 1 or stage[i] == 2:
            s = min(s + watts[i] * dt * soc_per_ws[i], 1.0)
            soc[i] = s
        cv = cv_soc[i]
        # In CV the current falls with what is left to fill: 1 at cv_soc, 0 when full.
        taper = min(max((1.0 - s) / max(1.0 - cv, 1e-9), 0.0), 1.0)
        if stage[i] == 3 or taper < float_frac[i]:
            stage[i] = 3
            stage_w[i] = float_w[i]
        elif s < cv:
            stage[i] = 1
            stage_w[i] = full_w[i]
        else:
            stage[i] = 2
            stage_w[i] = full_w[i] * taper
