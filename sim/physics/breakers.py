"""Thermal-magnetic breakers (IEC 60898-1), one per circuit, every pole evaluated.

Thermal part: the first-order model of DOMAIN.md, per pole,
    theta' = ((I / In)^2 - theta) / tau,   trip when theta >= k^2.
With the defaults (k = 1.25, tau = 120 s, cold start at theta = 0):
    1.13 In settles at theta = 1.277 < k^2 = 1.5625: never trips, however long;
    1.45 In trips after about 163 s (must be within 1 h);
    2.55 In trips after about 33 s (must be within 1..60 s).
The integration is the exact exponential solution for a current held over the step, so the
result does not depend on the step size.

Magnetic part: instantaneous above the LOW end of the curve's band (B 3, C 5, D 10 In). A real
breaker may hold a little longer; the simulator must never hide a trip, so it takes the
earliest a compliant breaker could open. The band is the RMS of a sine; the magnetic element
acts on the instantaneous current, so a chargers' inrush pulse (a few ms) trips when its peak
plus the steady current's peak (sqrt(2) x RMS) exceeds sqrt(2) x the band's low end: a C32
opens at 226 A instantaneous, a C63 at 445 A. The pulse's i^2 dt also heats the thermal part
(a 30 A pulse adds 0.7 A^2 s: nothing a breaker notices).

A multi-pole breaker opens every pole when one trips. It stays open until `reset`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from chargectl.config.schema import Breaker
from chargectl.sim.physics.kernels import SQRT2, breaker_step

MAGNETIC_LOW_END = {"B": 3.0, "C": 5.0, "D": 10.0}
DEFAULT_K = 1.25
DEFAULT_TAU_S = 120.0


@dataclass(frozen=True, slots=True)
class Trip:
    """A recorded trip: what opened, when, why, on which pole and at what current."""

    circuit: str
    time: float  # simulated seconds
    cause: str  # "thermal" or "magnetic"
    phase: int  # supply phase 1..3 of the pole that tripped
    current_a: float  # RMS over the step
    theta: float  # thermal state of that pole at the trip
    peak_a: float = 0.0  # instantaneous peak with chargers' inrush (magnetic trips by inrush)

    def as_dict(self) -> dict[str, object]:
        return {
            "circuit": self.circuit,
            "time": self.time,
            "cause": self.cause,
            "phase": self.phase,
            "current_a": round(self.current_a, 3),
            "theta": round(self.theta, 4),
            "peak_a": round(self.peak_a, 3),
        }


class BreakerBank:
    """All the breakers of a shed: arrays of shape (circuits, 3), one column per supply phase.

    A phase the circuit does not carry simply sees 0 A.
    """

    def __init__(
        self,
        circuit_ids: list[str],
        breakers: list[Breaker],
        *,
        k: float = DEFAULT_K,
        tau_s: float = DEFAULT_TAU_S,
    ) -> None:
        if len(circuit_ids) != len(breakers):
            raise ValueError("breakers: one breaker per circuit")
        if not 1.13 < k < 1.45:
            raise ValueError(f"breakers: k must be between 1.13 and 1.45 (IEC 60898-1), got {k}")
        if tau_s <= 0:
            raise ValueError(f"breakers: tau_s must be > 0, got {tau_s}")
        for cid, b in zip(circuit_ids, breakers, strict=True):
            if b.rating_a <= 0:
                raise ValueError(f"breaker of circuit {cid!r}: rating_a must be > 0")
            if b.curve not in MAGNETIC_LOW_END:
                raise ValueError(f"breaker of circuit {cid!r}: unknown curve {b.curve!r}")
        self.circuit_ids = list(circuit_ids)
        self.rating_a = np.array([b.rating_a for b in breakers], dtype=np.float64)
        self.magnetic_a = np.array(
            [b.rating_a * MAGNETIC_LOW_END[b.curve] for b in breakers], dtype=np.float64
        )
        self.k2 = k * k
        self.tau_s = tau_s
        n = len(breakers)
        self.inv_rating2 = 1.0 / self.rating_a**2
        self.theta = np.zeros((n, 3), dtype=np.float64)
        self.closed = np.ones(n, dtype=bool)
        self.trips: list[Trip] = []
        self._zeros = np.zeros((n, 3))
        self._decay_dt = -1.0
        self._decay = 0.0

    def step(
        self,
        now: float,
        dt: float,
        amps: np.ndarray,
        pulse_peak: np.ndarray | None = None,
        pulse_i2t: np.ndarray | None = None,
    ) -> list[Trip]:
        """Advance by `dt` with `amps` (circuits x 3, the RMS current through each pole) and
        any inrush in the step: `pulse_peak` its instantaneous peak per pole, `pulse_i2t` its
        integral of i^2 dt (A^2 s).

        Returns the trips of this step (also appended to `trips`).
        """
        if dt != self._decay_dt:
            self._decay = float(np.exp(-dt / self.tau_s))
            self._decay_dt = dt
        peak = self._zeros if pulse_peak is None else pulse_peak
        i2t = self._zeros if pulse_i2t is None else pulse_i2t
        if not breaker_step(
            self.theta,
            amps,
            peak,
            i2t,
            self.inv_rating2,
            self.magnetic_a,
            self.closed,
            dt,
            self._decay,
            self.k2,
        ):
            return []
        hot = self.theta >= self.k2
        mag = self.magnetic_a[:, None]
        instantaneous = SQRT2 * amps + peak
        magnetic = (amps > mag) | ((peak > 0.0) & (instantaneous > SQRT2 * mag))
        return self._trip(now, amps, hot, magnetic, np.where(peak > 0.0, instantaneous, 0.0))

    def _trip(
        self,
        now: float,
        amps: np.ndarray,
        hot: np.ndarray,
        magnetic: np.ndarray,
        peak: np.ndarray,
    ) -> list[Trip]:
        new: list[Trip] = []
        for c in range(len(self.circuit_ids)):
            if not self.closed[c]:
                continue  # an open breaker carries nothing; nothing new to record
            # Magnetic first: it is the faster mechanism when both are true in one step.
            for cause, mask in (("magnetic", magnetic), ("thermal", hot)):
                poles = np.flatnonzero(mask[c])
                if poles.size:
                    p = int(poles[np.argmax(amps[c, poles] + peak[c, poles])])
                    new.append(
                        Trip(
                            circuit=self.circuit_ids[c],
                            time=now,
                            cause=cause,
                            phase=p + 1,
                            current_a=float(amps[c, p]),
                            theta=float(self.theta[c, p]),
                            peak_a=float(peak[c, p]) if cause == "magnetic" else 0.0,
                        )
                    )
                    self.closed[c] = False
                    break
        self.trips.extend(new)
        return new

    def reset(self, index: int) -> None:
        """Close a breaker again (the thermal state stays: a hot breaker re-trips sooner)."""
        self.closed[index] = True

    def ratio(self) -> np.ndarray:
        """theta / k^2 per pole: 1.0 is the thermal trip point."""
        return self.theta / self.k2

    def seconds_to_trip(self, amps: np.ndarray) -> np.ndarray:
        """Time until a thermal trip per pole if `amps` (circuits x 3) were held; inf if never."""
        target = amps * amps * self.inv_rating2[:, None]
        out = np.full(self.theta.shape, np.inf)
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = (target - self.k2) / (target - self.theta)
            ok = (target > self.k2) & (frac > 0)
            out[ok] = -self.tau_s * np.log(frac[ok])
        out[self.theta >= self.k2] = 0.0
        return out
