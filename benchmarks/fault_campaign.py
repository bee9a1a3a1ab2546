"""Fault campaigns (issue 8), printed as JSON lines: every fault kind alone (and with
--pairs every pair that a controller can be asked to survive) over Modbus against the
simulator, for --seeds seeds, three runs at a time. See tests/campaigns/campaign.py for the
shed, the fault table and how each run is judged.

One line per fault kind: runs it took part in, faults injected and cleared (disturbances),
trips, the worst time over a limit after one disturbance (`worst_over_s`, allowed: one tick
plus one meter refresh) and the worst excess in amps, the same for the fail-safe exposure,
the kills' worst fail-safe case against the limit, ledger mismatches, failed runs. Then one
line `"kind": "all"` over every run, and one line per failed run with its seed and problems.

Run: .venv/bin/python benchmarks/fault_campaign.py [--seeds 2] [--pairs] [--first-seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.campaigns.campaign import ALLOWED_S, KINDS, Result, pairs, run_many


def summary(kind: str, results: list[Result]) -> dict[str, Any]:
    return {
        "kind": kind,
        "runs": len(results),
        "faults": sum(len(r.disturbances) for r in results),
        "kills": sum(r.kills for r in results),
        "trips": sum(len(r.trips) for r in results),
        "worst_over_s": round(max((r.worst_over_s() for r in results), default=0.0), 2),
        "worst_excess_a": round(max((r.worst_excess_a() for r in results), default=0.0), 2),
        "worst_exposure_over_s": round(
            max((r.worst_over_s("exposure") for r in results), default=0.0), 2
        ),
        "worst_exposure_excess_a": round(
            max((r.worst_excess_a("exposure") for r in results), default=0.0), 2
        ),
        "failsafe_worst_ratio": round(max((r.failsafe_worst_ratio for r in results), default=0), 3),
        "peak_ratio": round(max((r.peak_ratio for r in results), default=0.0), 3),
        "sessions": sum(r.sessions for r in results),
        "ledger_mismatches": sum(len(r.ledger) for r in results),
        "failed_runs": sum(1 for r in results if r.problems()),
        "allowed_s": ALLOWED_S,
    }


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--pairs", action="store_true", help="every pair too, not only each alone")
    ap.add_argument("--at-once", type=int, default=3)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    plans: list[tuple[tuple[str, ...], int]] = [((k,), s) for s in seeds for k in KINDS]
    if args.pairs:
        plans += [(p, s) for s in seeds for p in pairs()]
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        results = await run_many(plans, Path(tmp), args.at_once)
    for kind in KINDS:
        print(json.dumps(summary(kind, [r for r in results if kind in r.kinds])))
    line = summary("all", results)
    line["wall_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(line))
    for r in results:
        if r.problems():
            print(json.dumps({"failed": list(r.kinds), "seed": r.seed, "problems": r.problems()}))


if __name__ == "__main__":
    asyncio.run(main())
