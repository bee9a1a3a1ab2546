"""The replay's framed in-memory line (chargectl/replay/wire.py).

- Its PDUs are byte for byte pymodbus's, and its decoding rejects what the real transport
  rejects (another function's reply, a byte count that lies, a write echo that differs).
- The same reads and writes through it and through Modbus TCP (pymodbus against the
  simulator's server), against the same simulated devices and faults, give the same
  registers and the same errors; a silent unit costs exactly the bus's timeout, in virtual
  seconds.
- Smoke: the real daemon and the world on one `VirtualClock`, 10 simulated minutes of the
  small example shed with four sessions: they charge, nothing trips.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pymodbus.pdu.bit_message import WriteMultipleCoilsRequest, WriteSingleCoilRequest
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    WriteMultipleRegistersRequest,
    WriteSingleRegisterRequest,
)

from chargectl.config.load import load_shed
from chargectl.config.schema import Shed, TcpBus
from chargectl.drivers.bus import ModbusBus, pymodbus_factory
from chargectl.drivers.errors import DeviceError, ExceptionReply
from chargectl.replay.wire import (
    FrameStats,
    WireClient,
    advance,
    decode_read,
    decode_write,
    encode_write,
    settle,
    simulator_factories,
)
from chargectl.runtime.clock import RealClock, VirtualClock
from chargectl.runtime.daemon import Daemon, Options
from chargectl.sim.runner import Simulator
from chargectl.sim.server import UnitFaults
from tests.rig import add_cards, bay_card, bay_cards, write_config

T = TypeVar("T")
PILE, VOLTBAY, METER = 1, 2, 10


# -- the frames themselves ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("function", "addr", "values", "theirs"),
    [
        (5, 7, [1], WriteSingleCoilRequest(address=7, bits=[True])),
        (6, 4, [3500], WriteSingleRegisterRequest(address=4, registers=[3500])),
        (15, 16, [1, 0, 1] * 3, WriteMultipleCoilsRequest(address=16, bits=[1, 0, 1] * 3)),
        (16, 16, [1, 0, 65535], WriteMultipleRegistersRequest(address=16, registers=[1, 0, 65535])),
    ],
)
def test_write_pdus_are_pymodbus_bytes(function: int, addr: int, values: list[int], theirs: Any):
    assert encode_write(function, addr, values) == bytes([theirs.function_code]) + theirs.encode()


def test_read_pdu_is_pymodbus_bytes() -> None:
    theirs = ReadHoldingRegistersRequest(address=300, count=12)
    ours = bytes([3]) + (300).to_bytes(2, "big") + (12).to_bytes(2, "big")
    assert ours == bytes([theirs.function_code]) + theirs.encode()


@pytest.mark.parametrize(
    ("function", "count", "reply", "expect"),
    [
        (3, 2, bytes.fromhex("0304000a0102"), [10, 258]),
        (3, 3, bytes.fromhex("0304000a0102"), [10, 258]),  # short: the bus raises BadValue
        (1, 10, bytes.fromhex("0102ff01"), [1] * 9 + [0]),
        (3, 2, bytes.fromhex("8302"), 2),  # exception reply: its code
        (3, 2, bytes.fromhex("0404000a0102"), TimeoutError),  # another function's reply
        (3, 2, bytes.fromhex("8402"), TimeoutError),
        (3, 2, bytes.fromhex("0306000a0102"), TimeoutError),  # byte count lies
        (3, 2, bytes.fromhex("830201"), TimeoutError),  # exception reply too long
    ],
)
def test_read_replies_decode_as_the_transport_does(
    function: int, count: int, reply: bytes, expect: Any
) -> None:
    if expect is TimeoutError:
        with pytest.raises(TimeoutError):
            decode_read(function, count, reply)
    else:
        assert decode_read(function, count, reply) == expect


def test_write_echo_must_match() -> None:
    request = encode_write(16, 16, [1, 1])
    assert decode_write(request, request[:5]) is None
    assert decode_write(request, bytes.fromhex("9004")) == 4
    with pytest.raises(TimeoutError):
        decode_write(request, bytes.fromhex("1000100001"))  # one register, not two
    with pytest.raises(TimeoutError):
        decode_write(encode_write(6, 4, [7]), encode_write(6, 4, [8]))


# -- the same requests over TCP and over the wire client ------------------------------------
def mixed_config(tmp_path: Path) -> Path:
    """The small example plus a VoltBay V10 (relays in coils) on the same line."""

    def edit(data: dict[str, Any]) -> None:
        data["devices"].append(
            {
                "id": "vb",
                "kind": "voltbay10",
                "bus": "line-1",
                "unit": VOLTBAY,
                "circuit": "main",
                "phase": 1,
                "ports": 10,
                "port_power_limit_w": 1000,
            }
        )

    return write_config(tmp_path, "small", edit=edit)


async def on_virtual(clock: VirtualClock, aw: Awaitable[T]) -> T:
    """Run `aw`, moving the virtual clock to its next deadline whenever everything waits on
    it (a silent unit: the bus's timeout)."""
    task = asyncio.ensure_future(aw)
    while not task.done():
        await settle()
        if task.done():
            break
        due = clock.next_deadline()
        if due is None:
            await asyncio.sleep(0.005)  # waiting on real time (a server's delay fault)
        else:
            clock.advance(max(0.0, due - clock.now()))
    return task.result()


Op = Callable[[ModbusBus], Awaitable[Any]]
Setup = Callable[[dict[int, UnitFaults]], None]


def no_fault(faults: dict[int, UnitFaults]) -> None:
    return None


def fault(unit: int, **kw: Any) -> Setup:
    def setup(faults: dict[int, UnitFaults]) -> None:
        for k, v in kw.items():
            setattr(faults[unit], k, v)

    return setup


def garbage(unit: int, addr: int, raw: int) -> Setup:
    def setup(faults: dict[int, UnitFaults]) -> None:
        faults[unit].garbage_of("input")[addr] = raw

    return setup


async def write_then_read_coils(bus: ModbusBus) -> Any:
    await bus.write_coil(VOLTBAY, 3, True)
    await bus.write_coils(VOLTBAY, 16, [True, False, True])
    return [*await bus.read_coils(VOLTBAY, 0, 10), *await bus.read_coils(VOLTBAY, 16, 10)]


CASES: dict[str, tuple[Setup, Op]] = {
    "input registers": (no_fault, lambda b: b.read_input(PILE, 0, 16)),
    "holding registers": (no_fault, lambda b: b.read_holding(PILE, 0, 6)),
    "meter inputs": (no_fault, lambda b: b.read_input(METER, 0, 8)),
    "discrete inputs": (no_fault, lambda b: b.read_discrete(VOLTBAY, 0, 20)),
    "coils": (no_fault, lambda b: b.read_coils(VOLTBAY, 0, 10)),
    "illegal address 02": (no_fault, lambda b: b.read_input(PILE, 30000, 2)),
    "illegal value 03": (no_fault, lambda b: b.write_register(PILE, 4, 9999)),
    "coil function to a pile without coils 01": (no_fault, lambda b: b.read_coils(PILE, 0, 4)),
    "coil writes": (no_fault, write_then_read_coils),
    "register writes": (
        no_fault,
        lambda b: b.write_registers(PILE, 16, [1, 0, 1]),
    ),
    "exception fault": (fault(METER, exception=6), lambda b: b.read_input(METER, 0, 2)),
    "refused write": (
        fault(PILE, refuse_writes=[(16, 2)]),
        lambda b: b.write_register(PILE, 17, 1),
    ),
    "refused coil write": (
        fault(VOLTBAY, refuse_coil_writes=[(0, 10)]),
        lambda b: b.write_coil(VOLTBAY, 2, True),
    ),
    "garbage": (garbage(PILE, 2, 0xBEEF), lambda b: b.read_input(PILE, 0, 4)),
    "silent unit": (fault(PILE, silent=True), lambda b: b.read_input(PILE, 0, 4)),
    "late unit": (fault(METER, delay_s=0.6), lambda b: b.read_input(METER, 0, 2)),
}


def outcome(result: Any) -> Any:
    if isinstance(result, ExceptionReply):
        return ("ExceptionReply", result.code, result.function, result.register)
    if isinstance(result, DeviceError):
        return (type(result).__name__, result.register)
    return ("ok", result)


async def attempt(bus: ModbusBus, op: Op) -> Any:
    try:
        return outcome(await op(bus))
    except DeviceError as exc:
        return outcome(exc)
    finally:
        await bus.close()


@pytest.fixture
async def served(tmp_path: Path) -> Any:
    shed = load_shed(mixed_config(tmp_path))
    bus = shed.buses[0]
    assert isinstance(bus, TcpBus)
    shed_bus = TcpBus(bus.id, bus.host, bus.port, timeout_s=0.25)
    sim = Simulator(shed)
    await sim.start()
    try:
        yield shed, shed_bus, sim
    finally:
        await sim.close()


@pytest.mark.parametrize("case", list(CASES))
async def test_the_same_answers_as_over_tcp(
    served: tuple[Shed, TcpBus, Simulator], case: str
) -> None:
    _, config, sim = served
    setup, op = CASES[case]
    setup(sim.servers[config.id].faults)

    over_tcp = await attempt(
        ModbusBus(config, RealClock(), client_factory=pymodbus_factory(config)), op
    )
    await asyncio.sleep(0.7)  # a late reply to the TCP request leaves the line first

    stats = FrameStats()
    clock = VirtualClock()
    wired = ModbusBus(config, clock, client_factory=simulator_factories(sim, stats)[config.id])
    over_wire = await on_virtual(clock, attempt(wired, op))

    assert over_wire == over_tcp
    assert stats.requests >= 1
    if over_tcp[0] == "DeviceTimeout":
        assert clock.now() == pytest.approx(config.timeout_s)  # exactly the bus's timeout
        assert stats.replies == 0
    else:
        assert clock.now() == 0.0  # an answer costs no virtual time
        assert stats.replies == stats.requests


async def test_expected_outcomes_of_the_table(tmp_path: Path) -> None:
    """What the table above compares, so that both paths failing alike cannot pass it."""
    shed = load_shed(mixed_config(tmp_path))
    config = shed.buses[0]

    async def run(case: str) -> Any:
        sim = Simulator(shed, virtual=True)
        CASES[case][0](sim.servers[config.id].faults)
        assert isinstance(sim.clock, VirtualClock)
        bus = ModbusBus(config, sim.clock, client_factory=simulator_factories(sim)[config.id])
        return await on_virtual(sim.clock, attempt(bus, CASES[case][1]))

    codes = {"illegal address 02": 2, "illegal value 03": 3, "exception fault": 6}
    codes |= {"refused write": 4, "refused coil write": 4}
    codes["coil function to a pile without coils 01"] = 1
    for case, code in codes.items():
        assert (await run(case))[:2] == ("ExceptionReply", code), case
    assert (await run("silent unit"))[0] == "DeviceTimeout"
    assert (await run("late unit"))[0] == "DeviceTimeout"
    garbled = await run("garbage")
    assert garbled[0] == "ok" and garbled[1][2] == 0xBEEF
    coils = await run("coil writes")
    assert coils[0] == "ok", coils
    assert coils[1][3] == 1 and coils[1][10:13] == [1, 0, 1]


def test_an_unconnected_client_is_a_lost_link() -> None:
    client = WireClient(lambda unit, pdu: asyncio.sleep(0, pdu))
    with pytest.raises(ConnectionError):
        asyncio.run(client.read(3, 1, 0, 1))


# -- smoke: the daemon and the world on one virtual clock -----------------------------------
SESSIONS = {
    "pile-a/1": None,
    "pile-a/2": None,
    "pile-a/3": ("li60", 0.2),
    "pile-a/4": ("lead48", 0.4),
}


async def test_daemon_charges_on_virtual_time_through_the_wire(tmp_path: Path) -> None:
    shed = load_shed(write_config(tmp_path, "small"))
    add_cards(shed, bay_cards(shed))
    sim = Simulator(shed, virtual=True)
    clock = sim.clock
    assert isinstance(clock, VirtualClock)
    for bay, charger in SESSIONS.items():
        if charger is not None:
            sim.world.plug_charger(bay, *charger)
    stats = FrameStats()
    options = Options(
        clock=clock,
        client_factories=simulator_factories(sim, stats),
        serve_metrics=False,
        serve_api=False,
    )
    daemon = Daemon(shed, options)
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop), name="daemon")
    deadline = time.monotonic() + 60  # the kernel compiles in a thread, in real time
    while daemon.first_write_s is None:
        assert not task.done(), task.result()
        assert time.monotonic() < deadline, "the daemon did not start"
        await settle()
        await asyncio.sleep(0.01)
    soc = {b: sim.world.truth(bays=True)["bays"][b]["soc"] for b in SESSIONS}
    seen: set[str] = set()

    async def second() -> dict[str, str]:
        await advance(sim, 1.0)
        states = {b["id"]: b["state"] for b in daemon.status.latest.get("bays", [])}
        seen.update(b for b, s in states.items() if s == "charging")
        return states

    for bay in SESSIONS:  # a pile holds only its latest tap: one at a time, as people queue
        sim.world.tap(bay, bytes.fromhex(bay_card(bay)))
        for _ in range(10):
            if (await second())[bay] in ("charging", "waiting"):
                break
    while clock.now() < 600.0:
        await second()
    stop.set()
    await on_virtual(clock, task)

    truth = sim.world.truth(bays=True)
    assert sim.trips == [] and truth["trips"] == []
    assert seen == set(SESSIONS)
    for bay, before in soc.items():
        assert truth["bays"][bay]["soc"] > before, bay
    assert 590 <= daemon.controller.ticks <= 602  # one a second of virtual time
    assert clock.now() >= 600.0
    assert stats.requests > 0 and stats.replies == stats.requests
