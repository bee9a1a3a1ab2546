"""The drivers over real Modbus against the simulator's bus server in another process.

Prints JSON lines:
- `pile_hot_read`: one 20-port pile's hot read (one request, 68 registers) over TCP: p50/p99
  latency and reads per second.
- `line_tick`: one line of the campus shed (5 piles of 20 sockets + an SDM630) polled in turn
  as a tick does (5 hot reads + 3 meter reads + 5 heartbeats), over TCP, and over RTU on a pty
  paced at 19200 baud: p50/p99 per tick.
- `line_tick_dead_unit`: the same TCP line with one pile silent: the first ticks pay its
  timeout, then it is only probed (backoff), so the steady tick is back to normal.
- `bus_overhead`: the bus's own cost per request (lock, clock-driven timeout, health) over the
  in-memory line, without any network.

    .venv/bin/python benchmarks/drivers_bus.py [--ticks 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from chargectl.config.schema import Device, RtuBus, TcpBus
from chargectl.drivers.bus import ModbusBus
from chargectl.drivers.errors import DeviceError
from chargectl.drivers.factory import Driver, make_driver
from chargectl.drivers.memory import MemoryClient
from chargectl.drivers.meter import MeterDriver
from chargectl.drivers.pile import PileDriver
from chargectl.runtime.clock import RealClock
from chargectl.sim.devices.meter import MeterModel
from chargectl.sim.devices.pile import PileModel
from chargectl.sim.server import BusServer

PILES = (1, 2, 3, 4, 5)
METER = 10
PORTS = 20


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def ms(x: float) -> float:
    return round(1000 * x, 3)


async def serve(transport: str, where: str, pace: bool, silent: int | None) -> None:
    """The child process: a simulated line, until stdin closes."""

    units: dict[int, PileModel | MeterModel] = {u: PileModel(PORTS) for u in PILES}
    units[METER] = MeterModel("sdm630")
    server = BusServer(dict(units), baudrate=19200 if pace else None, pace=pace)
    if silent is not None:
        server.faults[silent].silent = True
    if transport == "tcp":
        port = await server.serve_tcp("127.0.0.1", 0)
        print(port, flush=True)
    else:
        await server.serve_rtu(where)
        print(where, flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await server.close()


async def start_server(
    transport: str, where: str = "", pace: bool = False, silent: int | None = None
) -> tuple[asyncio.subprocess.Process, str]:
    args = [__file__, "--serve", transport, "--where", where or "-"]
    if pace:
        args.append("--pace")
    if silent is not None:
        args += ["--silent", str(silent)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    line = (await proc.stdout.readline()).decode().strip()
    return proc, line


async def stop(proc: asyncio.subprocess.Process) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    await proc.wait()


def make_line(config: TcpBus | RtuBus) -> tuple[ModbusBus, list[PileDriver], MeterDriver]:
    bus = ModbusBus(config, RealClock())
    drivers: list[Driver] = [
        make_driver(Device(f"pile-{u}", "pile", "line", u, "row", (1,), ports=PORTS), bus)
        for u in PILES
    ]
    piles = [d for d in drivers if isinstance(d, PileDriver)]
    meter = make_driver(Device("meter", "sdm630", "line", METER, None, (1, 2, 3)), bus)
    assert isinstance(meter, MeterDriver)
    return bus, piles, meter


async def tick(piles: list[PileDriver], meter: MeterDriver) -> None:
    """What a tick asks of one line: hot blocks, the meter, heartbeats (a dead unit: skipped)."""
    for p in piles:
        with contextlib.suppress(DeviceError):
            await p.read_hot()
    await meter.read()
    for p in piles:
        with contextlib.suppress(DeviceError):
            await p.heartbeat()


async def bench_hot_read(n: int) -> None:

    proc, port = await start_server("tcp")
    bus, piles, _meter = make_line(TcpBus("line", "127.0.0.1", int(port), timeout_s=1.0))
    pile = piles[0]
    await pile.read_hot()
    lat = []
    t0 = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        await pile.read_hot()
        lat.append(time.perf_counter() - t)
    wall = time.perf_counter() - t0
    print(json.dumps({
        "bench": "pile_hot_read", "transport": "tcp", "ports": PORTS, "reads": n,
        "p50_ms": ms(pct(lat, 0.5)), "p99_ms": ms(pct(lat, 0.99)),
        "reads_per_s": round(n / wall),
    }))  # fmt: skip
    await bus.close()
    await stop(proc)


async def bench_tick(transport: str, ticks: int, silent: int | None = None) -> None:

    with tempfile.TemporaryDirectory() as tmp:
        where = str(Path(tmp) / "ttyBENCH")
        proc, got = await start_server(transport, where, pace=transport == "rtu", silent=silent)
        config = (
            TcpBus("line", "127.0.0.1", int(got), timeout_s=0.5)
            if transport == "tcp"
            else RtuBus("line", where, baudrate=19200, timeout_s=0.5)
        )
        bus, piles, meter = make_line(config)
        durations = []
        for _ in range(ticks):
            t = time.perf_counter()
            await tick(piles, meter)
            durations.append(time.perf_counter() - t)
        steady = durations[len(durations) // 2 :]
        name = "line_tick" if silent is None else "line_tick_dead_unit"
        print(json.dumps({
            "bench": name, "transport": transport, "baud": 19200 if transport == "rtu" else None,
            "devices": f"{len(PILES)} piles x {PORTS} + sdm630", "ticks": ticks,
            "first_ticks_ms": [ms(d) for d in durations[:3]],
            "p50_ms": ms(statistics.median(steady)), "p99_ms": ms(pct(steady, 0.99)),
        }))  # fmt: skip
        await bus.close()
        await stop(proc)


async def bench_overhead(n: int) -> None:
    """Bus cost per request = (bus.read_input - the in-memory client alone), best of 5 rounds."""
    client = MemoryClient({1: PileModel(PORTS)})
    bus = ModbusBus(TcpBus("mem", "-", 0), RealClock(), client_factory=lambda: client)
    await bus.read_input(1, 0, 68)

    async def per_request(read: Callable[[], Awaitable[object]]) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            await read()
        return (time.perf_counter() - t0) / n

    rounds = [
        (
            await per_request(lambda: bus.read_input(1, 0, 68)),
            await per_request(lambda: client.read(4, 1, 0, 68)),
        )
        for _ in range(5)
    ]
    via_bus, direct = min(r[0] for r in rounds), min(r[1] for r in rounds)
    extra_us = round(1e6 * (via_bus - direct), 1)
    print(json.dumps({
        "bench": "bus_overhead", "requests": n, "us_per_request": extra_us,
        "us_in_memory_client": round(1e6 * direct, 1),
    }))  # fmt: skip


async def main(ticks: int) -> None:
    await bench_overhead(2000)
    await bench_hot_read(2000)
    await bench_tick("tcp", ticks)
    await bench_tick("tcp", ticks, silent=3)
    await bench_tick("rtu", max(20, ticks // 10))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--ticks", type=int, default=200)
    ap.add_argument("--serve")
    ap.add_argument("--where", default="-")
    ap.add_argument("--pace", action="store_true")
    ap.add_argument("--silent", type=int)
    a = ap.parse_args()
    if a.serve:
        asyncio.run(serve(a.serve, a.where, a.pace, a.silent))
    else:
        asyncio.run(main(a.ticks))
