"""A third-party client, libmodbus `mbpoll` (the Debian package), reads and writes the
simulator exactly as ../shared/hardware/ says. -0 selects 0-based PDU addresses."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from chargectl.sim.devices.evse import EvseModel
from chargectl.sim.devices.meter import MeterModel
from chargectl.sim.devices.pile import PileModel
from chargectl.sim.server import BusServer
from tests.sim_devices.conftest import ABSENT, EVSE, PILE, SDM630, make_server
from tests.sim_devices.simdev_helpers import run_pile

pytestmark = pytest.mark.timeout(60)

MBPOLL = shutil.which("mbpoll") or "mbpoll"  # missing: the test fails (make test installs it)
LINE = re.compile(r"^\[(\d+)\]:\s+(\S+)", re.MULTILINE)


@dataclass
class Result:
    rc: int
    values: dict[int, str]
    stderr: str


@dataclass
class Rig:
    server: BusServer
    pile: PileModel
    evse: EvseModel
    sdm630: MeterModel
    tcp: list[str]  # mbpoll arguments reaching the TCP endpoint
    rtu: list[str]  # ... and the RTU link


async def mbpoll(*args: str) -> Result:
    proc = await asyncio.create_subprocess_exec(
        MBPOLL, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    values = {int(a): v for a, v in LINE.findall(out.decode())}
    assert proc.returncode is not None
    return Result(proc.returncode, values, err.decode())


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    server, pile, evse, m3, _ = make_server()
    port = await server.serve_tcp("127.0.0.1", 0)
    link = str(tmp_path / "ttyMB")
    await server.serve_rtu(link)
    tcp = ["-m", "tcp", "-p", str(port), "-0", "-1", "-o", "0.5"]
    rtu = ["-m", "rtu", "-b", "19200", "-P", "none", "-0", "-1", "-o", "0.5"]
    try:
        yield Rig(server, pile, evse, m3, [*tcp, "127.0.0.1"], [*rtu, link])
    finally:
        await server.close()


def ints(result: Result) -> list[int]:
    assert result.rc == 0, result.stderr
    return [int(v) for _, v in sorted(result.values.items())]


async def test_mbpoll_reads_the_pile_hot_block_over_tcp(rig: Rig) -> None:
    rig.pile.write_holding(16, [1, 1])
    run_pile(rig.pile, 0.0, 0.1, amps=1.25, watts=250.0, supply_v=219.9, cabinet_c=33.3)
    r = await mbpoll(*rig.tcp[:-1], "-a", str(PILE), "-t", "3", "-r", "0", "-c", "20", rig.tcp[-1])
    regs = ints(r)
    assert sorted(r.values) == list(range(20))  # 0-based addresses, as on the pages
    assert regs[0:6] == [0x4350, 1, 12, 0, 333, 2199]
    assert regs[13] == 250  # 2.50 A
    assert regs[16:20] == [1250, 1250, 0, 0]


async def test_mbpoll_signed_and_32_bit_values(rig: Rig) -> None:
    rig.pile.write_holding(16, [1])
    rig.pile.set_energy_wh(1, 70000.0)
    run_pile(rig.pile, 0.0, 0.1, temp=-12.5)
    r = await mbpoll(*rig.tcp[:-1], "-a", "1", "-t", "3:int", "-B", "-r", "100", rig.tcp[-1])
    assert ints(r) == [70000]
    r = await mbpoll(*rig.tcp[:-1], "-a", "1", "-t", "3", "-r", "240", rig.tcp[-1])
    assert r.rc == 0 and r.values[240].startswith(str(0x10000 - 125))  # shown as u16 (-125)


async def test_mbpoll_reads_meter_floats(rig: Rig) -> None:
    rig.sdm630.update([230.5, 231.0, 229.5], [1.0, 2.0, 3.0], [230.0, 460.0, 690.0], 50.0, 12.5)
    args = [*rig.tcp[:-1], "-a", str(SDM630), "-t", "3:float", "-B"]
    r = await mbpoll(*args, "-r", "0", "-c", "3", rig.tcp[-1])
    assert r.rc == 0, r.stderr
    assert {a: float(v) for a, v in r.values.items()} == {0: 230.5, 2: 231.0, 4: 229.5}
    r = await mbpoll(*args, "-r", "52", rig.tcp[-1])
    assert float(r.values[52]) == 1380.0


async def test_mbpoll_writes_relays_and_reads_them_back(rig: Rig) -> None:
    r = await mbpoll(*rig.tcp[:-1], "-a", "1", "-t", "4", "-r", "16", rig.tcp[-1], "1", "0", "1")
    assert r.rc == 0, r.stderr
    assert rig.pile.contact_closed()[:3].tolist() == [True, False, True]
    r = await mbpoll(*rig.tcp[:-1], "-a", "1", "-t", "4", "-r", "16", "-c", "3", rig.tcp[-1])
    assert ints(r) == [1, 0, 1]


async def test_mbpoll_sees_exceptions_02_and_03(rig: Rig) -> None:
    r = await mbpoll(*rig.tcp[:-1], "-a", "1", "-t", "3", "-r", "80", rig.tcp[-1])
    assert r.rc != 0 and "Illegal data address" in r.stderr
    r = await mbpoll(*rig.tcp[:-1], "-a", "1", "-t", "4", "-r", "16", rig.tcp[-1], "2")
    assert r.rc != 0 and "Illegal data value" in r.stderr
    r = await mbpoll(*rig.tcp[:-1], "-a", str(EVSE), "-t", "4", "-r", "2", rig.tcp[-1], "59")
    assert r.rc != 0 and "Illegal data value" in r.stderr
    assert not rig.pile.contact_closed().any() and rig.evse.offered_a() == 0.0


async def test_mbpoll_absent_unit_times_out(rig: Rig) -> None:
    r = await mbpoll(*rig.tcp[:-1], "-a", str(ABSENT), "-t", "3", "-r", "0", rig.tcp[-1])
    assert r.rc != 0 and "timed out" in r.stderr
    assert rig.server.answered[ABSENT] == 0


async def test_mbpoll_over_rtu(rig: Rig) -> None:
    r = await mbpoll(*rig.rtu[:-1], "-a", str(EVSE), "-t", "3", "-r", "0", "-c", "3", rig.rtu[-1])
    assert ints(r) == [0x4556, 1, 1]
    r = await mbpoll(*rig.rtu[:-1], "-a", str(EVSE), "-t", "4", "-r", "2", rig.rtu[-1], "120", "60")
    assert r.rc == 0, r.stderr
    assert rig.evse.offered_a() == 12.0
    rig.evse.step(0.1, 0.1, 2, np.array([11.9, 11.8, 11.7]), 7800.0, 30.0)
    r = await mbpoll(*rig.rtu[:-1], "-a", str(EVSE), "-t", "3", "-r", "2", "-c", "5", rig.rtu[-1])
    assert ints(r) == [3, 0, 1190, 1180, 1170]
    r = await mbpoll(*rig.rtu[:-1], "-a", str(ABSENT), "-t", "3", "-r", "0", rig.rtu[-1])
    assert r.rc != 0 and "timed out" in r.stderr
