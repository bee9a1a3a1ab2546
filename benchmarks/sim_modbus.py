"""The simulator's device models and Modbus server, printed as JSON lines.

- device_step: one 0.1 s step of the campus devices (10 piles x 20 ports, 2 wallboxes) as the
  world calls them (contact_closed + step), without physics: the devices' share of the
  50 us-per-step budget;
- tcp_read / rtu_read: pymodbus client round trips of a pile's 80-register hot block against
  the server on loopback TCP and on a pty (unpaced), requests per second;
- paced_read: the same read on a paced 9600 baud line, measured against the wire time.

Run: .venv/bin/python benchmarks/sim_modbus.py
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

from chargectl.sim.devices.evse import EvseModel
from chargectl.sim.devices.pile import PileModel
from chargectl.sim.modbus_frame import wire_seconds
from chargectl.sim.server import BusServer

STEPS = 20000
READS = 500


def device_step() -> dict[str, object]:
    piles = [PileModel(20) for _ in range(10)]
    evses = [EvseModel(16.0, 3) for _ in range(2)]
    for p in piles:
        p.write_holding(16, [1] * 20)
    amps, watts, temp = np.full(20, 1.5), np.full(20, 330.0), np.full(20, 30.0)
    car = np.array([15.9, 15.9, 15.9])
    t, dt = 0.0, 0.1
    for _ in range(100):  # compile and warm up
        t += dt
        for p in piles:
            p.step(t, dt, amps, watts, temp, 220.0, 25.0)
    # The currents are fixed arrays: what is timed is the devices' own work, not the physics.
    start = time.perf_counter()
    for _ in range(STEPS):
        t += dt
        for p in piles:
            p.contact_closed()
            p.step(t, dt, amps, watts, temp, 220.0, 25.0)
        for e in evses:
            e.offered_a()
            e.step(t, dt, 2, car, 10500.0, 30.0)
    per_step = (time.perf_counter() - start) / STEPS
    return {
        "bench": "device_step",
        "devices": "10 piles x 20 ports + 2 wallboxes",
        "us_per_step": round(per_step * 1e6, 2),
        "x_real_time_devices_only": round(dt / per_step),
    }


async def client_reads(client: AsyncModbusTcpClient | AsyncModbusSerialClient, n: int) -> float:
    assert await client.connect()
    rr = await client.read_input_registers(0, count=80, device_id=1)
    assert not rr.isError()
    start = time.perf_counter()
    for _ in range(n):
        await client.read_input_registers(0, count=80, device_id=1)
    elapsed = time.perf_counter() - start
    client.close()
    return elapsed


async def wire() -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    server = BusServer({1: PileModel(20)})
    port = await server.serve_tcp("127.0.0.1", 0)
    elapsed = await client_reads(AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2), READS)
    out.append({"bench": "tcp_read", "registers": 80, "reads_per_s": round(READS / elapsed)})
    with tempfile.TemporaryDirectory() as tmp:
        link = str(Path(tmp) / "tty")
        await server.serve_rtu(link)
        client = AsyncModbusSerialClient(link, baudrate=115200, timeout=2)
        elapsed = await client_reads(client, READS)
        out.append({"bench": "rtu_read", "registers": 80, "reads_per_s": round(READS / elapsed)})
        await server.close()

    paced = BusServer({1: PileModel(20)}, baudrate=9600, pace=True)
    port = await paced.serve_tcp("127.0.0.1", 0)
    n = 10
    elapsed = await client_reads(AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2), n)
    expected = wire_seconds(8, 9600) + wire_seconds(165, 9600)
    out.append(
        {
            "bench": "paced_read",
            "baud": 9600,
            "registers": 80,
            "ms_per_read": round(elapsed / n * 1e3, 1),
            "wire_ms": round(expected * 1e3, 1),
        }
    )
    await paced.close()
    return out


def main() -> None:
    print(json.dumps(device_step()))
    for line in asyncio.run(wire()):
        print(json.dumps(line))


if __name__ == "__main__":
    main()
