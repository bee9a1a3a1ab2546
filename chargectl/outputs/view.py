"""The live terminal view of the demo and `chargectl status`: pure text from plain data."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

BAR = 30


def bar(value: float, limit: float, width: int = BAR) -> str:
    if limit <= 0:
        return " " * width
    filled = min(width, max(0, round(width * value / limit)))
    over = value > limit
    return ("!" if over else "#") * filled + "." * (width - filled)


def render_status(status: Mapping[str, Any], events: Sequence[str] = ()) -> str:
    """One screen from the daemon's status snapshot (see `Controller` / `StatusReporter`)."""
    lines = [
        f"shed {status.get('shed', '?')}   tick {status.get('tick', 0)}"
        f"   {status.get('tick_ms', 0.0):.1f} ms"
        + (
            f"   ALARM: {status['alarm']} at {status.get('alarm_at') or '?'}"
            if status.get("alarm")
            else ""
        )
        + "".join(
            f"   ALARM: {kind} at {pile}" for pile, kind in status.get("pile_alarms", {}).items()
        )
    ]
    lines.append("")
    lines.append(f"{'circuit':<10}{'ph':>3}  {'now A':>7} {'plan A':>7} {'limit':>6}  load/limit")
    for c in status.get("circuits", []):
        for k, phase in enumerate(c["phases"]):
            cur, plan, lim = c["current_a"][k], c["planned_a"][k], c["limit_a"][k]
            lines.append(
                f"{c['id'] if k == 0 else '':<10}{'L' + str(phase):>3}  {cur:7.1f} {plan:7.1f}"
                f" {lim:6.1f}  [{bar(cur, lim)}]"
            )
        lines.append(f"{'':<10}     breaker thermal {c['thermal_ratio']:.2f}")
        cap = c.get("cap")
        if cap:
            left = int(cap["left_s"])
            lines.append(
                f"{'':<10}     CAPPED from above at {cap['limit_a']:.1f} A for "
                f"{left // 60} min {left % 60:02d} s more"
            )
    counts = Counter(b["state"] for b in status.get("bays", []))
    lines.append("")
    lines.append(
        "bays: "
        + "  ".join(
            f"{s} {counts.get(s, 0)}"
            for s in ("charging", "waiting", "paused", "idle", "fault", "disabled")
        )
    )
    for b in status.get("bays", []):
        f = b.get("finding")
        if f:
            held = "  HELD OUT until staff clear it" if b["state"] == "fault" and f["held"] else ""
            lines.append(f"fire risk {b['id']}: {f['severity']} {f['kind']}: {f['seen']}{held}")
    down = [d for d, up in status.get("devices", {}).items() if not up]
    if down:
        lines.append("devices down: " + ", ".join(sorted(down)))
    if events:
        lines.append("")
        lines.append("events:")
        lines.extend(f"  {e}" for e in events)
    return "\n".join(lines)
