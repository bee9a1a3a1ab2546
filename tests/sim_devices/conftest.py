"""A bus of simulated devices served over TCP or RTU-on-a-pty, with a pymodbus client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

from chargectl.runtime.clock import Clock
from chargectl.sim.devices.evse import EvseModel
from chargectl.sim.devices.meter import MeterModel
from chargectl.sim.devices.pile import PileModel
from chargectl.sim.server import BusServer

PILE, EVSE, SDM630, SDM120 = 1, 21, 10, 11
ABSENT = 99
CLIENT_TIMEOUT_S = 0.3


@dataclass
class Bench:
    transport: str
    server: BusServer
    client: AsyncModbusTcpClient | AsyncModbusSerialClient
    pile: PileModel
    evse: EvseModel
    sdm630: MeterModel
    sdm120: MeterModel
    endpoint: str  # "127.0.0.1:PORT" or the serial link path


def make_server(
    *, baudrate: int | None = None, pace: bool = False, clock: Clock | None = None
) -> tuple[BusServer, PileModel, EvseModel, MeterModel, MeterModel]:
    """A 12-port pile, a 16 A 3-phase wallbox, an SDM630 and an SDM120 on one bus."""
    pile, evse = PileModel(12), EvseModel(16.0, 3)
    m3, m1 = MeterModel("sdm630"), MeterModel("sdm120")
    units = {PILE: pile, EVSE: evse, SDM630: m3, SDM120: m1}
    server = BusServer(units, baudrate=baudrate, pace=pace, clock=clock)
    return server, pile, evse, m3, m1


async def start(transport: str, tmp_path: Path) -> Bench:
    server, pile, evse, m3, m1 = make_server()
    client: AsyncModbusTcpClient | AsyncModbusSerialClient
    if transport == "tcp":
        port = await server.serve_tcp("127.0.0.1", 0)
        endpoint = f"127.0.0.1:{port}"
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=CLIENT_TIMEOUT_S, retries=0)
    else:
        endpoint = str(tmp_path / "ttySIM0")
        await server.serve_rtu(endpoint)
        client = AsyncModbusSerialClient(
            endpoint, baudrate=19200, timeout=CLIENT_TIMEOUT_S, retries=0
        )
    assert await client.connect()
    return Bench(transport, server, client, pile, evse, m3, m1, endpoint)


@pytest.fixture(params=["tcp", "rtu"])
async def bench(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Bench]:
    b = await start(request.param, tmp_path)
    try:
        yield b
    finally:
        b.client.close()
        await b.server.close()


@pytest.fixture
async def tcp_bench(tmp_path: Path) -> AsyncIterator[Bench]:
    b = await start("tcp", tmp_path)
    try:
        yield b
    finally:
        b.client.close()
        await b.server.close()
