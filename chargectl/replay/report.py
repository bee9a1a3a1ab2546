"""The figures of a replay, computed from its `Recording` alone, and chargectl's goals on them.

`report(rec)` gives one flat dict (JSON-able: floats rounded, None where a figure is undefined),
its keys in a fixed order so two reports line up in `table` for `--compare`. `goals(rep, ...)`
checks a report against chargectl's goals, one row of `GOALS` each.

Conventions used by several figures:

- A session's stop is the first of its end (the ledger's), its owner's leave and the replay's
  end (`duration_s`); a session without current is counted as waiting until then.
- Percentiles are numpy's `percentile` with its default (linear interpolation between the two
  nearest ranks), over one value per session.
- The replay's simulated time is `ticks * tick_s` (the ticks the runner actually ran).

The energy bound (`energy_bound`) is a fluid relaxation: per tick it pools all circuits and
phases into one pot of `capacity_w * tick_s` and lets every present session take up to its
`max_w` from it, earliest-leaving first. Pooling drops the per-circuit and per-phase limits,
which can only raise it. It is a greedy fill, not the pooled optimum: with each session's power
capped, serving the earliest-leaving first can leave a later tick's pot unused that a session
held back earlier could have taken (tests/replay/test_report.py shows a case), so a controller
may now and then beat it; `served_ratio` is capped at 1.0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from chargectl.replay.recording import Recording, SessionRecord

WH_PER_JOULE = 1.0 / 3600.0
DONE_EPS_WH = 1e-9  # a session with less left than this wants nothing more


def report(rec: Recording) -> dict[str, Any]:
    """The replay's figures, keys in a fixed order (see the module docstring for conventions)."""
    simulated_s = rec.ticks * rec.tick_s
    delivered_kwh = sum(s.delivered_wh for s in rec.sessions) / 1000.0
    bound_kwh = energy_bound(rec) / 1000.0
    served = None if bound_kwh <= 0 else min(1.0, delivered_kwh / bound_kwh)
    waits = session_waits(rec, cars_only=False)
    car_waits = session_waits(rec, cars_only=True)
    return {
        "scenario": rec.scenario,
        "policy": rec.policy,
        "seed": rec.seed,
        "simulated_s": _round(simulated_s, 3),
        "wall_s": _round(rec.wall_s, 3),
        "speedup": None if rec.wall_s <= 0 else _round(simulated_s / rec.wall_s, 1),
        "ticks": rec.ticks,
        "trips": sum(1 for m in rec.marks if m.kind == "trip"),
        "overload_s": _round(overload_s(rec), 3),
        "max_load_ratio": _round(max_load_ratio(rec), 4),
        "breaker_peak_thermal": _round(peak_thermal(rec), 4),
        "energy_delivered_kwh": _round(delivered_kwh, 4),
        "energy_bound_kwh": _round(bound_kwh, 4),
        "served_ratio": _round(served, 4),
        "sessions": len(rec.sessions),
        "sessions_full": sum(1 for s in rec.sessions if s.full),
        "wait_p50_s": _round(_percentile(waits, 50), 1),
        "wait_p95_s": _round(_percentile(waits, 95), 1),
        "car_wait_p95_s": _round(_percentile(car_waits, 95), 1),
        "jain_fairness": _round(jain_fairness(rec), 4),
        "switches_per_session_p95": _round(
            _percentile([float(s.switches) for s in rec.sessions], 95), 2
        ),
        "idle_capacity_while_waiting": _round(idle_while_waiting(rec), 4),
        "ledger_mismatch_wh": _round(
            sum(abs(s.ledger_wh - s.delivered_wh) for s in rec.sessions), 3
        ),
        "turned_away": rec.turned_away,
    }


def session_stop(s: SessionRecord, duration_s: float) -> float:
    """When the session stopped counting: its end, its owner's leave or the replay's end."""
    return min(t for t in (s.end_at, s.leave_at, duration_s) if t is not None)


def overload_s(rec: Recording) -> float:
    """Seconds during which any circuit was over its limit.

    Per tick the most of the circuits' `over_s`, not their sum: two circuits over in the same
    instant are one overload. (Two circuits over at different moments of one tick count as the
    longer of the two; a tick is short against what this figure is for.)
    """
    if rec.ticks == 0 or not rec.circuits:
        return 0.0
    return float(rec.over_s.max(axis=1).sum())


def max_load_ratio(rec: Recording) -> float | None:
    """The highest peak current against its circuit's limit, over ticks and carried phases."""
    mask = rec.phase_mask() & (rec.limit_a > 0)[:, None]
    if rec.ticks == 0 or not mask.any():
        return None
    safe_limit = np.where(rec.limit_a > 0, rec.limit_a, 1.0)
    ratios = rec.peak_amps / safe_limit[None, :, None]
    return float(ratios[:, mask].max())


def peak_thermal(rec: Recording) -> float | None:
    """The highest thermal state of any breaker pole on a carried phase (1.0 = trip)."""
    mask = rec.phase_mask()
    if rec.ticks == 0 or not mask.any():
        return None
    return float(rec.thermal[:, mask].max())


def idle_while_waiting(rec: Recording) -> float | None:
    """The mean unused share of the binding limit over the ticks where someone waited."""
    short = rec.waiting > 0
    if not short.any():
        return None
    return float(rec.unused_ratio[short].mean())


def session_waits(rec: Recording, cars_only: bool) -> list[float]:
    """Seconds from tap to first current, one per session that got current or wanted some.

    A session that wanted energy (`wanted_wh > 0`) and never got current waited until its stop
    (`session_stop`); one that wanted nothing and got nothing did not wait and is left out.
    """
    waits = []
    for s in rec.sessions:
        if cars_only and not s.car:
            continue
        if s.first_current_at is not None:
            waits.append(max(0.0, s.first_current_at - s.tap_at))
        elif s.wanted_wh > 0:
            waits.append(max(0.0, session_stop(s, rec.duration_s) - s.tap_at))
    return waits


def jain_fairness(rec: Recording) -> float:
    """Jain's index (sum x)^2 / (n sum x^2) of `wanted_fraction` over the shortage's sessions.

    A session takes part when a tick with someone waiting falls in [tap_at, its stop): the
    shares of sessions that never met a shortage say nothing about how one was shared. With
    fewer than two such sessions there is nothing to compare and the index is 1.0; when all of
    them got nothing (all x zero, 0/0) they were treated alike, and it is 1.0 too.
    """
    if rec.ticks == 0:
        return 1.0
    shortage_before = np.concatenate(([0], np.cumsum(rec.waiting > 0)))
    shares = []
    for s in rec.sessions:
        first = int(np.searchsorted(rec.times, s.tap_at, side="left"))
        past = int(np.searchsorted(rec.times, session_stop(s, rec.duration_s), side="left"))
        if past > first and shortage_before[past] > shortage_before[first]:
            shares.append(s.wanted_fraction)
    x = np.asarray(shares, dtype=np.float64)
    squares = float((x * x).sum())
    if x.size < 2 or squares == 0.0:
        return 1.0
    return float(x.sum() ** 2 / (x.size * squares))


def energy_bound(rec: Recording) -> float:
    """Wh an ideal controller could deliver, pooled: per tick min(demand, capacity), EDF.

    Ticks are `rec.times` with `dt = tick_s`. At each tick the pot is `capacity_w * dt`; the
    sessions present (tap_at <= t < min(leave_at, duration_s)) with energy still wanted (they
    start at the lesser of `wanted_wh` and `alone_wh`: no controller gives a battery more
    than its own charger draws never switched off) each take up to `max_w * dt`, the
    earliest-leaving first, until the pot is empty. A session needing less than its `max_w`
    in a tick is charged what it needs.

    Only the present sessions are looked at: arrivals are taken in tap order, and the active
    set (kept in leave order) changes only when one arrives, leaves or is full.
    """
    dt = rec.tick_s
    order = sorted(
        (s for s in rec.sessions if s.wanted_wh > DONE_EPS_WH),
        key=lambda s: (s.tap_at, s.id),
    )
    arrive = [s.tap_at for s in order]
    deadline = [min(math.inf if s.leave_at is None else s.leave_at, rec.duration_s) for s in order]
    step_wh = [max(0.0, s.max_w) * dt * WH_PER_JOULE for s in order]

    active = _Active()
    next_arrival = 0
    total_wh = 0.0
    for t, capacity in zip(rec.times.tolist(), rec.capacity_w.tolist(), strict=True):
        changed = False
        while next_arrival < len(order) and arrive[next_arrival] <= t:
            i = next_arrival
            next_arrival += 1
            if deadline[i] > t:
                active.add(deadline[i], step_wh[i], min(order[i].wanted_wh, order[i].alone_wh))
                changed = True
        if active.drop_gone(t) or changed:
            active.sort()
        if active.size == 0:
            continue
        total_wh += active.serve(max(0.0, capacity) * dt * WH_PER_JOULE)
    return total_wh


class _Active:
    """The sessions present in `energy_bound`, as arrays kept in order of their leave time."""

    def __init__(self) -> None:
        self.deadline = np.empty(0)
        self.step_wh = np.empty(0)
        self.left_wh = np.empty(0)

    @property
    def size(self) -> int:
        return int(self.deadline.size)

    def add(self, deadline: float, step_wh: float, left_wh: float) -> None:
        self.deadline = np.append(self.deadline, deadline)
        self.step_wh = np.append(self.step_wh, step_wh)
        self.left_wh = np.append(self.left_wh, left_wh)

    def drop_gone(self, t: float) -> bool:
        """Drop the sessions that left by `t`; whether any did."""
        if self.size == 0 or self.deadline[0] > t:  # the first in order leaves first
            return False
        self._keep(self.deadline > t)
        return True

    def sort(self) -> None:
        """Earliest leave first; a stable sort keeps tap order among equal leave times."""
        order = np.argsort(self.deadline, kind="stable")
        self.deadline = self.deadline[order]
        self.step_wh = self.step_wh[order]
        self.left_wh = self.left_wh[order]

    def serve(self, pot_wh: float) -> float:
        """Hand out `pot_wh` in order, each up to its step and what it has left; the Wh given."""
        takes = np.minimum(self.step_wh, self.left_wh)
        running = takes.cumsum()
        wanted = float(running[-1])
        if wanted > pot_wh:  # short: what is left of the pot after those before, at least 0
            takes = np.minimum(takes, np.maximum(pot_wh - (running - takes), 0.0))
        self.left_wh = self.left_wh - takes
        if self.left_wh.min() <= DONE_EPS_WH:
            self._keep(self.left_wh > DONE_EPS_WH)
        return min(wanted, pot_wh)

    def _keep(self, keep: np.ndarray) -> None:
        self.deadline = self.deadline[keep]
        self.step_wh = self.step_wh[keep]
        self.left_wh = self.left_wh[keep]


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


# --- goals -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Goal:
    """One of chargectl's goals: a report field and the test it must pass.

    `met(value, rep, disturbances)`; a field that is None (undefined: no sessions, no shortage,
    nothing that could be served) meets its goal, as nothing happened that could miss it.
    """

    name: str
    field: str
    met: Callable[[float, dict[str, Any], int], bool]


def _tick_s(rep: dict[str, Any]) -> float:
    """The tick, from the report (`simulated_s / ticks`; 0 without ticks)."""
    return 0.0 if rep["ticks"] == 0 else float(rep["simulated_s"]) / rep["ticks"]


GOALS: tuple[Goal, ...] = (
    Goal("no trips", "trips", lambda v, rep, d: v == 0),
    Goal(
        "overload within a tick per disturbance",
        "overload_s",
        lambda v, rep, d: v <= _tick_s(rep) * d + 1e-9,
    ),
    Goal("served at least 95% of the bound", "served_ratio", lambda v, rep, d: v >= 0.95),
    Goal("fair sharing in shortage", "jain_fairness", lambda v, rep, d: v >= 0.9),
    Goal("few relay switches", "switches_per_session_p95", lambda v, rep, d: v <= 6),
    Goal("little idle capacity", "idle_capacity_while_waiting", lambda v, rep, d: v <= 0.08),
    Goal(
        "ledger within 1 Wh per session",
        "ledger_mismatch_wh",
        lambda v, rep, d: v <= 1.0 * rep["sessions"],
    ),
)


def goals(rep: dict[str, Any], disturbances: int) -> dict[str, bool]:
    """Each goal's name -> whether the report meets it.

    `disturbances` is the number of disturbances the scenario makes (faults, sudden unmanaged
    load): each may cost up to one tick of overload before the controller has seen it, so
    `overload_s` may reach `tick_s * disturbances` (tick_s read back as simulated_s / ticks).
    `served_ratio` is judged against 0.95 as it stands: where the bound itself is out of reach
    (a fault that cut a circuit), read the value, not the verdict.
    """
    result = {}
    for goal in GOALS:
        value = rep[goal.field]
        result[goal.name] = True if value is None else bool(goal.met(value, rep, disturbances))
    return result


# --- the compare table -------------------------------------------------------------------------


def table(reports: list[dict[str, Any]]) -> str:
    """Reports side by side: one row per field, one column per report (its policy on top)."""
    if not reports:
        return ""
    fields = list(reports[0])
    rows = [["", *(str(r["policy"]) for r in reports)]]
    rows += [[name, *(_brief(r.get(name)) for r in reports)] for name in fields if name != "policy"]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _brief(value: Any) -> str:
    """A value in a few characters: '-' for None, whole numbers plain, others to ~4 figures."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if abs(value) >= 1000 or value.is_integer():
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}"
    return str(value)
