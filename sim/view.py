"""A compact live view of the simulated shed, one screen, from the world's truth.

campus  t=00:12:31  x1.0  trips: 0
circuit  limit  L1     L2     L3     breaker  theta/k2  state
main     63.0   21.4   18.0   19.9   63C      0.11      closed
row-a    40.0   12.2    9.6    8.8   40C      0.09      closed
bays: 37 charging, 3 plugged waiting; wallboxes: wb-1 16.0 A, wb-2 -
"""

from __future__ import annotations

from typing import Any


def hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def render(truth: dict[str, Any], *, name: str = "", speed: float = 1.0) -> str:
    circuits = truth["circuits"]
    width = max([len("circuit"), *(len(c) for c in circuits)])
    lines = [
        f"{name}  t={hms(truth['time'])}  x{speed:g}  supply {truth['supply_v']:.0f} V"
        f"  trips: {len(truth['trips'])}",
        f"{'circuit':<{width}}  limit {'L1':>6}  {'L2':>6}  {'L3':>6}   breaker  theta/k2  state",
    ]
    for cid, c in circuits.items():
        per = {p: a for p, a in zip(c["phases"], c["amps"], strict=True)}
        cells = "".join(
            f"{per[p]:7.1f}{'!' if per[p] > c['limit_a'] else ' '}" if p in per else "      - "
            for p in (1, 2, 3)
        )
        b = c["breaker"]
        ratio = max(b["thermal_ratio"]) if b["thermal_ratio"] else 0.0
        state = "closed" if b["closed"] else "TRIPPED"
        lines.append(
            f"{cid:<{width}}  {c['limit_a']:5.1f}{cells}  {b['rating_a']:5.0f}{b['curve']}"
            f"    {ratio:6.2f}    {state}"
        )
    bays = truth.get("bays", {})
    plugged = sum(1 for b in bays.values() if b["plugged"])
    boxes = ", ".join(
        f"{wid} {max(wb['amps']):.1f} A" if wb["car"] else f"{wid} -"
        for wid, wb in truth["wallboxes"].items()
    )
    lines.append(
        f"bays: {truth['bays_charging']} drawing, {plugged} plugged"
        + (f"; wallboxes: {boxes}" if boxes else "")
    )
    for t in truth["trips"][-3:]:
        lines.append(
            f"TRIP {t['circuit']} {t['cause']} at {hms(t['time'])}, L{t['phase']} "
            f"{t['current_a']:.1f} A"
        )
    return "\n".join(lines)
