"""Coils and discrete inputs (functions 01, 02, 05, 15) for a template that uses them (the
VoltBay V10 pile): the PDUs byte by byte, the faults, a pymodbus client over TCP and RTU, and
a third-party client (libmodbus `mbpoll`) checked against the template."""

from __future__ import annotations

import asyncio
import re
import shutil
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

from chargectl.drivers.template import shipped
from chargectl.sim.actions import ActionError, apply
from chargectl.sim.devices.pile import PileModel
from chargectl.sim.modbus_frame import exception_pdu, handle_pdu, rtu_request_length
from chargectl.sim.runner import Simulator
from chargectl.sim.server import BusServer
from tests.sim_devices.simdev_helpers import run_pile, s16
from tests.sim_physics.sheds import small_shed

pytestmark = pytest.mark.timeout(60)

UNIT = 7
VB = shipped()["voltbay10"]
MBPOLL = shutil.which("mbpoll") or "mbpoll"  # missing: the test fails (make test installs it)
LINE = re.compile(r"^\[(\d+)\]:\s+(\S+)", re.MULTILINE)


def voltbay() -> PileModel:
    return PileModel(10, 1000, template=VB)


def addr(name: str) -> int:
    return VB.fields[name].address


# --------------------------------------------------------------------------- PDUs
def test_read_coils_and_discrete_inputs_pack_8_a_byte_first_in_bit_0() -> None:
    pile = voltbay()
    pile.write_coils(addr("relay"), [1, 0, 1, 1, 0, 0, 0, 0, 0, 1])
    run_pile(pile, 0.0, 0.1, amps=1.0, watts=220.0)
    assert handle_pdu(pile, b"\x01\x00\x00\x00\x0a") == b"\x01\x02\x0d\x02"
    req = struct.pack(">BHH", 2, addr("relay_closed"), 10)
    assert handle_pdu(pile, req) == b"\x02\x02\x0d\x02"
    assert handle_pdu(pile, b"\x01\x00\x02\x00\x02") == b"\x01\x01\x03"  # from coil 2


def test_write_single_and_multiple_coils() -> None:
    pile = voltbay()
    assert handle_pdu(pile, b"\x05\x00\x04\xff\x00") == b"\x05\x00\x04\xff\x00"  # echo
    assert pile.contact_closed()[4]
    assert handle_pdu(pile, b"\x05\x00\x04\x00\x00") == b"\x05\x00\x04\x00\x00"
    assert not pile.contact_closed()[4]
    req = b"\x0f\x00\x00\x00\x0a\x02\x05\x02"  # ports 1, 3 and 10
    assert handle_pdu(pile, req) == b"\x0f\x00\x00\x00\x0a"
    assert pile.contact_closed().nonzero()[0].tolist() == [0, 2, 9]


@pytest.mark.parametrize(
    ("pdu", "reply"),
    [
        (b"\x05\x00\x00\x12\x34", b"\x85\x03"),  # a single coil is FF00 or 0000
        (b"\x05\x00\x00\xff", b"\x85\x03"),  # short
        (b"\x0f\x00\x00\x00\x0a\x01\xff", b"\x8f\x03"),  # byte count for 10 coils is 2
        (b"\x0f\x00\x00\x00\x00\x00", b"\x8f\x03"),  # no coils
        (b"\x01\x00\x00\x00\x00", b"\x81\x03"),  # count 0
        (b"\x01\x00\x00\x07\xd1", b"\x81\x03"),  # count 2001
        (b"\x01\x00\x0a\x00\x01", b"\x81\x02"),  # coil 10: no port 11
        (b"\x05\x00\x0a\xff\x00", b"\x85\x02"),
        (b"\x0f\x00\x09\x00\x02\x01\x03", b"\x8f\x02"),  # runs past the relay coils
        (b"\x02\x00\x40\x00\x01", b"\x82\x02"),
    ],
)
def test_bad_coil_requests(pdu: bytes, reply: bytes) -> None:
    pile = voltbay()
    assert handle_pdu(pile, pdu) == reply
    assert not pile.contact_closed().any()


def test_a_template_without_coils_answers_01() -> None:
    contract = PileModel(4)
    for pdu in (b"\x01\x00\x00\x00\x01", b"\x02\x00\x00\x00\x01", b"\x05\x00\x00\xff\x00"):
        assert handle_pdu(contract, pdu) == exception_pdu(pdu[0], 1)
    assert contract.writes.total == 0  # a function it lacks is no write


def test_rtu_lengths_of_the_coil_functions() -> None:
    for fc in (1, 2, 5):
        assert rtu_request_length(bytes([7, fc])) == 8
    assert rtu_request_length(b"\x07\x0f\x00\x00\x00\x0a") is None  # byte count not yet in
    assert rtu_request_length(b"\x07\x0f\x00\x00\x00\x0a\x02") == 11


def test_coil_garbage_and_holding_garbage() -> None:
    pile = voltbay()
    reply = handle_pdu(pile, b"\x01\x00\x00\x00\x03", None, {"coil": {1: 1}})
    assert reply == b"\x01\x01\x02"
    reply = handle_pdu(pile, b"\x03\x00\x02\x00\x01", None, {"holding": {2: 0xBEEF}})
    assert reply == b"\x03\x02\xbe\xef"
    assert handle_pdu(pile, b"\x03\x00\x02\x00\x01") == b"\x03\x02\x03\xe8"  # 1000 W


# --------------------------------------------------------------------------- faults
async def test_refused_coil_writes_answer_04_and_are_logged() -> None:
    pile = voltbay()
    server = BusServer({UNIT: pile})
    server.faults[UNIT].refuse_coil_writes.append((16, 10))  # the fail-safe mask coils
    assert await server.answer(UNIT, b"\x05\x00\x10\xff\x00") == b"\x85\x04"
    assert await server.answer(UNIT, b"\x0f\x00\x0f\x00\x02\x01\x03") == b"\x8f\x04"
    assert await server.answer(UNIT, b"\x05\x00\x00\xff\x00") == b"\x05\x00\x00\xff\x00"
    assert await server.answer(UNIT, b"\x06\x00\x10\x00\x01") == b"\x86\x02"  # other table
    assert pile.snapshot()["failsafe_mask"] == 0 and pile.contact_closed()[0]
    log = [(w.table, w.addr, w.values, w.error) for w in pile.writes.records()]
    assert log == [
        ("coil", 16, (1,), 4),
        ("coil", 15, (1, 1), 4),
        ("coil", 0, (1,), None),
        ("holding", 16, (1,), 2),
    ]
    await server.close()


def test_actions_take_a_table() -> None:
    sim = Simulator(small_shed(), virtual=True)
    apply(sim, {"do": "refuse_writes", "device": "pile", "table": "coil", "addr": 3, "count": 2})
    assert sim.faults["pile"].refuse_coil_writes == [(3, 2)]
    assert sim.faults["pile"].refuse_writes == []
    assert sim.devices()["pile"]["faults"]["refuse_coil_writes"] == [[3, 2]]
    apply(sim, {"do": "garbage", "device": "pile", "table": "discrete", "addr": 4, "value": 1})
    assert sim.faults["pile"].garbage_by_table == {"discrete": {4: 1}}
    assert sim.devices()["pile"]["faults"]["garbage_by_table"] == {"discrete": {"4": 1}}
    with pytest.raises(ActionError, match=r"garbage.value: a coil entry holds 0..1, got 2"):
        apply(sim, {"do": "garbage", "device": "pile", "table": "coil", "addr": 4, "value": 2})
    with pytest.raises(ActionError, match=r"garbage.table: one of input, holding"):
        apply(sim, {"do": "garbage", "device": "pile", "table": "coils", "addr": 4, "value": 1})
    with pytest.raises(ActionError, match=r"refuse_writes.table: one of holding, coil"):
        apply(sim, {"do": "refuse_writes", "device": "pile", "table": "input"})


# --------------------------------------------------------------------------- clients
@pytest.fixture(params=["tcp", "rtu"])
async def client_and_pile(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[AsyncModbusTcpClient | AsyncModbusSerialClient, PileModel]]:
    pile = voltbay()
    server = BusServer({UNIT: pile})
    client: AsyncModbusTcpClient | AsyncModbusSerialClient
    if request.param == "tcp":
        port = await server.serve_tcp("127.0.0.1", 0)
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=0.5, retries=0)
    else:
        link = str(tmp_path / "ttyVB")
        await server.serve_rtu(link)
        client = AsyncModbusSerialClient(link, baudrate=19200, timeout=0.5, retries=0)
    assert await client.connect()
    try:
        yield client, pile
    finally:
        client.close()
        await server.close()


async def test_pymodbus_reads_and_writes_coils_and_discretes(
    client_and_pile: tuple[AsyncModbusTcpClient | AsyncModbusSerialClient, PileModel],
) -> None:
    client, pile = client_and_pile
    rr = await client.write_coils(addr("relay"), [True, False, True], device_id=UNIT)
    assert not rr.isError(), rr
    rr = await client.write_coil(addr("relay") + 9, True, device_id=UNIT)
    assert not rr.isError(), rr
    assert pile.contact_closed().nonzero()[0].tolist() == [0, 2, 9]
    run_pile(pile, 0.0, 0.1, amps=2.0, watts=440.0)
    rr = await client.read_coils(addr("relay"), count=10, device_id=UNIT)
    assert rr.bits[:10] == [True, False, True] + [False] * 6 + [True]
    rr = await client.read_discrete_inputs(addr("load_present"), count=10, device_id=UNIT)
    assert rr.bits[:10] == [True, False, True] + [False] * 6 + [True]
    rr = await client.write_coil(addr("relay") + 10, True, device_id=UNIT)
    assert rr.isError() and rr.exception_code == 2
    rr = await client.read_input_registers(addr("port_current"), count=10, device_id=UNIT)
    assert rr.registers == [20, 0, 20] + [0] * 6 + [20]  # 0.1 A


# --------------------------------------------------------------------------- mbpoll
async def mbpoll(*args: str) -> tuple[int, dict[int, str], str]:
    proc = await asyncio.create_subprocess_exec(
        MBPOLL, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode is not None
    return proc.returncode, {int(a): v for a, v in LINE.findall(out.decode())}, err.decode()


async def test_mbpoll_sees_the_voltbay_template() -> None:
    """A third-party client reads a simulated second-family pile where its template says."""
    pile = voltbay()
    pile.set_energy_wh(4, 98765.0)
    server = BusServer({UNIT: pile})
    port = await server.serve_tcp("127.0.0.1", 0)
    base = ["-m", "tcp", "-p", str(port), "-0", "-1", "-o", "0.5", "-a", str(UNIT)]
    try:
        rc, _, err = await mbpoll(*base, "-t", "0", "-r", str(addr("relay")), "127.0.0.1", "1")
        assert rc == 0, err
        rc, _, err = await mbpoll(*base, "-t", "0", "-r", "3", "127.0.0.1", "1", "0", "1")
        assert rc == 0, err
        assert pile.contact_closed().nonzero()[0].tolist() == [0, 3, 5]
        run_pile(pile, 0.0, 0.1, amps=3.14, watts=690.0, cabinet_c=-7.0)

        rc, regs, err = await mbpoll(*base, "-t", "3", "-r", "0", "-c", "5", "127.0.0.1")
        assert rc == 0, err
        assert [int(regs[a]) for a in range(5)][:3] == [VB.fields["model"].equals, 10, 0]
        assert s16(int(regs[addr("cabinet_temperature")])) == -7
        first = addr("port_current")
        rc, regs, err = await mbpoll(*base, "-t", "3", "-r", str(first), "-c", "6", "127.0.0.1")
        assert [int(regs[first + i]) for i in range(6)] == [31, 0, 0, 31, 0, 31]  # 0.1 A
        energy = addr("port_energy") + 2 * 3
        rc, regs, err = await mbpoll(*base, "-t", "3:int", "-B", "-r", str(energy), "127.0.0.1")
        assert rc == 0, err
        assert int(regs[energy]) == 9876  # port 4: 98765 Wh in 0.01 kWh, high word first
        closed = addr("relay_closed")
        rc, regs, err = await mbpoll(*base, "-t", "1", "-r", str(closed), "-c", "6", "127.0.0.1")
        assert rc == 0, err
        assert [int(regs[closed + i]) for i in range(6)] == [1, 0, 0, 1, 0, 1]
        rc, regs, err = await mbpoll(*base, "-t", "0", "-r", "10", "127.0.0.1")
        assert rc != 0 and "Illegal data address" in err
        limit = str(addr("port_power_limit"))
        rc, regs, err = await mbpoll(*base, "-t", "4", "-r", limit, "127.0.0.1", "1501")
        assert rc != 0 and "Illegal data value" in err
    finally:
        await server.close()
