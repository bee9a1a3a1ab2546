"""Where a replay's served gap and unfairness come from, recomputed from its trace.

`served_ratio` is delivered energy over the energy bound (chargectl/replay/report.py); this
splits the gap between them by who lost it (cars or sockets' bikes, and how their sessions
ended), names the sessions that lost most, and gives two figures the report cannot:

- `bound_kwh_emergency_stops`: the bound with every session the shed alarm ended (`emergency`,
  a rule of the sessions: smoke or an emergency stop ends every session) stopping there, as
  the controller must; `served_emergency_stops` is delivered energy over it;
- `jain_without_emergency`: Jain's index over the shortage's sessions other than those.

A session's own bound is what it wanted, capped by what its charger draws alone over its stay
(`alone_wh`) and for a car by its most power over its stay; its gap is that less what it got.

    .venv/bin/chargectl replay sim/scenarios/evening-peak.yaml --trace /tmp/t
    .venv/bin/python benchmarks/replay_gap.py /tmp/t [--top 5]

One JSON line per group (`"group"`), one per top session (`"session"`), one summary line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chargectl.replay import report as R
from chargectl.replay.recording import Recording, SessionRecord
from chargectl.replay.trace import read_trace


def stay_s(s: SessionRecord, duration_s: float) -> float:
    """From the tap to its owner's leave (or the replay's end)."""
    return max(0.0, min(math.inf if s.leave_at is None else s.leave_at, duration_s) - s.tap_at)


def own_bound_wh(s: SessionRecord, duration_s: float) -> float:
    return min(s.wanted_wh, s.alone_wh, s.max_w * stay_s(s, duration_s) / 3600.0)


def in_shortage(rec: Recording) -> list[SessionRecord]:
    """The sessions `jain_fairness` looks at (a tick with someone waiting in their stay)."""
    before = np.concatenate(([0], np.cumsum(rec.waiting > 0)))
    out = []
    for s in rec.sessions:
        first = int(np.searchsorted(rec.times, s.tap_at, side="left"))
        past = int(np.searchsorted(rec.times, R.session_stop(s, rec.duration_s), side="left"))
        if past > first and before[past] > before[first]:
            out.append(s)
    return out


def jain(x: list[float]) -> float:
    a = np.asarray(x, dtype=np.float64)
    squares = float((a * a).sum())
    return 1.0 if a.size < 2 or squares == 0.0 else float(a.sum() ** 2 / (a.size * squares))


def analyse(rec: Recording, top: int) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    gaps = []
    for s in rec.sessions:
        bound = own_bound_wh(s, rec.duration_s)
        gap = max(0.0, bound - s.delivered_wh)
        g = groups[("car" if s.car else "socket", s.end_reason or "open")]
        g[0] += 1
        g[1] += bound
        g[2] += gap
        gaps.append((gap, s, bound))
    lines: list[dict[str, Any]] = [
        {
            "group": f"{kind} {reason}",
            "sessions": int(v[0]),
            "bound_kwh": round(v[1] / 1000, 2),
            "gap_kwh": round(v[2] / 1000, 2),
        }
        for (kind, reason), v in sorted(groups.items(), key=lambda kv: -kv[1][2])
    ]
    gaps.sort(key=lambda g: -g[0])
    lines += [
        {
            "session": s.id,
            "bay": s.bay,
            "car": s.car,
            "tap_h": round(s.tap_at / 3600, 2),
            "stay_h": round(stay_s(s, rec.duration_s) / 3600, 2),
            "end": s.end_reason,
            "bound_wh": round(bound),
            "delivered_wh": round(s.delivered_wh),
            "switches": s.switches,
        }
        for _gap, s, bound in gaps[:top]
    ]
    delivered = sum(s.delivered_wh for s in rec.sessions)
    stopped = dataclasses.replace(
        rec,
        sessions=list(
            dataclasses.replace(s, leave_at=s.end_at) if s.end_reason == "emergency" else s
            for s in rec.sessions
        ),
    )
    bound_stopped = R.energy_bound(stopped)
    short = in_shortage(rec)
    lines.append(
        {
            "summary": rec.scenario,
            "delivered_kwh": round(delivered / 1000, 2),
            "bound_kwh": round(R.energy_bound(rec) / 1000, 2),
            "bound_kwh_emergency_stops": round(bound_stopped / 1000, 2),
            "served_emergency_stops": round(delivered / bound_stopped, 4)
            if bound_stopped
            else None,
            "jain": round(jain([s.wanted_fraction for s in short]), 4),
            "jain_without_emergency": round(
                jain([s.wanted_fraction for s in short if s.end_reason != "emergency"]), 4
            ),
            "shortage_sessions": len(short),
            "shortage_emergency": sum(1 for s in short if s.end_reason == "emergency"),
        }
    )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace", type=Path, help="a directory written by `chargectl replay --trace`")
    ap.add_argument("--top", type=int, default=5, help="sessions that lost most (default 5)")
    args = ap.parse_args()
    for line in analyse(read_trace(args.trace), args.top):
        print(json.dumps(line))


if __name__ == "__main__":
    main()
