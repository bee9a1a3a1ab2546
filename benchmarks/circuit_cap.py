"""A cap from above (`circuits/limit`), end to end, printed as JSON lines: from the command to
the simulator's true current under the cap for good, and from the cap's end to the load back.

The small shed (30 A limit, 12 sockets with li72 chargers, all in sessions) runs with the
simulator and the daemon in this process, over Modbus TCP on loopback. At a random instant the
supply is capped at half its present true current for `--ttl` seconds, through the daemon's
own command table (what MQTT and the API call; the broker's round trip is not in it). The true
current is read inside every 0.1 s world step, less the inrush of sockets in their first step.
`reaction`: command to the first step after which every step stays under the cap until it
ends; `return`: the cap's end to the first step above it again. One line per tick length.

Run: .venv/bin/python benchmarks/circuit_cap.py [--caps 10] [--ttl 4] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chargectl.runtime.daemon import Options
from tests.integration.helpers import open_sessions, trace_truth
from tests.rig import running_shed, write_config

BAYS = [f"pile-a/{p}" for p in range(1, 13)]


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


async def one_config(tick_s: float, caps: int, ttl_s: float, rng: random.Random) -> dict:
    reactions: list[float] = []
    returns: list[float] = []
    worst_over = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        cfg = write_config(
            Path(tmp),
            "small",
            overrides={
                "control": {"tick_s": tick_s, "min_off_s": 1.0},
                "sim": {"chargers": [{"bay": b, "profile": "li72", "soc": 0.2} for b in BAYS]},
            },
        )
        async with running_shed(cfg, options=Options(serve_metrics=False, serve_api=False)) as rig:
            command = rig.daemon.commands()["circuits/limit"]
            await open_sessions(rig, BAYS, within=20)
            await asyncio.sleep(5.0)
            for _ in range(caps):
                await asyncio.sleep(rng.uniform(0.0, 1.0))
                load = rig.truth()["circuits"]["main"]["amps"][0]
                cap = round(load / 2, 1)
                with trace_truth(rig) as trace:
                    t0 = rig.sim.world.now
                    code, _ = await command({"circuit": "main", "limit_a": cap, "ttl_s": ttl_s})
                    assert code == 200
                    await asyncio.sleep(ttl_s + 0.2)
                    t_end = t0 + ttl_s
                    back = None
                    for _ in range(200):  # up to 20 s for the load to come back
                        t, amps = trace.circuit_without_inrush("main", t_end)
                        above = np.flatnonzero(amps[:, 0] > cap + 0.5)
                        if len(above):
                            back = float(t[above[0]] - t_end)
                            break
                        await asyncio.sleep(0.1)
                t, amps = trace.circuit_without_inrush("main", t0)
                during = t < t_end
                over = np.flatnonzero(amps[during, 0] > cap)
                last = int(over[-1]) if len(over) else -1
                settled = t[during][last + 1] if last + 1 < during.sum() else t_end
                reactions.append(float(settled - t0))
                if back is not None:
                    returns.append(back)
                late = amps[during & (t >= t0 + tick_s + 0.5), 0]
                if len(late):
                    worst_over = max(worst_over, float(late.max()) - cap)
                await asyncio.sleep(3.0)  # the shed refills before the next cap
            trips = len(rig.truth()["trips"])
    return {
        "bench": "circuit_cap",
        "transport": "tcp",
        "tick_s": tick_s,
        "caps": caps,
        "ttl_s": ttl_s,
        "reaction_p50_s": pct(reactions, 50),
        "reaction_max_s": pct(reactions, 100),
        "worst_over_cap_after_tick_plus_0_5_s_a": round(worst_over, 3),
        "return_p50_s": pct(returns, 50),
        "return_max_s": pct(returns, 100),
        "returned": len(returns),
        "breaker_trips": trips,
    }


async def main(caps: int, ttl_s: float, seed: int) -> None:
    logging.getLogger("chargectl").setLevel(logging.ERROR)
    rng = random.Random(seed)
    for tick_s in (1.0, 0.25):
        print(json.dumps(await one_config(tick_s, caps, ttl_s, rng)), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--caps", type=int, default=10, help="caps per tick length")
    parser.add_argument("--ttl", type=float, default=4.0, help="each cap's ttl_s")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(main(args.caps, args.ttl, args.seed))
