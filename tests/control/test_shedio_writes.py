"""The Modbus edge when writes fail and lines are slow (issue 8): nothing it did not confirm is
taken as written, masks move shrink-first across lines, and a slow line is a late line."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Sequence
from typing import TypeVar

import numpy as np

from chargectl.adapters.modbus import ModbusShedIO
from chargectl.config.schema import ControlSettings, Shed, TcpBus
from chargectl.control.layout import build_layout
from chargectl.control.observe import Decision
from chargectl.drivers.memory import MemoryClient, RegisterModel
from chargectl.runtime.clock import VirtualClock
from chargectl.sim.devices.evse import EvseModel
from chargectl.sim.devices.meter import MeterModel
from chargectl.sim.devices.pile import PileModel
from tests.control.sheds import two_row_shed

T = TypeVar("T")
MASK_REG = 2  # holding 2..3: failsafe_mask
RELAY_REG = 16  # holding 16..: relay_cmd
LOG: list[tuple[str, int, int, tuple[int, ...]]] = []


class Line(MemoryClient):
    """A memory line that can refuse writes to a register range and answer slowly."""

    def __init__(self, name: str, units: dict[int, RegisterModel], clock: VirtualClock) -> None:
        super().__init__(units)
        self.name = name
        self.clock = clock
        self.refuse: dict[int, tuple[int, int]] = {}  # unit -> (addr, count)
        self.delay_s: dict[int, float] = {}

    async def read(self, function: int, unit: int, addr: int, count: int) -> list[int] | int:
        if self.delay_s.get(unit):
            await self.clock.sleep(self.delay_s[unit])
        return await super().read(function, unit, addr, count)

    async def write(self, function: int, unit: int, addr: int, values: Sequence[int]) -> int | None:
        if self.delay_s.get(unit):
            await self.clock.sleep(self.delay_s[unit])
        lo, n = self.refuse.get(unit, (0, 0))
        if lo < addr + len(values) and addr < lo + n:
            return 4  # SLAVE DEVICE FAILURE: nothing changes
        LOG.append((self.name, unit, addr, tuple(values)))
        return await super().write(function, unit, addr, values)


async def run_virtual(clock: VirtualClock, aw: Awaitable[T]) -> T:
    """Run `aw`, moving virtual time to the next sleeper only once nothing else can run (many
    loop turns: several lines' requests go on at once and must not look idle)."""
    task = asyncio.ensure_future(aw)
    while not task.done():
        for _ in range(500):
            await asyncio.sleep(0)
            if task.done():
                return task.result()
        deadline = clock.next_deadline()
        assert deadline is not None, "stuck: nothing to wait for on the virtual clock"
        clock.advance(max(0.0, deadline - clock.now()))
    return task.result()


def two_lines(tick_s: float = 1.0) -> Shed:
    """The two-row shed with pile b on a line of its own."""
    shed = two_row_shed(
        ports=4,
        row_limit=30.0,
        main_limit=40.0,
        port_power_limit_w=1000,
        control=ControlSettings(tick_s=tick_s),
    )
    devices = tuple(
        dataclasses.replace(d, bus="line-b") if d.id == "pb" else d for d in shed.devices
    )
    buses = (*shed.buses, TcpBus("line-b", "127.0.0.1", 5021))
    return dataclasses.replace(shed, devices=devices, buses=buses)


def rig(shed: Shed) -> tuple[ModbusShedIO, dict[str, Line], dict[str, PileModel], VirtualClock]:
    clock = VirtualClock()
    piles = {"pa": PileModel(4), "pb": PileModel(4)}
    units: dict[str, dict[int, RegisterModel]] = {b.id: {} for b in shed.buses}
    for d in shed.devices:
        model = piles.get(d.id) or (
            EvseModel(16.0, 1) if d.kind == "evse" else MeterModel("sdm120")
        )
        units[d.bus][d.unit] = model
    lines = {b: Line(b, u, clock) for b, u in units.items()}
    io = ModbusShedIO(
        shed, build_layout(shed), clock, {b: (lambda c=c: c) for b, c in lines.items()}
    )
    return io, lines, piles, clock


def decision(io: ModbusShedIO, masks: dict[str, int], on: Sequence[str] = ()) -> Decision:
    lay = io.layout
    b, c = lay.n_bays, lay.n_circuits
    relay_on = np.array([bay.id in on for bay in lay.bays])
    z3 = np.zeros((c, 3))
    return Decision(
        relay_on=relay_on,
        setpoint_a=np.where(relay_on, 2.5, 0.0),
        circuit_current_a=z3,
        limit_a=z3,
        planned_a=z3,
        binding=z3.astype(bool),
        infeasible=z3.astype(bool),
        overloaded=np.zeros(c, dtype=bool),
        new_overloads=np.zeros(c, dtype=bool),
        thermal_ratio=np.zeros(c),
        unmanaged_a=z3,
        bay_state=("idle",) * b,
        failsafe_mask=masks,
        welded=np.zeros(b, dtype=bool),
        alarm=None,
    )


async def tick(io: ModbusShedIO, clock: VirtualClock, d: Decision) -> None:
    await run_virtual(clock, io.poll(clock.now(), slow=False))
    await run_virtual(clock, io.apply(d, {}))
    clock.advance(1.0)


def mask_of(pile: PileModel) -> int:
    hi, lo = pile.read_holding(MASK_REG, 2)  # type: ignore[misc]
    return (hi << 16) | lo


async def test_a_device_never_read_may_hold_any_mask() -> None:
    io, _, _, clock = rig(two_lines())
    poll = await run_virtual(clock, io.poll(0.0, slow=True))
    assert poll.observation.failsafe_on is not None
    assert poll.observation.failsafe_on[io.layout.pile_slices["pa"]].all()  # not set up yet
    await run_virtual(clock, io.setup())
    poll = await run_virtual(clock, io.poll(1.0, slow=False))
    assert not poll.observation.failsafe_on.any()  # masks of 0 confirmed, wallbox at 0 A


async def test_a_refused_mask_write_is_retried_and_holds_back_every_new_bit() -> None:
    io, lines, piles, clock = rig(two_lines())
    await run_virtual(clock, io.setup())
    await tick(io, clock, decision(io, {"pa": 0b11, "pb": 0b00}, on=["pa/1", "pa/2"]))
    assert (mask_of(piles["pa"]), mask_of(piles["pb"])) == (0b11, 0b00)

    # The budget moves from pile a to pile b; pile a refuses the write.
    lines["line"].refuse[1] = (MASK_REG, 2)
    d = decision(io, {"pa": 0b00, "pb": 0b11}, on=["pb/1", "pb/2"])
    await tick(io, clock, d)
    assert (mask_of(piles["pa"]), mask_of(piles["pb"])) == (0b11, 0b00)  # b waits for a
    obs = (await run_virtual(clock, io.poll(clock.now(), slow=False))).observation
    assert obs.failsafe_on is not None
    assert obs.failsafe_on[io.layout.pile_slices["pa"]].tolist() == [True, True, False, False]

    lines["line"].refuse.clear()  # it answers again: the shrink goes out, then the grow
    await tick(io, clock, d)
    assert (mask_of(piles["pa"]), mask_of(piles["pb"])) == (0b00, 0b11)
    obs = (await run_virtual(clock, io.poll(clock.now(), slow=False))).observation
    assert obs.failsafe_on[io.layout.pile_slices["pb"]].tolist() == [True, True, False, False]
    assert not obs.failsafe_on[io.layout.pile_slices["pa"]].any()


async def test_masks_change_shrink_first_across_lines() -> None:
    io, _, _, clock = rig(two_lines())
    await run_virtual(clock, io.setup())
    await tick(io, clock, decision(io, {"pa": 0b11, "pb": 0b00}))
    LOG.clear()
    # pile a (line) shrinks, pile b (line-b) grows, and pile a's 0b11 -> 0b10 both
    await tick(io, clock, decision(io, {"pa": 0b10, "pb": 0b01}))
    masks = [(line, unit, vals) for line, unit, addr, vals in LOG if addr == MASK_REG]
    assert masks == [("line", 1, (0, 0b10)), ("line-b", 2, (0, 0b01))]


async def test_a_failed_open_is_reported_unsure_and_sent_again() -> None:
    io, lines, piles, clock = rig(two_lines())
    await run_virtual(clock, io.setup())
    await tick(io, clock, decision(io, {"pa": 0, "pb": 0}, on=["pa/1"]))
    assert piles["pa"].read_holding(RELAY_REG, 1) == [1]
    lines["line"].refuse[1] = (RELAY_REG, 4)
    d = decision(io, {"pa": 0, "pb": 0}, on=["pb/1"])
    await tick(io, clock, d)
    assert piles["pa"].read_holding(RELAY_REG, 1) == [1]
    # the raise elsewhere waits: the plan counted on the open
    assert piles["pb"].read_holding(RELAY_REG, 1) == [0]
    obs = (await run_virtual(clock, io.poll(clock.now(), slow=False))).observation
    assert obs.command_unsure is not None
    assert obs.command_unsure[io.layout.bay_index["pa/1"]]
    lines["line"].refuse.clear()
    await tick(io, clock, d)
    assert piles["pa"].read_holding(RELAY_REG, 1) == [0]
    assert piles["pb"].read_holding(RELAY_REG, 1) == [1]
    obs = (await run_virtual(clock, io.poll(clock.now(), slow=False))).observation
    assert not obs.command_unsure.any()


async def test_a_slow_line_is_a_late_line_not_a_late_tick() -> None:
    shed = two_lines(tick_s=0.5)
    io, lines, _, clock = rig(shed)
    await run_virtual(clock, io.setup())
    lines["line-b"].delay_s[2] = 0.42  # pile b answers in 0.42 s, inside its 0.5 s timeout
    t0 = clock.now()
    poll = await run_virtual(clock, io.poll(t0, slow=False))
    took = clock.now() - t0
    assert took <= 0.6 * shed.control.tick_s + 1e-9  # the poll budget, not the slow device
    up = poll.observation.bay_up
    assert up[io.layout.pile_slices["pa"]].all()  # the other line is seen
    assert not up[io.layout.pile_slices["pb"]].any()  # the late one counts as unseen
    assert "line-b" in io.busy
    clock.advance(0.5 - took)
    poll = await run_virtual(clock, io.poll(clock.now(), slow=False))
    # the late reading (started a tick ago) serves this tick
    assert poll.observation.bay_up[io.layout.pile_slices["pb"]].all()
    assert io.up["pb"]  # late is not down: no set-up again, no error


async def test_a_tap_made_while_a_pile_blipped_is_still_served() -> None:
    io, lines, piles, clock = rig(two_lines())
    await run_virtual(clock, io.setup())
    await tick(io, clock, decision(io, {"pa": 0, "pb": 0}))  # taps seen: the baseline
    lines["line"].delay_s[1] = 0.8  # pile a misses one read (0.5 s timeout)
    poll = await run_virtual(clock, io.poll(clock.now(), slow=False))
    assert not io.up["pa"]
    lines["line"].delay_s.clear()
    piles["pa"].tap(3, bytes.fromhex("04A1B2C3"))  # someone taps meanwhile
    clock.advance(1.0)
    poll = await run_virtual(clock, io.poll(clock.now(), slow=False))
    assert io.up["pa"]
    assert [(t.bay, t.uid_hex) for t in poll.taps] == [("pa/3", "04A1B2C3")]
