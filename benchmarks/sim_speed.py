"""How much faster than real time the simulator's physics advance, without network I/O.

Prints one JSON line per shed: simulated seconds per wall second at the 0.1 s step, with every
relay closed and a mix of chargers plugged (the busiest steady state without a trip), meters
refreshing at their configured rate. Goal (issue 2): campus >= 2000x, i.e. <= 50 us per step.

    .venv/bin/python benchmarks/sim_speed.py [--seconds 600]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from chargectl.config.load import load_shed
from chargectl.sim.physics.chargers import PROFILE_NAMES
from chargectl.sim.world import World

EXAMPLES = Path(__file__).resolve().parents[1] / "deploy" / "examples"


def busy_world(name: str) -> World:
    w = World(load_shed(EXAMPLES / f"{name}.yaml"))
    for i, bay in enumerate(w.topo.socket_bays):
        # One socket in two has a charger: with three in four (and the lead-acid and no-PFC
        # profiles' real currents) the uncontrolled campus supply trips thermally within
        # minutes, and a dead shed is no measure of speed. A step costs the same either way.
        if i % 2 == 0:
            w.plug_charger(bay, PROFILE_NAMES[i % len(PROFILE_NAMES)], 0.2)
    # One port of every pile per step, as a controller staggers closes: 20 ports closed by one
    # write would add their chargers' inrush peaks and trip the row breakers magnetically.
    for port in range(max(pm.ports for pm, _ in w.piles)):
        for pm, _ in w.piles:
            if port < pm.ports:
                pm.write_holding(16 + port, [1])
        w.step(0.1)
    for wb in w.wallboxes.values():
        wb.model.write_holding(2, [100])
    w.advance(5.0)  # past the ramps
    return w


def measure(name: str, seconds: float) -> dict[str, object]:
    w = busy_world(name)
    step = 0.1
    n = round(seconds / step)
    t0 = time.perf_counter()
    for _ in range(n):
        w.step(step)
    wall = time.perf_counter() - t0
    return {
        "benchmark": "sim_speed",
        "shed": name,
        "sockets": w.topo.sockets,
        "step_s": step,
        "simulated_s": round(n * step, 1),
        "wall_s": round(wall, 4),
        "us_per_step": round(wall / n * 1e6, 2),
        "x_real_time": round(n * step / wall, 1),
        "trips": len(w.breakers.trips),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600.0, help="simulated seconds per shed")
    args = ap.parse_args()
    for name in ("small", "campus"):
        print(json.dumps(measure(name, args.seconds)), flush=True)


if __name__ == "__main__":
    main()
