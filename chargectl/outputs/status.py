"""The status snapshot: each tick's outcome as plain JSON-able data (for the API and views)."""

from __future__ import annotations

from typing import Any

from chargectl.control.layout import Layout
from chargectl.firewatch.detectors import Finding, Severity


def snapshot(shed_name: str, layout: Layout, tick: int, outcome: Any) -> dict[str, Any]:
    d = outcome.decision
    obs = outcome.poll.observation
    circuits = []
    for c, cid in enumerate(layout.circuit_ids):
        phases = [p + 1 for p in range(3) if layout.circuit_phases[c, p]]
        idx = [p - 1 for p in phases]
        circuits.append(
            {
                "id": cid,
                "phases": phases,
                "current_a": [round(float(d.circuit_current_a[c, i]), 3) for i in idx],
                "planned_a": [round(float(d.planned_a[c, i]), 3) for i in idx],
                "limit_a": [round(float(d.limit_a[c, i]), 3) for i in idx],
                "unmanaged_a": [round(float(d.unmanaged_a[c, i]), 3) for i in idx],
                "binding": [bool(d.binding[c, i]) for i in idx],
                "thermal_ratio": round(float(d.thermal_ratio[c]), 4),
                "overloaded": bool(d.overloaded[c]),
                "cap": _cap(d, cid, outcome.now),  # set from above: limit_a is under it
            }
        )
    bays = [
        {
            "id": b.id,
            "state": d.bay_state[j],
            "current_a": round(float(obs.bay_current_a[j]), 3),
            "setpoint_a": round(float(d.setpoint_a[j]), 3),
            "on": bool(d.relay_on[j]),
            "welded": bool(d.welded[j]),
            "lamp": int(outcome.lamps.get(b.id, 0)),
            # The device's own active power, else current x voltage (None: neither read).
            "power_w": _power(outcome.poll, b.id),
            "session_wh": round(float(outcome.demand.credit[j]), 1),  # 0 without a session
        }
        for j, b in enumerate(layout.bays)
    ]
    return {
        "shed": shed_name,
        "tick": tick,
        "tick_ms": round(outcome.duration_s * 1000, 3),
        "wall": outcome.wall,
        "alarm": d.alarm,
        "alarm_at": d.alarm_at,
        "pile_alarms": dict(d.pile_alarms),
        "circuits": circuits,
        "bays": bays,
        "failsafe_mask": d.failsafe_mask,
    }


def finding_summary(f: Finding, wall: float) -> dict[str, Any]:
    """A bay's latest fire-risk finding for staff (the card is in the event, not here: the
    snapshot also feeds the residents' page's sampler)."""
    return {
        "kind": str(f.kind),
        "severity": str(f.severity),
        "session": f.session_id,
        "seen": f.seen,
        "wall": wall,
        "held": f.severity is Severity.CRITICAL,
    }


def _power(poll: Any, bay: str) -> float | None:
    w = poll.power_w.get(bay)
    if w is None:
        w = poll.va.get(bay)
    return None if w is None else round(float(w), 1)


def _cap(decision: Any, circuit: str, now: float) -> dict[str, float] | None:
    """The circuit's cap set from above (MQTT circuits/limit), or None."""
    cap = decision.external_caps.get(circuit)
    if cap is None:
        return None
    return {"limit_a": round(cap.limit_a, 3), "left_s": round(cap.left_s(now), 1)}
