"""The simulated shed's physical truth as plain JSON-able data (the control API's /truth)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from chargectl.sim.physics.chargers import PROFILE_NAMES, STAGE_NAMES

if TYPE_CHECKING:
    from chargectl.sim.world import World
    from chargectl.sim.world_actions import Wallbox


def world_truth(w: World, bays: bool = True) -> dict[str, Any]:
    topo = w.topo
    ratio = w.breakers.ratio()
    ttt = w.breakers.seconds_to_trip(w.circuit_amps)
    circuits: dict[str, Any] = {}
    for i, cid in enumerate(topo.circuit_ids):
        c = topo.circuits[i]
        phs = topo.circuit_phases[i]
        circuits[cid] = {
            "phases": list(phs),
            "limit_a": c.limit_a,
            "powered": bool(w.circuit_fed[i]),
            "amps": [round(float(w.circuit_amps[i, p - 1]), 3) for p in phs],
            "watts": [round(float(w.circuit_watts[i, p - 1]), 1) for p in phs],
            "unmanaged_a": [round(float(w.unmanaged_a[i, p - 1]), 3) for p in phs],
            "energy_wh": round(float(w.energy_ws[i].sum() / 3600.0), 3),
            "max_inrush_a": [round(float(w.max_inrush_a[i, p - 1]), 1) for p in phs],
            "breaker": {
                "rating_a": c.breaker.rating_a,
                "curve": c.breaker.curve,
                "closed": bool(w.breakers.closed[i]),
                "thermal_ratio": [round(float(ratio[i, p - 1]), 4) for p in phs],
                "seconds_to_trip": [_finite(ttt[i, p - 1]) for p in phs],
            },
        }
    out: dict[str, Any] = {
        "time": round(w.now, 6),
        "supply_v": w.volts,
        "circuits": circuits,
        "trips": [t.as_dict() for t in w.breakers.trips],
        "wallboxes": {wid: wallbox_truth(w, wb) for wid, wb in w.wallboxes.items()},
        "bays_charging": int((w.chargers.watts > 1.0).sum()),
    }
    if bays:
        out["bays"] = {b: bay_truth(w, i) for i, b in enumerate(topo.socket_bays)}
    return out


def bay_truth(w: World, i: int) -> dict[str, Any]:
    """One socket (index `i` of the shed-wide arrays)."""
    ch = w.chargers
    p = int(ch.profile_idx[i])
    return {
        "closed": bool(w.closed[i]),
        "energized": bool(w.closed[i] and w.socket_fed[i] and w.volts > 0),
        "amps": round(float(ch.amps[i]), 4),
        "watts": round(float(ch.watts[i]), 2),
        "temp_c": round(float(w.thermal.temp_c[i]), 2),
        "plugged": bool(ch.plugged[i]),
        "profile": PROFILE_NAMES[p] if p >= 0 else None,
        "soc": round(float(ch.soc[i]), 5) if ch.plugged[i] else None,
        "stage": STAGE_NAMES[int(ch.stage[i])],
        "power_factor": round(1.0 / float(ch.inv_pf[i]), 3) if ch.plugged[i] else None,
        "appliance_w": float(ch.appliance_w[i]),
    }


def wallbox_truth(w: World, wb: Wallbox) -> dict[str, Any]:
    car = wb.car
    return {
        "powered": bool(w.circuit_fed[wb.circuit]),
        "offered_a": float(wb.model.offered_a()),
        "amps": [round(float(a), 3) for a in wb.amps3],
        "car": None
        if car is None
        else {
            "max_a": car.max_a,
            "phases": car.phases,
            "soc": round(car.soc, 5),
            "capacity_kwh": car.capacity_kwh,
        },
    }


def _finite(x: float) -> float | None:
    return None if not np.isfinite(x) else round(float(x), 2)
