"""Replay speed through the framed in-memory Modbus line (chargectl/replay/wire.py).

The real daemon and the simulated world in one process on a `VirtualClock`, every request
framed and unframed as on the wire, the world stepped every 0.1 s and the loop settled after
each step. Per shed and per transport one JSON line:

- `x_real_time`: simulated seconds per wall second of the run (after the daemon started);
- `codec_share`: the share of that wall time spent framing on the client's side (PDU and
  MBAP/RTU encoding, checking and decoding), `device_share` the time in the simulator's
  `BusServer.answer` (its request parsing, the model, the reply PDU), per `FrameStats`;
- transport `memory`: the same run over drivers/memory.py (models called directly, no
  frames), for what framing costs in speed.

Sessions: chargers plugged on `--sessions` bays of each shed and their cards tapped one bay
per pile at a time (a pile holds only its latest tap).

    .venv/bin/python benchmarks/replay_wire.py [--seconds 600] [--sessions 4] [--shed small]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chargectl.config.load import load_shed
from chargectl.drivers.bus import ClientFactory
from chargectl.drivers.memory import MemoryClient
from chargectl.replay.wire import FrameStats, advance, settle, wire_factories
from chargectl.runtime.clock import VirtualClock
from chargectl.runtime.daemon import Daemon, Options
from chargectl.sim.physics.chargers import PROFILE_NAMES
from chargectl.sim.runner import Simulator
from tests.rig import add_cards, bay_card, bay_cards, write_config


class Timed:
    """A server's `answer`, its time summed (no faults or pacing: it never suspends)."""

    def __init__(self, answer: Callable[[int, bytes], Awaitable[bytes | None]]) -> None:
        self.answer = answer
        self.seconds = 0.0

    async def __call__(self, unit: int, pdu: bytes) -> bytes | None:
        t0 = time.perf_counter()
        try:
            return await self.answer(unit, pdu)
        finally:
            self.seconds += time.perf_counter() - t0


def memory_factories(sim: Simulator) -> dict[str, ClientFactory]:
    out: dict[str, ClientFactory] = {}
    for bus in sim.shed.buses:
        server = sim.servers[bus.id]

        def make(server: Any = server) -> MemoryClient:
            return MemoryClient(server.units, answers=server.powered)

        out[bus.id] = make
    return out


async def run(example: str, transport: str, seconds: float, sessions: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        shed = load_shed(write_config(Path(tmp), example))
        add_cards(shed, bay_cards(shed))
        sim = Simulator(shed, virtual=True)
        clock = sim.clock
        assert isinstance(clock, VirtualClock)
        world = sim.world
        bays = list(world.topo.socket_bays)[:sessions]
        plugged = world.truth(bays=True)["bays"]
        for i, bay in enumerate(bays):
            if not plugged[bay]["plugged"]:
                world.plug_charger(bay, PROFILE_NAMES[i % len(PROFILE_NAMES)], 0.3)
        stats = FrameStats()
        timed = {b: Timed(s.answer) for b, s in sim.servers.items()}
        if transport == "wire":
            factories = wire_factories(shed, timed, stats)
        else:
            factories = memory_factories(sim)
        options = Options(
            clock=clock, client_factories=factories, serve_metrics=False, serve_api=False
        )
        daemon = Daemon(shed, options)
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop), name="daemon")
        while daemon.first_write_s is None:  # the kernel compiles in a thread, in real time
            if task.done():
                task.result()
            await settle()
            await asyncio.sleep(0.01)
        codec0, device0 = stats.codec_s, sum(t.seconds for t in timed.values())
        t0 = time.perf_counter()
        start = clock.now()
        queues: dict[str, list[str]] = {}
        for bay in bays:
            queues.setdefault(bay.split("/")[0], []).append(bay)
        while any(queues.values()):  # one tap per pile per second, as people queue
            for q in queues.values():
                if q:
                    world.tap(q[0], bytes.fromhex(bay_card(q.pop(0))))
            await advance(sim, 2.0)
        while clock.now() - start < seconds:
            await advance(sim, 1.0)
        wall = time.perf_counter() - t0
        simulated = clock.now() - start
        charging = sum(b["state"] == "charging" for b in daemon.status.latest.get("bays", []))
        stop.set()
        while not task.done():
            await settle()
            due = clock.next_deadline()
            if due is not None:
                clock.advance(max(0.0, due - clock.now()))
            else:
                await asyncio.sleep(0.001)
        task.result()
        device_s = sum(t.seconds for t in timed.values()) - device0
        return {
            "benchmark": "replay_wire",
            "shed": example,
            "transport": transport,
            "sockets": world.topo.sockets,
            "sessions": len(bays),
            "charging_at_end": charging,
            "trips": len(sim.trips),
            "simulated_s": round(simulated, 1),
            "wall_s": round(wall, 3),
            "x_real_time": round(simulated / wall, 1),
            "ticks": daemon.controller.ticks,
            "frames": stats.requests,
            "codec_share": round((stats.codec_s - codec0) / wall, 4) if stats.requests else None,
            "device_share": round(device_s / wall, 4) if stats.requests else None,
            "us_per_frame_codec": round((stats.codec_s - codec0) / stats.requests * 1e6, 2)
            if stats.requests
            else None,
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600.0, help="simulated seconds per run")
    ap.add_argument("--sessions", type=int, default=4, help="bays with a charger and a tap")
    ap.add_argument("--shed", action="append", help="example shed(s) (default: small)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    for example in args.shed or ["small"]:
        for transport in ("wire", "memory"):
            result = asyncio.run(run(example, transport, args.seconds, args.sessions))
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
