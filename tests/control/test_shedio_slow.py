"""The Modbus edge spreads the piles' slow blocks over slow_poll_s (an RS485 line cannot read
every pile's energy, power and temperature blocks in one tick)."""

from __future__ import annotations

from collections import Counter

from chargectl.adapters.modbus import ModbusShedIO
from chargectl.control.layout import build_layout
from chargectl.drivers.memory import MemoryClient
from chargectl.drivers.pile import PileDriver
from chargectl.runtime.clock import VirtualClock
from chargectl.sim.devices.evse import EvseModel
from chargectl.sim.devices.meter import MeterModel
from chargectl.sim.devices.pile import PileModel
from tests.control.sheds import two_row_shed


async def test_slow_blocks_come_due_pile_by_pile() -> None:
    shed = two_row_shed(ports=4)
    units = {d.unit: PileModel(d.ports) for d in shed.devices if d.kind == "pile"}
    units[3] = EvseModel(16.0, 1)
    units[10] = MeterModel("sdm120")
    io = ModbusShedIO(
        shed, build_layout(shed), VirtualClock(), {"line": lambda: MemoryClient(units)}
    )
    reads: Counter[float] = Counter()
    for drv in io.drivers.values():
        if isinstance(drv, PileDriver):
            original = drv.read_slow

            async def counted(original=original):  # type: ignore[no-untyped-def]
                reads[now] += 1
                return await original()

            drv.read_slow = counted  # type: ignore[method-assign]
    period = shed.control.slow_poll_s  # 10 s, two piles
    now = 0.0
    poll = await io.poll(now, slow=True)
    assert reads[0.0] == 2 and poll.counters_wh["pa/1"] == 0
    for t in range(1, 31):
        now = float(t)
        await io.poll(now, slow=False)
    per_tick = [reads[float(t)] for t in range(1, 31)]
    assert max(per_tick) == 1  # never both piles on one tick
    assert sum(per_tick) == 2 * 30 / period  # each pile once every slow_poll_s
