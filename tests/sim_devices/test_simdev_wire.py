"""The devices through a real pymodbus 3.16.1 client, over TCP and over RTU on a pty."""

from __future__ import annotations

import asyncio
import struct

import pytest
from pymodbus.exceptions import ModbusIOException

from chargectl.sim.server import UnitFaults
from tests.sim_devices.conftest import ABSENT, EVSE, PILE, SDM120, SDM630, Bench
from tests.sim_devices.simdev_helpers import run_pile

pytestmark = pytest.mark.timeout(30)


async def read_in(bench: Bench, addr: int, count: int, unit: int = PILE) -> list[int]:
    rr = await bench.client.read_input_registers(addr, count=count, device_id=unit)
    assert not rr.isError(), f"unit {unit} input {addr}+{count}: {rr}"
    return list(rr.registers)


async def read_hold(bench: Bench, addr: int, count: int, unit: int = PILE) -> list[int]:
    rr = await bench.client.read_holding_registers(addr, count=count, device_id=unit)
    assert not rr.isError(), f"unit {unit} holding {addr}+{count}: {rr}"
    return list(rr.registers)


async def exception_of(bench: Bench, fc: int, addr: int, arg: int | list[int], unit: int) -> int:
    c = bench.client
    if fc == 4:
        assert isinstance(arg, int)
        rr = await c.read_input_registers(addr, count=arg, device_id=unit)
    elif fc == 3:
        assert isinstance(arg, int)
        rr = await c.read_holding_registers(addr, count=arg, device_id=unit)
    elif fc == 6:
        assert isinstance(arg, int)
        rr = await c.write_register(addr, arg, device_id=unit)
    else:
        assert isinstance(arg, list)
        rr = await c.write_registers(addr, arg, device_id=unit)
    assert rr.isError(), f"expected an exception, got {rr}"
    return int(rr.exception_code)


async def test_pile_hot_block_and_relays(bench: Bench) -> None:
    pile = bench.pile
    rr = await bench.client.write_registers(16, [1, 0, 1], device_id=PILE)
    assert not rr.isError()
    run_pile(pile, 0.0, 0.5, amps=2.5, watts=500.0, supply_v=222.0, cabinet_c=31.0)
    block = await read_in(bench, 0, 80)
    assert block[0:6] == [0x4350, 1, 12, 0, 310, 2220]
    assert block[13] == 500  # two closed ports at 2.5 A = 5.00 A
    assert block[16:20] == [2500, 0, 2500, 0]
    assert block[48:52] == [0b11, 0, 0b11, 0]
    assert await read_hold(bench, 16, 4) == [1, 0, 1, 0]
    rr = await bench.client.write_register(17, 1, device_id=PILE)
    assert not rr.isError()
    assert pile.contact_closed()[:4].tolist() == [True, True, True, False]
    assert pile.writes.records()[-1].values == (1,)


async def test_exceptions_02_and_03(bench: Bench) -> None:
    assert await exception_of(bench, 4, 80, 1, PILE) == 2
    assert await exception_of(bench, 4, 100 + 24, 2, PILE) == 2
    assert await exception_of(bench, 3, 6, 1, PILE) == 2
    assert await exception_of(bench, 6, 16 + 12, 1, PILE) == 2
    assert await exception_of(bench, 6, 16, 2, PILE) == 3
    assert await exception_of(bench, 16, 16, [1, 1, 5], PILE) == 3
    assert await read_hold(bench, 16, 3) == [0, 0, 0]  # nothing of the rejected write applied
    assert await exception_of(bench, 6, 2, 60 - 1, EVSE) == 3
    assert await exception_of(bench, 4, 21, 1, EVSE) == 2
    assert await exception_of(bench, 3, 0, 2, SDM630) == 2
    assert await exception_of(bench, 4, 2, 2, SDM120) == 2


async def test_failsafe_over_the_wire(bench: Bench) -> None:
    c = bench.client
    assert not (await c.write_registers(0, [2, 0, 0, 0b10], device_id=PILE)).isError()
    assert not (await c.write_registers(16, [1] * 12, device_id=PILE)).isError()
    t = run_pile(bench.pile, 0.0, 1.0)
    assert (await read_in(bench, 3, 1))[0] & 1 == 0
    assert (await read_in(bench, 12, 1))[0] == 1
    t = run_pile(bench.pile, t, 1.0)
    assert (await read_in(bench, 3, 1))[0] & 1 == 1
    assert await read_hold(bench, 16, 3) == [0, 1, 0]
    assert not (await c.write_register(1, 1, device_id=PILE)).isError()
    assert (await read_in(bench, 3, 1))[0] & 1 == 0
    assert await read_hold(bench, 16, 3) == [0, 1, 0]


async def test_pile_fault_reset_over_the_wire(bench: Bench) -> None:
    bench.pile.set_short(5)
    assert (await read_in(bench, 48 + 4, 1))[0] >> 8 == 4
    assert not (await bench.client.write_register(5, 5, device_id=PILE)).isError()
    assert (await read_in(bench, 48 + 4, 1))[0] >> 8 == 0
    assert await read_hold(bench, 5, 1) == [0]


async def test_taps_over_the_wire(bench: Bench) -> None:
    bench.pile.tap(7, bytes.fromhex("deadbeef"))
    assert await read_in(bench, 6, 6) == [1, 0x0407, 0, 0, 0xDEAD, 0xBEEF]
    bench.evse.tap(bytes.fromhex("04010203040506"))
    assert await read_in(bench, 14, 6, EVSE) == [1, 0x0701, 0x0004, 0x0102, 0x0304, 0x0506]


async def test_evse_and_meters_over_the_wire(bench: Bench) -> None:
    c = bench.client
    assert not (await c.write_registers(2, [100, 60], device_id=EVSE)).isError()
    assert bench.evse.offered_a() == 10.0
    regs = await read_in(bench, 0, 21, EVSE)
    assert regs[0:2] == [0x4556, 1] and regs[12:14] == [3, 160]
    bench.sdm630.update([230.0, 231.0, 232.0], [1.0, 2.0, 3.0], [230.0, 462.0, 696.0], 50.0, 42.0)
    words = await read_in(bench, 52, 2, SDM630)
    assert struct.unpack(">f", struct.pack(">2H", *words))[0] == 1388.0
    bench.sdm120.update([229.5], [0.25], [57.0], 50.0, 3.5)
    words = await read_in(bench, 70, 4, SDM120)
    assert struct.unpack(">2f", struct.pack(">4H", *words)) == (50.0, 3.5)


async def test_absent_unit_times_out_and_the_line_goes_on(bench: Bench) -> None:
    with pytest.raises(ModbusIOException):
        await bench.client.read_input_registers(0, count=1, device_id=ABSENT)
    assert await read_in(bench, 0, 1) == [0x4350]
    assert bench.server.requests[ABSENT] == 1 and bench.server.answered[ABSENT] == 0


async def test_unpowered_unit_does_not_answer(bench: Bench) -> None:
    bench.server.powered = lambda unit: unit != PILE
    with pytest.raises(ModbusIOException):
        await bench.client.read_input_registers(0, count=1, device_id=PILE)
    assert await read_in(bench, 0, 1, EVSE) == [0x4556]
    bench.server.powered = lambda unit: True
    assert await read_in(bench, 0, 1) == [0x4350]


async def test_silent_fault(bench: Bench) -> None:
    bench.server.faults[SDM630].silent = True
    with pytest.raises(ModbusIOException):
        await bench.client.read_input_registers(0, count=2, device_id=SDM630)
    bench.server.faults[SDM630].silent = False
    assert len(await read_in(bench, 0, 2, SDM630)) == 2


async def test_exception_fault_applies_nothing(bench: Bench) -> None:
    bench.server.faults[PILE] = UnitFaults(exception=6)
    assert await exception_of(bench, 6, 16, 1, PILE) == 6
    assert await exception_of(bench, 4, 0, 1, PILE) == 6
    assert not bench.pile.contact_closed()[0]
    bench.server.faults[PILE] = UnitFaults()
    assert await read_in(bench, 0, 1) == [0x4350]


async def test_delay_fault_answers_late(bench: Bench) -> None:
    loop = asyncio.get_running_loop()
    bench.server.faults[PILE].delay_s = 0.15  # late, within the client's 0.3 s timeout
    start = loop.time()
    assert await read_in(bench, 0, 1) == [0x4350]
    assert loop.time() - start >= 0.15
    bench.server.faults[PILE].delay_s = 0.5  # beyond it
    with pytest.raises(ModbusIOException):
        await bench.client.read_input_registers(0, count=1, device_id=PILE)
    # The line stays busy until the late answer has gone out (one request at a time).
    await asyncio.sleep(0.4)
    assert await read_in(bench, 0, 1, EVSE) == [0x4556]


async def test_garbage_fault_replaces_an_input_register(bench: Bench) -> None:
    bench.server.faults[PILE].garbage = {13: 0xFFFF, 16: 54321}
    block = await read_in(bench, 0, 20)
    assert block[0] == 0x4350 and block[13] == 0xFFFF and block[16] == 54321
    assert await read_in(bench, 14, 2) == [0, 0]  # only the listed addresses
