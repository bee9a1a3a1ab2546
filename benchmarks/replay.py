"""Replay speed: simulated seconds per wall second, and where the wall time goes.

For each scenario, one `chargectl replay` run (chargectl's policy) over a window of the
scenario's day (`--hours`, from the scenario's own start, default the whole day), timed in
parts:

- `kernel_share`: the allocation (numba kernel) inside the core's step;
- `physics_share`: the simulated world's steps (chargers, breakers, piles' models, meters);
- `frames_share`: framing on the controller's side of the in-memory Modbus line (encoding
  requests, checking and decoding replies), `devices_share` the simulator's answering of
  them (request parsing, the device model's registers, the reply);
- `sessions_share`: the session layer in the tick (taps, the bay machines, lamps, ledger
  records queued);
- `ledger_share`: the ledger writer's thread (SQLite), which runs beside the loop;
- `other_share`: the rest (the drivers' decoding, the core's estimate and plan around the
  kernel, asyncio, the runner's own truth keeping).

One JSON line per scenario:

    .venv/bin/python benchmarks/replay.py [--scenario evening-peak] [--hours 24]

The goal (issue 11): evening-peak, campus, 24 h, at 2,000x real time or more.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chargectl.replay.report import report
from chargectl.replay.runner import Replay
from chargectl.replay.scenario import load_scenario

SCENARIOS = Path(__file__).resolve().parent.parent / "sim" / "scenarios"


class Timer:
    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, fn: Any) -> Any:
        def timed(*args: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                self.seconds += time.perf_counter() - t0

        return timed

    def wrap_async(self, fn: Any) -> Any:
        async def timed(*args: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await fn(*args, **kw)
            finally:
                self.seconds += time.perf_counter() - t0

        return timed


class TimedReplay(Replay):
    """A replay whose parts are timed by wrapping them (the same code runs)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.kernel, self.physics, self.devices = Timer(), Timer(), Timer()
        self.sessions, self.ledger = Timer(), Timer()
        self.sim.advance = self.physics.wrap(self.sim.advance)  # type: ignore[method-assign]
        for server in self.sim.servers.values():
            server.answer = self.devices.wrap_async(server.answer)  # type: ignore[method-assign]
        # The factories were made with the unwrapped answers: make them again.
        from chargectl.replay.wire import simulator_factories

        self.factories = simulator_factories(self.sim, self.stats)

    async def _start_controller(self) -> None:
        await super()._start_controller()
        daemon = self.daemon
        assert daemon is not None
        core = daemon.controller.core
        core.allocate = self.kernel.wrap(core.allocate)
        link = daemon.controller.sessions
        for name in ("on_tap", "update", "demand", "lamps", "drain"):
            setattr(link, name, self.sessions.wrap(getattr(link, name)))
        writer = daemon.writer
        writer._write = self.ledger.wrap(writer._write)  # type: ignore[method-assign]


def run(name: str, hours: float | None) -> dict[str, Any]:
    scenario = load_scenario(SCENARIOS / f"{name}.yaml")
    if hours is not None:
        scenario = dataclasses.replace(scenario, duration_s=min(scenario.duration_s, hours * 3600))
    replay = TimedReplay(scenario)
    try:
        t0 = time.perf_counter()
        rec = asyncio.run(replay.run())
        wall = time.perf_counter() - t0
    finally:
        replay.close()
    rep = report(rec)
    parts = {
        "kernel_share": replay.kernel.seconds,
        "physics_share": replay.physics.seconds,
        "frames_share": replay.stats.codec_s,
        "devices_share": replay.devices.seconds,
        "sessions_share": replay.sessions.seconds,
    }
    out: dict[str, Any] = {
        "benchmark": "replay",
        "scenario": name,
        "bays": len(replay._bay_ids),
        "simulated_s": rep["simulated_s"],
        "wall_s": round(wall, 2),
        "x_real_time": round(rep["simulated_s"] / wall, 1),
        "ms_per_tick": round(wall / max(rep["ticks"], 1) * 1e3, 3),
        "sessions": rep["sessions"],
    }
    out.update({k: round(v / wall, 4) for k, v in parts.items()})
    out["other_share"] = round(1.0 - sum(parts.values()) / wall, 4)
    out["ledger_share"] = round(replay.ledger.seconds / wall, 4)
    out["goal_x_real_time"] = 2000 if name == "evening-peak" else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", action="append", help="a shipped scenario (default: both)")
    ap.add_argument("--hours", type=float, help="replay this much of the day (default: all)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    for name in args.scenario or ["evening-peak", "estate"]:
        print(json.dumps(run(name, args.hours)), flush=True)


if __name__ == "__main__":
    main()
