"""Protocol faults a controller must survive: a device that refuses writes to some registers
(exception 04) while it still reads, and a device that answers late. Virtual time: no sleeps."""

from __future__ import annotations

import asyncio
import struct

import pytest

from chargectl.runtime.clock import VirtualClock
from chargectl.sim.actions import ActionError, apply
from chargectl.sim.modbus_frame import exception_pdu
from chargectl.sim.runner import Simulator
from tests.sim_devices.conftest import PILE, Bench, make_server
from tests.sim_physics.sheds import small_shed

pytestmark = pytest.mark.timeout(30)


def write_multiple(addr: int, values: list[int]) -> bytes:
    n = len(values)
    return struct.pack(f">BHHB{n}H", 0x10, addr, n, 2 * n, *values)


def write_single(addr: int, value: int) -> bytes:
    return struct.pack(">BHH", 0x06, addr, value)


def read_holding(addr: int, count: int) -> bytes:
    return struct.pack(">BHH", 0x03, addr, count)


async def test_refused_fail_safe_mask_write_answers_04_and_changes_nothing() -> None:
    server, pile, *_ = make_server()
    server.faults[PILE].refuse_writes.append((2, 2))  # the fail-safe mask, holding 2..3
    reply = await server.answer(PILE, write_multiple(2, [0, 0x0F]))
    assert reply == exception_pdu(0x10, 4)
    assert await server.answer(PILE, write_single(3, 1)) == exception_pdu(0x06, 4)
    # A write that only overlaps the range is refused whole.
    assert await server.answer(PILE, write_multiple(1, [7, 0, 1])) == exception_pdu(0x10, 4)
    assert pile.read_holding(0, 4) == [0, 0, 0, 0]
    # Reads still work, and so do writes elsewhere (heartbeat, relays).
    assert await server.answer(PILE, read_holding(2, 2)) == b"\x03\x04\x00\x00\x00\x00"
    assert await server.answer(PILE, write_single(1, 5)) == write_single(1, 5)
    assert await server.answer(PILE, write_multiple(16, [1, 1])) == b"\x10\x00\x10\x00\x02"
    assert pile.read_holding(16, 2) == [1, 1]
    log = [(w.addr, w.values, w.error) for w in pile.writes.records()]
    assert log == [
        (2, (0, 0x0F), 4),
        (3, (1,), 4),
        (1, (7, 0, 1), 4),
        (1, (5,), None),
        (16, (1, 1), None),
    ]


async def test_refuse_writes_action_over_a_real_client(tcp_bench: Bench) -> None:
    b = tcp_bench
    b.server.faults[PILE].refuse_writes.append((2, 2))
    rr = await b.client.write_registers(2, [0, 3], device_id=PILE)
    assert rr.isError() and rr.exception_code == 4
    rr = await b.client.read_holding_registers(0, count=6, device_id=PILE)
    assert not rr.isError() and rr.registers[2:4] == [0, 0]
    b.server.faults[PILE].refuse_writes.clear()
    rr = await b.client.write_registers(2, [0, 3], device_id=PILE)
    assert not rr.isError()
    assert b.pile.read_holding(2, 2) == [0, 3]


def test_the_action_sets_and_ends_the_fault() -> None:
    sim = Simulator(small_shed(), virtual=True)
    apply(sim, {"do": "refuse_writes", "device": "pile", "addr": 2, "count": 2})
    assert sim.faults["pile"].refuse_writes == [(2, 2)]
    assert sim.devices()["pile"]["faults"]["refuse_writes"] == [[2, 2]]
    apply(sim, {"do": "refuse_writes", "device": "pile", "addr": 2, "count": 2, "active": False})
    assert sim.faults["pile"].refuse_writes == []
    apply(sim, {"do": "refuse_writes", "device": "pile"})  # every address
    assert sim.faults["pile"].refuses(write_single(0xFFFF, 1))
    assert not sim.faults["pile"].refuses(read_holding(0, 1))
    with pytest.raises(ActionError, match="count"):
        apply(sim, {"do": "refuse_writes", "device": "pile", "count": 0})
    with pytest.raises(ActionError, match="no such device"):
        apply(sim, {"do": "refuse_writes", "device": "ghost"})


async def test_delay_makes_a_device_answer_late_on_the_simulated_clock() -> None:
    """`delay` 0.42: the answer comes 0.42 s after the request, not a moment earlier."""
    clock = VirtualClock()
    server, *_ = make_server(clock=clock)
    sim = Simulator(small_shed(), virtual=True)
    apply(sim, {"do": "delay", "device": "pile", "seconds": 0.42})
    server.faults[PILE] = sim.faults["pile"]
    task = asyncio.create_task(server.answer(PILE, read_holding(0, 1)))
    await asyncio.sleep(0)
    clock.advance(0.419)
    await asyncio.sleep(0)
    assert not task.done()
    clock.advance(0.001)
    assert await asyncio.wait_for(task, 1.0) == b"\x03\x02\x00\x00"
    assert clock.now() == pytest.approx(0.42)
