"""The drivers against the simulator (sim/server.py + sim/devices) over real Modbus: TCP on
loopback and RTU on a pty, through the real pymodbus 3.16.1 client. The simulator is an
independent implementation of ../shared/hardware/*.md, so this is the contract both ways."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from chargectl.config.schema import Device, RtuBus, TcpBus
from chargectl.drivers.bus import ModbusBus
from chargectl.drivers.errors import (
    BadValue,
    ConnectionLost,
    DeviceDown,
    DeviceTimeout,
    ExceptionReply,
)
from chargectl.drivers.evse import EvseDriver
from chargectl.drivers.factory import make_driver
from chargectl.drivers.health import BusPolicy
from chargectl.drivers.meter import MeterDriver
from chargectl.drivers.pile import PileDriver
from chargectl.drivers.readings import FAULT_SHORT, Tap
from chargectl.runtime.clock import RealClock
from chargectl.sim.devices.evse import EvseModel
from chargectl.sim.devices.meter import MeterModel
from chargectl.sim.devices.pile import PileModel
from chargectl.sim.server import BusServer
from tests.ports import free_port

PILE, EVSE, SDM630, SDM120, ABSENT = 1, 21, 10, 11, 99
PORTS = 12

pytestmark = pytest.mark.timeout(60)


@dataclass
class Line:
    server: BusServer
    bus: ModbusBus
    pile_model: PileModel
    evse_model: EvseModel
    m3_model: MeterModel
    m1_model: MeterModel
    pile: PileDriver
    evse: EvseDriver
    m3: MeterDriver
    m1: MeterDriver


def step_pile(model: PileModel, now: float, amps: list[float]) -> None:
    a = np.array(amps + [0.0] * (PORTS - len(amps)))
    model.step(now, 0.1, a, a * 220.0, np.full(PORTS, 31.5), 221.0, 24.0)


@pytest.fixture(params=["tcp", "rtu"])
async def line(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Line]:
    pile_model, evse_model = PileModel(PORTS), EvseModel(16.0, 3)
    m3, m1 = MeterModel("sdm630"), MeterModel("sdm120")
    server = BusServer({PILE: pile_model, EVSE: evse_model, SDM630: m3, SDM120: m1})
    config: TcpBus | RtuBus
    if request.param == "tcp":
        port = await server.serve_tcp("127.0.0.1", 0)
        config = TcpBus("line-1", "127.0.0.1", port, timeout_s=1.0)
    else:
        path = str(tmp_path / "ttySIM0")
        await server.serve_rtu(path)
        config = RtuBus("line-1", path, baudrate=19200, timeout_s=1.0)
    bus = ModbusBus(config, RealClock(), policy=BusPolicy(down_after=1, probe_base_s=10.0))

    def dev(id_: str, kind: str, unit: int, **kw: object) -> Device:
        return Device(id_, kind, "line-1", unit, "main", (1, 2, 3), **kw)  # type: ignore[arg-type]

    drivers = [
        make_driver(Device("pile-a", "pile", "line-1", PILE, "main", (1,), ports=PORTS), bus),
        make_driver(dev("wb-1", "evse", EVSE, max_current_a=16.0), bus),
        make_driver(dev("meter-3", "sdm630", SDM630), bus),
        make_driver(Device("meter-1", "sdm120", "line-1", SDM120, None, (2,)), bus),
    ]
    pile, evse, meter3, meter1 = drivers
    assert isinstance(pile, PileDriver) and isinstance(evse, EvseDriver)
    assert isinstance(meter3, MeterDriver) and isinstance(meter1, MeterDriver)
    yield Line(server, bus, pile_model, evse_model, m3, m1, pile, evse, meter3, meter1)
    await bus.close()
    await server.close()


async def test_pile_hot_block_as_the_simulator_serves_it(line: Line) -> None:
    step_pile(line.pile_model, 1.0, [])
    await line.pile.setup(10, 0)
    assert await line.pile.write_relays({1: True, 2: True, 5: True}) == 2
    step_pile(line.pile_model, 1.1, [2.25, 0.0, 0.0, 0.0, 4.5])
    line.pile_model.tap(5, bytes.fromhex("04a1b2c3d4e5f6"))
    hot = await line.pile.read_hot()
    assert hot.relay_closed[:6] == (True, True, False, False, True, False)
    assert hot.current_a[0] == pytest.approx(2.25) and hot.current_a[4] == pytest.approx(4.5)
    assert hot.load_present[:3] == (True, False, False)
    assert hot.pile_current_a == pytest.approx(6.75)
    assert hot.tap == Tap(seq=1, port=5, uid="04A1B2C3D4E5F6")
    assert hot.voltage_v == pytest.approx(221.0) and hot.temperature_c == pytest.approx(24.0)
    assert hot.watchdog_remaining_s == 10 and not hot.failsafe and hot.alarm is None


async def test_pile_watchdog_failsafe_and_heartbeat(line: Line) -> None:
    model = line.pile_model
    step_pile(model, 1.0, [])
    await line.pile.setup(2, 0b10)  # port 2 stays closed in failsafe
    await line.pile.write_relays({1: True, 2: True, 3: True})
    step_pile(model, 3.5, [])  # 2.5 s without a heartbeat
    hot = await line.pile.read_hot()
    assert hot.failsafe and hot.relay_closed[:4] == (False, True, False, False)
    await line.pile.heartbeat()
    step_pile(model, 3.6, [])
    hot = await line.pile.read_hot()
    assert not hot.failsafe and hot.relay_closed[:3] == (False, True, False)
    await line.pile.set_failsafe_mask(0)
    assert line.pile_model.snapshot()  # still serving


async def test_pile_slow_blocks_and_counter_wrap(line: Line) -> None:
    line.pile_model.set_energy_wh(3, 2**32 - 0.5)
    await line.pile.write_relays({3: True})
    step_pile(line.pile_model, 1.0, [0, 0, 2.0])
    slow = await line.pile.read_slow()
    assert slow.energy_wh[2] == 2**32 - 1
    assert slow.power_w[2] == 440 and slow.temperature_c[2] == pytest.approx(31.5)
    for i in range(60):  # 440 W for 6 s: about 0.7 Wh more, past the wrap
        step_pile(line.pile_model, 1.1 + 0.1 * i, [0, 0, 2.0])  # 0.1 s steps
    slow = await line.pile.read_slow()  # wrapped forward: not a backwards counter
    assert slow.energy_wh[2] < 10


async def test_pile_fault_and_reset(line: Line) -> None:
    await line.pile.write_relays({4: True})
    line.pile_model.set_short(4)
    step_pile(line.pile_model, 1.0, [])
    hot = await line.pile.read_hot()
    assert hot.fault[3] == FAULT_SHORT and not hot.relay_closed[3]
    await line.pile.fault_reset(4)
    hot = await line.pile.read_hot()
    assert hot.fault[3] == 0


async def test_evse_setpoint_and_hot_block(line: Line) -> None:
    await line.evse.setup(10, failsafe_current_a=0.0)
    await line.evse.set_current(10.29)
    assert line.evse_model.offered_a() == pytest.approx(10.2)
    assert await line.evse.read_setpoint() == pytest.approx(10.2)
    line.evse_model.step(1.0, 0.1, 2, np.array([10.0, 10.1, 9.9]), 6600.0, 30.0)
    hot = await line.evse.read_hot()
    assert hot.charging and hot.cp_letter == "C" and hot.phases == 3
    assert hot.current_a == pytest.approx((10.0, 10.1, 9.9))
    assert hot.hw_max_current_a == pytest.approx(16.0) and hot.power_w == 6600
    await line.evse.set_current(0)
    assert line.evse_model.offered_a() == 0.0


async def test_meters(line: Line) -> None:
    line.m3_model.update([230.0, 231.0, 229.5], [10.0, 5.5, 0.0], [2200, 1200, 0], 50.0, 77.25)
    line.m1_model.update([228.0], [3.5], [790.0], 49.9, 12.0)
    r3 = await line.m3.read()
    assert r3.amps == pytest.approx((10.0, 5.5, 0.0)) and r3.total_w == pytest.approx(3400)
    assert r3.import_kwh == pytest.approx(77.25)
    r1 = await line.m1.read()
    assert r1.amps == pytest.approx((3.5,)) and r1.total_w == pytest.approx(790.0)
    assert r1.hz == pytest.approx(49.9, abs=1e-4)


async def test_an_absent_unit_times_out_once_then_is_skipped(line: Line) -> None:
    with pytest.raises(DeviceTimeout):
        await line.bus.read_input(ABSENT, 0, 10)
    with pytest.raises(DeviceDown):
        await line.bus.read_input(ABSENT, 0, 10)
    hot = await line.pile.read_hot()  # the line itself is fine
    assert len(hot.current_a) == PORTS
    assert not line.bus.health(ABSENT).up and line.bus.health(PILE).up


async def test_protocol_faults_map_to_the_taxonomy(line: Line) -> None:
    line.server.faults[PILE].garbage = {16: 0xFFFF}  # port 1 current: 65.535 A
    with pytest.raises(BadValue) as info:
        await line.pile.read_hot()
    assert info.value.register == 16 and info.value.device == "pile-a"
    line.server.faults[PILE].garbage = {}
    line.server.faults[PILE].exception = 4
    with pytest.raises(ExceptionReply) as exc:
        await line.pile.read_hot()
    assert exc.value.code == 4
    line.server.faults[PILE].exception = None
    with pytest.raises(ExceptionReply) as exc:  # relay_cmd 2 is out of range: exception 03
        await line.bus.write_register(PILE, 16, 2)
    assert exc.value.code == 3
    health = line.bus.health(PILE)
    assert health.up and health.errors == {"BadValue": 1, "ExceptionReply": 2}
    line.server.faults[PILE].silent = True
    with pytest.raises(DeviceTimeout):
        await line.pile.read_hot()
    line.server.faults[PILE].silent = False
    assert not line.bus.health(PILE).up


async def test_tcp_gateway_down_at_start_then_up_then_restarted() -> None:
    """pymodbus does not retry a failed first connect: the bus does, after its backoff; and
    after the gateway restarts, the next request after the loss reconnects."""
    port = free_port()
    policy = BusPolicy(connect_base_s=0.05, connect_max_s=0.05)
    bus = ModbusBus(TcpBus("gw", "127.0.0.1", port, timeout_s=1.0), RealClock(), policy=policy)
    pile = make_driver(Device("pile-a", "pile", "gw", PILE, "main", (1,), ports=PORTS), bus)
    assert isinstance(pile, PileDriver)
    with pytest.raises(ConnectionLost):
        await pile.read_hot()
    assert not bus.health(PILE).up

    server = BusServer({PILE: PileModel(PORTS)})
    assert await server.serve_tcp("127.0.0.1", port) == port
    await asyncio.sleep(0.06)  # past the connect backoff
    assert len((await pile.read_hot()).current_a) == PORTS
    assert bus.health(PILE).up

    await server.close()  # the gateway goes away: the open connection is closed under us
    with pytest.raises((ConnectionLost, DeviceTimeout, DeviceDown)):
        for _ in range(3):
            await pile.read_hot()
            await asyncio.sleep(0.01)
    server = BusServer({PILE: PileModel(PORTS)})
    await server.serve_tcp("127.0.0.1", port)
    for _ in range(100):  # back within the unit's probe and the line's connect backoff
        await asyncio.sleep(0.05)
        try:
            await pile.read_hot()
            break
        except (ConnectionLost, DeviceDown, DeviceTimeout):
            continue
    assert bus.health(PILE).up and bus.connected
    await bus.close()
    await server.close()


async def test_rtu_port_missing_is_connection_lost(tmp_path: Path) -> None:
    bus = ModbusBus(RtuBus("rs485", str(tmp_path / "nope"), timeout_s=0.5), RealClock())
    with pytest.raises(ConnectionLost, match="rs485"):
        await bus.read_input(1, 0, 1)
    await bus.close()
