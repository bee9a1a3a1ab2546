"""The control API end to end: HTTP on loopback against a simulator serving Modbus TCP."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from chargectl.config.schema import RtuBus
from chargectl.sim.runner import Simulator
from chargectl.sim.serve import serve
from tests.sim_physics.sheds import small_shed

pytestmark = pytest.mark.timeout(60)


def _call(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


async def http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    # urllib blocks: run it off the loop that serves the API.
    return await asyncio.to_thread(_call, method, url, body)


class Running:
    def __init__(self, info: dict[str, Any], stop: asyncio.Event) -> None:
        self.api = info["control_api"]
        host, port = info["buses"]["line"].split(":")
        self.host, self.port = host, int(port)
        self.stop = stop


async def start(virtual: bool, **kw: Any) -> tuple[Running, asyncio.Task[Any]]:
    stop = asyncio.Event()
    ready: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(small_shed(**kw), stop, virtual=virtual, speed=1.0, on_ready=ready.set_result)
    )
    info = await asyncio.wait_for(ready, 10)
    return Running(info, stop), task


@pytest.fixture
async def vsim() -> AsyncIterator[Running]:
    running, task = await start(virtual=True)
    yield running
    running.stop.set()
    await asyncio.wait_for(task, 10)


async def test_read_back_and_actions(vsim: Running) -> None:
    status, health = await http("GET", vsim.api + "/health")
    assert status == 200 and health["ok"]
    status, res = await http(
        "POST",
        vsim.api + "/action",
        [
            {"do": "plug", "bay": "pile/3", "profile": "li72", "soc": 0.4},
            {"do": "tap", "bay": "pile/3", "uid": "04a1b2c3"},
            {"do": "load", "circuit": "main", "amps": [2.5]},
        ],
    )
    assert status == 200 and res["applied"] == 3
    status, bay = await http("GET", vsim.api + "/bays/pile/3")
    assert status == 200 and bay["profile"] == "li72" and bay["soc"] == pytest.approx(0.4)
    status, dev = await http("GET", vsim.api + "/devices/pile")
    assert status == 200 and dev["unit"] == 1 and dev["powered"]
    assert "writes" in dev["snapshot"]
    status, actions = await http("GET", vsim.api + "/actions")
    assert "heater" in actions and actions["plug"]["params"]["bay"]["required"]


async def test_advance_a_virtual_clock_through_an_overload_trip(vsim: Running) -> None:
    client = AsyncModbusTcpClient(vsim.host, port=vsim.port, timeout=1, retries=0)
    await client.connect()
    try:
        # The controller's view: close every relay over Modbus.
        rr = await client.write_registers(16, [1] * 12, device_id=1)
        assert not rr.isError()
        heaters = [{"do": "heater", "bay": f"pile/{p}", "watts": 1500} for p in range(1, 13)]
        assert (await http("POST", vsim.api + "/action", heaters))[0] == 200
        status, res = await http("POST", vsim.api + "/advance", {"seconds": 10})
        assert status == 200 and res["time"] == pytest.approx(10.0) and res["trips"] == []
        rr = await client.read_input_registers(13, count=1, device_id=1)
        assert rr.registers[0] == round(12 * 1500 / 220 * 100)  # pile_current, 0.01 A
        status, res = await http("POST", vsim.api + "/advance", {"seconds": 60})
        assert [t["cause"] for t in res["trips"]] == ["thermal"]
        assert 1.0 <= res["trips"][0]["time"] <= 60.0
        status, truth = await http("GET", vsim.api + "/truth?bays=0")
        assert truth["circuits"]["main"]["breaker"]["closed"] is False
        assert truth["trips"] == res["trips"]
        # Everything below the breaker lost power: the pile does not answer at all.
        with pytest.raises(ModbusIOException):
            await client.read_input_registers(0, count=1, device_id=1)
        await http("POST", vsim.api + "/action", {"do": "breaker_reset", "circuit": "main"})
        await http("POST", vsim.api + "/advance", {"seconds": 0.5})
        rr = await client.read_input_registers(0, count=3, device_id=1)
        assert rr.registers == [0x4350, 1, 12]
    finally:
        client.close()


async def test_protocol_faults_through_the_api(vsim: Running) -> None:
    client = AsyncModbusTcpClient(vsim.host, port=vsim.port, timeout=1, retries=0)
    await client.connect()
    try:
        await http("POST", vsim.api + "/action", {"do": "exception", "device": "m", "code": 4})
        rr = await client.read_input_registers(0, count=2, device_id=10)
        assert rr.isError() and rr.exception_code == 4
        await http("POST", vsim.api + "/action", {"do": "exception", "device": "m", "code": None})
        await http("POST", vsim.api + "/action", {"do": "garbage", "device": "pile", "addr": 2,
                                                   "value": 999})  # fmt: skip
        rr = await client.read_input_registers(0, count=3, device_id=1)
        assert rr.registers == [0x4350, 1, 999]
        _status, dev = await http("GET", vsim.api + "/devices/pile")
        assert dev["faults"]["garbage"] == {"2": 999}
    finally:
        client.close()


async def test_bad_requests_say_what(vsim: Running) -> None:
    status, res = await http("POST", vsim.api + "/action", {"do": "plug", "bay": "pile/99"})
    assert status == 400 and "pile/99" in res["error"]
    status, res = await http("POST", vsim.api + "/action", {"do": "fly"})
    assert status == 400 and "unknown action 'fly'" in res["error"]
    status, res = await http("POST", vsim.api + "/action", {"do": "heater", "bay": "pile/1",
                                                            "watts": "hot"})  # fmt: skip
    assert status == 400 and "action.watts" in res["error"]
    status, res = await http("GET", vsim.api + "/nowhere")
    assert status == 404
    status, res = await http("GET", vsim.api + "/action")
    assert status == 405
    status, res = await http("POST", vsim.api + "/advance", {"seconds": -1})
    assert status == 400


async def test_real_time_steps_by_itself_and_refuses_advance() -> None:
    running, task = await start(virtual=False)
    try:
        await asyncio.sleep(0.5)
        status, health = await http("GET", running.api + "/health")
        assert 0.2 <= health["time"] <= 2.0
        status, _res = await http("POST", running.api + "/advance", {"seconds": 1})
        assert status == 409
    finally:
        running.stop.set()
        await asyncio.wait_for(task, 10)


async def test_serve_refuses_a_non_loopback_control_api() -> None:
    shed = small_shed()
    shed = replace(shed, sim=replace(shed.sim, control_api=replace(shed.sim.control_api,
                                                                 host="0.0.0.0")))  # fmt: skip
    with pytest.raises(ValueError, match="loopback only"):
        await serve(shed, asyncio.Event(), virtual=True)


async def test_an_rtu_bus_is_served_on_a_pty_link(tmp_path: Path) -> None:
    shed = small_shed()
    link = tmp_path / "ttySIM0"
    shed = replace(shed, buses=(RtuBus("line", str(link), baudrate=19200),))
    sim = Simulator(shed, virtual=True)
    await sim.start()
    client = AsyncModbusSerialClient(str(link), baudrate=19200, timeout=1, retries=0)
    try:
        assert sim.endpoints == {"line": str(link)} and link.is_symlink()
        assert await client.connect()
        rr = await client.read_input_registers(0, count=3, device_id=1)
        assert rr.registers == [0x4350, 1, 12]
        with pytest.raises(ModbusIOException):  # unit 5 is not on the line: no answer
            await client.read_input_registers(0, count=1, device_id=5)
    finally:
        client.close()
        await sim.close()
