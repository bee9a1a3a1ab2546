"""One session's power curve: per-minute mean and peak power and socket temperature.

The detectors read only this. Sample i covers [t[i], t[i] + period_s) seconds from the
session's start; a missing sample (the controller was down) is a gap in `t`, never a filled
value. `temp_c` is NaN where the pile reports no temperature.

`curve_from_ticks` builds one from the controller's per-tick samples; `session_class` derives
what the controller can know of the charger: its constant-current power (the highest peak in
its first minutes with power on) and so its power class. It never sees the charger's profile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from chargectl.firewatch.settings import FirewatchSettings, PowerClass, power_class

FloatArray = npt.NDArray[np.float64]
MINUTE_S = 60.0


@dataclass(frozen=True, slots=True, eq=False)
class Curve:
    session_id: str
    bay: str
    card: str  # the card's UID, hex
    t: FloatArray  # [N] start of each sample, seconds since the session started, increasing
    mean_w: FloatArray  # [N] mean active power at the socket
    peak_w: FloatArray  # [N] highest tick's power
    temp_c: FloatArray  # [N] mean socket temperature, NaN where none is reported
    period_s: float = MINUTE_S

    def __post_init__(self) -> None:
        n = self.t.shape
        if len(n) != 1:
            raise ValueError(f"curve {self.session_id}: t must be 1-D, got shape {n}")
        for name in ("mean_w", "peak_w", "temp_c"):
            if getattr(self, name).shape != n:
                raise ValueError(
                    f"curve {self.session_id}: {name} has shape {getattr(self, name).shape}, "
                    f"t has {n}"
                )
        if not self.period_s > 0:
            raise ValueError(f"curve {self.session_id}: period_s must be > 0, got {self.period_s}")
        if n[0] > 1 and not np.all(np.diff(self.t) >= self.period_s * 0.999):
            raise ValueError(f"curve {self.session_id}: t must rise by at least period_s")
        for name in ("t", "mean_w", "peak_w"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise ValueError(f"curve {self.session_id}: {name} must be finite")

    def __len__(self) -> int:
        return int(self.t.shape[0])


def curve_from_ticks(
    t_s: npt.ArrayLike,
    watts: npt.ArrayLike,
    temp_c: npt.ArrayLike | None = None,
    *,
    session_id: str,
    bay: str,
    card: str,
    period_s: float = MINUTE_S,
) -> Curve:
    """Per-tick samples (seconds since the session started, W, C or NaN) to one sample per
    `period_s`: the mean and the highest power of the ticks in it, the mean of the reported
    temperatures. Ticks are taken as evenly spaced (the control tick); a period without ticks
    is left out (a gap), not filled."""
    t = np.asarray(t_s, dtype=np.float64)
    w = np.asarray(watts, dtype=np.float64)
    c = np.full(t.shape, np.nan) if temp_c is None else np.asarray(temp_c, dtype=np.float64)
    if t.ndim != 1 or w.shape != t.shape or c.shape != t.shape:
        raise ValueError(
            f"ticks: t, watts and temp_c must be 1-D of one length, got "
            f"{t.shape}, {w.shape}, {c.shape}"
        )
    if t.size and (np.any(np.diff(t) < 0) or t[0] < 0):
        raise ValueError("ticks: t must be >= 0 and not decreasing")
    if t.size == 0:
        empty = np.zeros(0)
        return Curve(session_id, bay, card, empty, empty, empty, empty, period_s)
    idx = np.floor(t / period_s).astype(np.int64)
    bins, start, counts = np.unique(idx, return_index=True, return_counts=True)
    mean_w = np.add.reduceat(w, start) / counts
    peak_w = np.maximum.reduceat(w, start)
    reported = np.isfinite(c)
    n_temp = np.add.reduceat(reported.astype(np.float64), start)
    sum_temp = np.add.reduceat(np.where(reported, c, 0.0), start)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_c = np.where(n_temp > 0, sum_temp / np.maximum(n_temp, 1.0), np.nan)
    return Curve(
        session_id, bay, card, bins.astype(np.float64) * period_s, mean_w, peak_w, mean_c, period_s
    )


@dataclass(frozen=True, slots=True)
class SessionClass:
    cc_w: float  # the charger's constant-current power at the socket, as seen
    power_class: PowerClass


def session_class(curve: Curve, settings: FirewatchSettings) -> SessionClass | None:
    """The session's constant-current power: its highest peak within its first
    `class_window_s` of samples with power on (every charger starts its cycle in CC, even on a
    full pack). None while nothing has drawn power."""
    on = curve.mean_w >= settings.off_w
    n_first = max(1, round(settings.class_window_s / curve.period_s))
    first = np.flatnonzero(on)[:n_first]
    if first.size == 0:
        return None
    cc_w = float(np.max(curve.peak_w[first]))
    return SessionClass(cc_w, power_class(settings, cc_w))
