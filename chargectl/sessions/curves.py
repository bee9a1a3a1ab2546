"""Session power curves: one ledger row per minute of a running session.

`CurveRecorder` is pure (every call is handed `now`; no clock, no I/O). It keeps, per bay,
the running session's minute in progress (minute = floor((now - session start) / 60), on
the monotonic clock like `checkpoints.elapsed_s`): the count, sum and highest of the ticks'
power and the count and sum of the temperatures reported. A tick that reaches the next minute,
or another session at the bay, hands the finished minute back as a `CurveMinute` record; a
session's end hands back its partial minute (`close`). Per tick that is a few array
operations over every bay at once; a record only once a minute per running session. The
records go to the ledger's writer thread like the checkpoints, so a crash loses at most the
minute in progress.

Bounded: a session keeps at most ceil(max_duration_s / 60) minutes; past that no more rows.
Pruned: `prune` asks the writer, at most once an hour, to delete the curves of sessions that
ended more than `curve_keep_days` ago (0 keeps none: no rows are written at all).

`curve_of` reads a session's curve back as the fire-risk detectors' `Curve`.
"""

from __future__ import annotations

import math
import sqlite3

import numpy as np
import numpy.typing as npt

from chargectl.firewatch.curve import Curve
from chargectl.sessions.records import CurveMinute, CurvePrune

MINUTE_S = 60.0
PRUNE_EVERY_S = 3600.0
DAY_S = 86400.0

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def max_minutes(max_duration_s: float) -> int:
    """The most rows a session keeps: the minutes its longest duration spans."""
    return max(1, math.ceil(max_duration_s / MINUTE_S))


class CurveRecorder:
    def __init__(self, n_bays: int, *, max_duration_s: float, keep_days: float) -> None:
        self.limit = max_minutes(max_duration_s)
        self.keep_days = keep_days
        self._sid: IntArray = np.full(n_bays, -1, dtype=np.int64)  # -1: no session
        self._minute: IntArray = np.full(n_bays, -1, dtype=np.int64)
        self._n = np.zeros(n_bays)
        self._sum_w = np.zeros(n_bays)
        self._max_w = np.full(n_bays, -np.inf)
        self._n_temp = np.zeros(n_bays)
        self._sum_temp = np.zeros(n_bays)
        self._next_prune = -math.inf

    def tick(
        self,
        now: float,
        session: IntArray,  # [B] the session running at each bay, -1 where none
        start: FloatArray,  # [B] its start on the monotonic clock (NaN: not known yet)
        power_w: FloatArray,  # [B] this tick's power, NaN where there is no reading
        temp_c: FloatArray,  # [B] this tick's socket temperature, NaN where none
    ) -> list[CurveMinute]:
        """Take one tick's samples; return the minutes it finished."""
        if self.keep_days <= 0:
            return []
        with np.errstate(invalid="ignore"):
            age = now - start
            valid = (session >= 0) & (age >= 0.0)  # NaN compares false
        minute = np.where(valid, np.floor(np.where(valid, age, 0.0) / MINUTE_S), -1.0).astype(
            np.int64
        )
        moved = (session != self._sid) | (minute != self._minute)
        out: list[CurveMinute] = []
        if moved.any():
            for j in np.flatnonzero(moved & (self._n > 0)):
                out.append(self._row(int(j)))
            self._reset(moved)
            self._sid[moved] = session[moved]
            self._minute[moved] = minute[moved]
        take = valid & (minute < self.limit) & np.isfinite(power_w)
        self._n += take
        self._sum_w += np.where(take, power_w, 0.0)
        np.maximum(self._max_w, np.where(take, power_w, -np.inf), out=self._max_w)
        hot = take & np.isfinite(temp_c)
        self._n_temp += hot
        self._sum_temp += np.where(hot, temp_c, 0.0)
        return out

    def close(self, j: int) -> CurveMinute | None:
        """The session at bay `j` ended: its minute in progress, if it holds a sample."""
        row = self._row(j) if self._n[j] > 0 and self.keep_days > 0 else None
        self._reset(np.arange(self._sid.size) == j)
        self._sid[j] = self._minute[j] = -1
        return row

    def prune(self, now: float, wall: float) -> CurvePrune | None:
        """Once an hour (of `now`): delete the curves of sessions that ended over
        `keep_days` ago. Call it only with a synchronized wall clock."""
        if now < self._next_prune:
            return None
        self._next_prune = now + PRUNE_EVERY_S
        return CurvePrune(wall - max(0.0, self.keep_days) * DAY_S)

    def _row(self, j: int) -> CurveMinute:
        n_temp = self._n_temp[j]
        temp = float(self._sum_temp[j] / n_temp) if n_temp > 0 else None
        return CurveMinute(
            id=int(self._sid[j]),
            minute=int(self._minute[j]),
            mean_w=float(self._sum_w[j] / self._n[j]),
            peak_w=float(self._max_w[j]),
            temp_c=temp,
        )

    def _reset(self, mask: npt.NDArray[np.bool_]) -> None:
        self._n[mask] = 0.0
        self._sum_w[mask] = 0.0
        self._max_w[mask] = -np.inf
        self._n_temp[mask] = 0.0
        self._sum_temp[mask] = 0.0


def curve_of(conn: sqlite3.Connection, session_id: int) -> Curve | None:
    """The session's curve as the ledger keeps it (an empty one when no minute is kept);
    None when the ledger has no such session."""
    head = conn.execute("SELECT bay, card FROM sessions WHERE id = ?", (session_id,)).fetchone()
    if head is None:
        return None
    rows = conn.execute(
        "SELECT minute, mean_w, peak_w, temp_c FROM curves WHERE session = ? ORDER BY minute",
        (session_id,),
    ).fetchall()
    a = np.array(
        [(m, w, p, math.nan if c is None else c) for m, w, p, c in rows], dtype=np.float64
    ).reshape(-1, 4)
    return Curve(
        session_id=str(session_id),
        bay=str(head[0]),
        card=str(head[1]),
        t=a[:, 0] * MINUTE_S,
        mean_w=a[:, 1].copy(),
        peak_w=a[:, 2].copy(),
        temp_c=a[:, 3].copy(),
        period_s=MINUTE_S,
    )
