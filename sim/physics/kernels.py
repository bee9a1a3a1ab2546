"""The per-step inner loops of the world, compiled: one call over all sockets, one over all poles.

Written as plain numpy, a step of the campus shed is about 25 small array operations at
roughly a microsecond each, half the 50 us budget before any device has run. These loops do
the same arithmetic in one call each (about 1 us). The device models already pay for numba's
import; `cache=True` keeps later start-ups at a few milliseconds per kernel.
`NUMBA_DISABLE_JIT=1` runs them as Python (slow, identical results).
"""

from __future__ import annotations

import math

import numba
import numpy as np

SQRT2 = math.sqrt(2.0)


@numba.njit(cache=True)
def socket_step(  # noqa: PLR0917 (numba: positional arrays)
    closed: np.ndarray,  # bool[S] contacts closed (from the piles)
    fed: np.ndarray,  # bool[S] the socket's circuit has power
    on_s: np.ndarray,  # float[S] seconds since the contacts closed (in/out)
    plugged: np.ndarray,  # bool[S] a charger is plugged
    stage: np.ndarray,  # int8[S] (in/out): a charger whose power returns restarts in CC
    stage_w: np.ndarray,  # float[S] (in/out) charger power in its present stage
    full_w: np.ndarray,  # float[S] the charger's CC power
    appliance_w: np.ndarray,  # float[S] resistive, rated at the nominal voltage
    inv_pf: np.ndarray,  # float[S] 1 / power factor of the charger
    inrush_a: np.ndarray,  # float[S] the charger's inrush peak at the nominal voltage (A)
    contact: np.ndarray,  # float[S] share of the power a poor contact lets through (1: sound)
    cp_index: np.ndarray,  # int[S] circuit * 3 + phase
    dt: float,
    inv_ramp_s: float,
    volts: float,
    nominal_v: float,
    amps: np.ndarray,  # out float[S] RMS over the step (the inrush pulse is not in it)
    watts: np.ndarray,  # out float[S] active power
    pulse_a: np.ndarray,  # out float[S] inrush peak of a charger powered this step, else 0
    own_a: np.ndarray,  # out float[C*3] socket current fed directly by each circuit and phase
    own_w: np.ndarray,  # out float[C*3]
) -> int:
    """Currents and powers of every socket for one step; returns how many chargers got power
    this step (their inrush peaks are in `pulse_a`).

    Chargers are constant-power loads: I = P / (V * pf), more amps as the voltage sags.
    Appliances are resistive: P = P_rated * (V / V_nominal)^2. A poor contact passes only
    `contact` of either (it arcs and drops out within the step)."""
    own_a[:] = 0.0
    own_w[:] = 0.0
    inv_v = 1.0 / volts if volts > 0.0 else 0.0
    r = volts / nominal_v if nominal_v > 0.0 else 1.0
    appl_scale = r * r
    n_pulses = 0
    for i in range(closed.shape[0]):
        pulse_a[i] = 0.0
        if closed[i] and fed[i] and volts > 0.0:
            if on_s[i] == 0.0 and plugged[i]:
                # Power returns: the input capacitors charge (a short peak) and the charger
                # starts its cycle again in constant current.
                stage[i] = 1
                stage_w[i] = full_w[i]
                pulse_a[i] = inrush_a[i] * r
                if pulse_a[i] > 0.0:
                    n_pulses += 1
            on_s[i] += dt
            ramp = min(on_s[i] * inv_ramp_s, 1.0)
            cw = stage_w[i] * ramp
            aw = appliance_w[i] * appl_scale
            c = contact[i]
            w = (cw + aw) * c
            a = (cw * inv_pf[i] + aw) * inv_v * c
            amps[i] = a
            watts[i] = w
            k = cp_index[i]
            own_a[k] += a
            own_w[k] += w
        else:
            on_s[i] = 0.0
            amps[i] = 0.0
            watts[i] = 0.0
    return n_pulses


@numba.njit(cache=True)
def inrush_peaks(  # noqa: PLR0917 (numba: positional arrays)
    t: np.ndarray,  # float[P] instant each pulse starts (s)
    peak: np.ndarray,  # float[P] its peak (A)
    cp: np.ndarray,  # int[P] circuit * 3 + phase of its socket
    subtree: np.ndarray,  # bool[C, C]
    tau_s: float,  # decay time constant of a pulse
    out_peak: np.ndarray,  # out float[C, 3]: the highest sum of overlapping pulses per pole
    out_i2t: np.ndarray,  # out float[C, 3]: the pulses' integral of i^2 dt per pole (A^2 s)
) -> None:
    """Each pulse is i(t) = peak * exp(-(t - t0) / tau) from its start t0. The sum of the
    pulses under a pole is highest at the start of one of them: there it is the new peak plus
    what is left of the earlier ones. i^2 dt is counted honestly, cross terms included."""
    n_c = subtree.shape[0]
    n = t.shape[0]
    out_peak[:, :] = 0.0
    out_i2t[:, :] = 0.0
    for a in range(n_c):
        for p in range(3):
            best = 0.0
            i2t = 0.0
            for j in range(n):
                cj = cp[j]
                if cj % 3 != p or not subtree[a, cj // 3]:
                    continue
                s = 0.0
                for i in range(n):
                    ci = cp[i]
                    if ci % 3 != p or not subtree[a, ci // 3]:
                        continue
                    lag = t[j] - t[i]
                    if lag >= 0.0:
                        s += peak[i] * math.exp(-lag / tau_s)
                    # integral of the product of two pulses over the time both flow
                    i2t += peak[i] * peak[j] * math.exp(-abs(lag) / tau_s) * tau_s * 0.5
                best = max(best, s)
            out_peak[a, p] = best
            out_i2t[a, p] = i2t


@numba.njit(cache=True)
def breaker_step(  # noqa: PLR0917 (numba: positional arrays)
    theta: np.ndarray,  # float[C, 3] thermal state (in/out)
    amps: np.ndarray,  # float[C, 3] RMS current through each pole this step
    pulse_peak: np.ndarray,  # float[C, 3] instantaneous inrush peak on each pole (0: none)
    pulse_i2t: np.ndarray,  # float[C, 3] the inrush's integral of i^2 dt (A^2 s)
    inv_rating2: np.ndarray,  # float[C] 1 / In^2
    magnetic_a: np.ndarray,  # float[C] instantaneous trip current (RMS of a sine)
    closed: np.ndarray,  # bool[C] an open breaker cannot trip again
    dt: float,
    decay: float,  # exp(-dt / tau)
    k2: float,
) -> bool:
    """theta <- target + (theta - target) * decay; True if a closed breaker has a pole at a
    trip condition. The thermal target is the mean of i^2 over the step (the inrush's i^2 dt
    included). The magnetic element acts on the instantaneous current: a sine trips above
    magnetic_a RMS, i.e. sqrt(2) * magnetic_a at its peak; an inrush pulse rides on the
    steady current's peak (worst case: a capacitor-input charger draws at the voltage peak)."""
    trip = False
    inv_dt = 1.0 / dt
    for c in range(theta.shape[0]):
        for p in range(3):
            a = amps[c, p]
            target = (a * a + pulse_i2t[c, p] * inv_dt) * inv_rating2[c]
            t = target + (theta[c, p] - target) * decay
            theta[c, p] = t
            if not closed[c]:
                continue
            over = SQRT2 * (a - magnetic_a[c]) + pulse_peak[c, p]  # instantaneous, vs the band
            if t >= k2 or a > magnetic_a[c] or (pulse_peak[c, p] > 0.0 and over > 0.0):
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
    on_s: np.ndarray,  # float[S] seconds the charger has had power (since its relay closed)
    restart_cc_s: np.ndarray,  # float[S] CC held after power returns to a nearly full pack
    restart_tau_s: np.ndarray,  # float[S] then the CV current falls with this time constant
    no_taper: np.ndarray,  # bool[S] a faulty pack: CC whatever its state of charge
    short_w: np.ndarray,  # float[S] a cell short's extra power once it develops (0: none)
    short_at_soc: np.ndarray,  # float[S] it develops after the taper, from this state of charge
    short_after_s: np.ndarray,  # float[S] ... and this many seconds of power later
    short_grow_w_s: np.ndarray,  # float[S] then it grows by this many W per second of power
    short_s: np.ndarray,  # in/out float[S] seconds of power since it was triggered (< 0: not yet)
    soc: np.ndarray,  # in/out float[S]
    stage: np.ndarray,  # in/out int8[S]: 0 none, 1 cc, 2 cv, 3 float
    stage_w: np.ndarray,  # out float[S]: what the charger asks for in its stage
    dt: float,
) -> None:
    """State of charge and stage. CC below cv_soc; above it CV, the current falling in
    proportion to what is left to fill; float once that falls under float_frac of CC.

    A charger whose power returns (socket_step set it to CC) on a pack above cv_soc holds CC
    for restart_cc_s (the pack's voltage rises to the CV set point), then its CV current
    falls from full as exp(-t / restart_tau_s) (the surface charge), never below what the
    state of charge asks, and floats again when that is under float_frac.

    Faults of the pack: `no_taper` holds CC past cv_soc (the energy goes into heat, not the
    full pack). A cell short is triggered once the charger has left CC at or above
    short_at_soc; after short_after_s seconds of power it draws short_w more, growing by
    short_grow_w_s per second of power. The charger feeds it on top of its stage's power; it
    does not charge the pack."""
    for i in range(plugged.shape[0]):
        if not plugged[i]:
            continue
        extra = 0.0  # the short's power over the interval (as it was at its start)
        if short_w[i] > 0.0 and short_s[i] >= short_after_s[i]:
            extra = short_w[i] + short_grow_w_s[i] * (short_s[i] - short_after_s[i])
        s = soc[i]
        if stage[i] == 1 or stage[i] == 2:
            s = min(s + max(watts[i] - extra, 0.0) * dt * soc_per_ws[i], 1.0)
            soc[i] = s
        cv = cv_soc[i]
        # In CV the current falls with what is left to fill: 1 at cv_soc, 0 when full.
        taper = min(max((1.0 - s) / max(1.0 - cv, 1e-9), 0.0), 1.0)
        since = on_s[i] - restart_cc_s[i]
        if on_s[i] > 0.0 and since > 0.0:
            taper = max(taper, math.exp(-since / restart_tau_s[i]))
        if no_taper[i]:
            stage[i] = 1
            stage_w[i] = full_w[i]
        elif stage[i] == 3:
            stage_w[i] = float_w[i]
        elif s < cv or (on_s[i] > 0.0 and since <= 0.0 and stage[i] == 1):
            stage[i] = 1
            stage_w[i] = full_w[i]
        elif taper < float_frac[i]:
            stage[i] = 3
            stage_w[i] = float_w[i]
        else:
            stage[i] = 2
            stage_w[i] = full_w[i] * taper
        if short_w[i] > 0.0:
            if short_s[i] < 0.0:
                if stage[i] != 1 and s >= short_at_soc[i]:
                    short_s[i] = 0.0
            elif on_s[i] > 0.0:
                short_s[i] += dt
            if short_s[i] >= short_after_s[i]:
                stage_w[i] += short_w[i] + short_grow_w_s[i] * (short_s[i] - short_after_s[i])
