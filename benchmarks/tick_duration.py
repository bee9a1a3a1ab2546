"""Control tick duration on the campus shed (200 sockets, 2 wallboxes, 3 meters), printed as
JSON lines: `TickOutcome.duration_s` (poll every line, sessions, the kernel, the writes).

- tcp, simulator in its own process (`chargectl sim`), as on an edge box: the tick holds the
  daemon's work and the wire only;
- tcp, simulator in the daemon's process (its physics and serving share the event loop);

- rtu: one RS485 line per sub-circuit (main, row A, row B) at 19200 baud on ptys, the
  simulator pacing every byte at the line's speed, tick 1 s.

60 sockets charge (6 per pile) and both wallboxes have a car, so the ticks write relays,
setpoints, lamps and heartbeats like a busy evening. Goal over TCP: p99 <= 30 ms.

Run: .venv/bin/python benchmarks/tick_duration.py [--ticks 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chargectl.config.load import load_shed
from chargectl.runtime.daemon import Daemon, Options
from tests.integration.helpers import SimProcess, open_sessions
from tests.rig import add_cards, bay_card, bay_cards, running_shed, write_config

PILES = [f"pile-{r}{n}" for r in "ab" for n in range(1, 6)]
BAYS = [f"{p}/{k}" for p in PILES for k in range(1, 7)]


class Durations:
    def __init__(self, want: int = 0) -> None:
        self.seconds: list[float] = []
        self.want = want
        self.enough = asyncio.Event()

    def report(self, tick: Any) -> None:
        self.seconds.append(float(tick.duration_s))
        if self.want and len(self.seconds) >= self.want:
            self.enough.set()


async def run(transport: str, tick_s: float, ticks: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = write_config(
            Path(tmp),
            "campus",
            transport=transport,
            baudrate=19200,
            overrides={
                "control": {"tick_s": tick_s},
                "sim": {
                    "pace": transport == "rtu",
                    "chargers": [{"bay": b, "profile": "li48", "soc": 0.3} for b in BAYS],
                    "cars": [{"device": "wb-1"}, {"device": "wb-2", "max_a": 32}],
                },
            },
        )
        async with running_shed(cfg) as rig:
            await open_sessions(rig, [*BAYS, "wb-1", "wb-2"], within=30)
            d = Durations()
            rig.daemon.controller.reporters.append(d)
            await rig.wait_for(lambda: len(d.seconds) >= ticks, ticks * tick_s * 3 + 30)
            charging = sum(b["state"] == "charging" for b in rig.status()["bays"])
    s = np.array(d.seconds[:ticks]) * 1000.0
    out: dict[str, Any] = {
        "bench": "tick_duration",
        "shed": "campus",
        "transport": transport,
        "simulator": "same process",
        "tick_s": tick_s,
        "ticks": len(s),
        "bays_charging": charging,
        "p50_ms": round(float(np.percentile(s, 50)), 2),
        "p99_ms": round(float(np.percentile(s, 99)), 2),
        "max_ms": round(float(s.max()), 2),
    }
    if transport == "rtu":
        out["baud"] = 19200
    else:
        out["goal_p99_ms"] = 30.0
    return out


async def run_sim_apart(tick_s: float, ticks: int) -> dict[str, Any]:
    """TCP with `chargectl sim` in its own process: the tick then holds only the daemon's
    work and the wire, as on an edge box, not the simulator's physics and serving."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = write_config(
            Path(tmp),
            "campus",
            overrides={
                "control": {"tick_s": tick_s},
                "sim": {
                    "chargers": [{"bay": b, "profile": "li48", "soc": 0.3} for b in BAYS],
                    "cars": [{"device": "wb-1"}, {"device": "wb-2", "max_a": 32}],
                },
            },
        )
        shed = load_shed(cfg)
        add_cards(shed, bay_cards(shed))  # a card per bay: a card charges at one bay at a time
        sim = SimProcess(cfg, Path(tmp) / "sim.log")
        d = Durations(want=ticks)
        daemon = Daemon(shed, Options(extra_reporters=[d]))
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        try:
            waves: dict[str, list[str]] = {}
            for bay in [*BAYS, "wb-1", "wb-2"]:
                waves.setdefault(bay.split("/")[0], []).append(bay)
            while any(waves.values()):  # a pile holds only its latest tap: one per pile a wave
                for q in waves.values():
                    if q:
                        bay = q.pop(0)
                        await asyncio.to_thread(
                            sim.api, "/action", {"do": "tap", "bay": bay, "uid": bay_card(bay)}
                        )
                await asyncio.sleep(tick_s * 3)
            d.seconds.clear()
            d.enough.clear()
            await d.enough.wait()
            charging = sum(b["state"] == "charging" for b in daemon.status.latest["bays"])
        finally:
            stop.set()
            await task
            sim.stop()
    s = np.array(d.seconds[:ticks]) * 1000.0
    return {
        "bench": "tick_duration",
        "shed": "campus",
        "transport": "tcp",
        "simulator": "own process",
        "tick_s": tick_s,
        "ticks": len(s),
        "bays_charging": charging,
        "p50_ms": round(float(np.percentile(s, 50)), 2),
        "p99_ms": round(float(np.percentile(s, 99)), 2),
        "max_ms": round(float(s.max()), 2),
        "goal_p99_ms": 30.0,
    }


async def main(ticks: int) -> None:
    logging.getLogger("chargectl").setLevel(logging.ERROR)
    print(json.dumps(await run_sim_apart(0.25, ticks)), flush=True)
    print(json.dumps(await run("tcp", 0.25, ticks)), flush=True)
    try:
        print(json.dumps(await run("rtu", 1.0, max(30, ticks // 4))), flush=True)
    except AssertionError as exc:  # say so in the figures, rather than lose the lines above
        print(json.dumps({"bench": "tick_duration", "transport": "rtu", "error": str(exc)}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=200, help="ticks measured over TCP")
    args = parser.parse_args()
    asyncio.run(main(args.ticks))
