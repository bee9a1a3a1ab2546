"""What the drivers put on the line: frames, function codes and values of every write."""

from __future__ import annotations

import pytest

from chargectl.config.schema import Device, TcpBus
from chargectl.drivers.bus import ModbusBus
from chargectl.drivers.evse import EvseDriver
from chargectl.drivers.pile import PileDriver, runs
from chargectl.runtime.clock import VirtualClock
from tests.drivers.fakes import Image, ScriptedClient, Sent, place, run_virtual
from tests.drivers.images import evse_hot


def rig(unit_image: Image | None = None) -> tuple[ModbusBus, ScriptedClient, VirtualClock]:
    clock = VirtualClock()
    client = ScriptedClient({1: unit_image or Image()})
    bus = ModbusBus(TcpBus("l", "127.0.0.1", 1), clock, client_factory=lambda: client)
    return bus, client, clock


def pile_rig(ports: int = 8) -> tuple[PileDriver, ScriptedClient, VirtualClock]:
    bus, client, clock = rig()
    return PileDriver(Device("p", "pile", "l", 1, "c", (1,), ports=ports), bus), client, clock


def test_runs_groups_contiguous_ports() -> None:
    assert runs({3: 1, 1: 1, 2: 0, 7: 1, 8: 0, 5: 1}) == [(1, [1, 0, 1]), (5, [1]), (7, [1, 0])]
    assert runs({}) == []


async def test_relays_go_out_as_contiguous_runs() -> None:
    pile, client, clock = pile_rig()
    frames = await run_virtual(clock, pile.write_relays({1: True, 2: True, 3: False, 7: True}))
    assert frames == 2
    assert client.sent == [Sent(16, 1, 16, [1, 1, 0]), Sent(6, 1, 22, [1])]


async def test_indicators_and_their_range() -> None:
    pile, client, clock = pile_rig()
    assert await run_virtual(clock, pile.write_indicators({8: 3, 4: 2, 5: 6})) == 2
    assert client.sent == [Sent(16, 1, 51, [2, 6]), Sent(6, 1, 55, [3])]
    with pytest.raises(ValueError, match=r"indicator must be 0\.\.7"):
        await pile.write_indicators({1: 8})
    with pytest.raises(ValueError, match=r"port must be 1\.\.8"):
        await pile.write_relays({9: True})
    with pytest.raises(ValueError, match=r"port must be 1\.\.8"):
        await pile.write_relays({0: False})
    assert len(client.sent) == 2


async def test_setup_is_one_frame_with_a_fresh_heartbeat() -> None:
    pile, client, clock = pile_rig(20)
    await run_virtual(clock, pile.setup(10, (1 << 19) | 0b101, 1800))
    assert client.sent == [Sent(16, 1, 0, [10, 1, 0x8, 0b101, 1800])]
    await run_virtual(clock, pile.heartbeat())
    await run_virtual(clock, pile.heartbeat())
    assert [s.payload for s in client.sent[1:]] == [[2], [3]]
    assert all(s.addr == 1 and s.function == 6 for s in client.sent[1:])


async def test_setup_defaults_the_cutoff_from_the_config_and_checks_ranges() -> None:
    pile, client, clock = pile_rig(4)
    await run_virtual(clock, pile.setup(10, 0))
    assert client.sent[0].payload == [10, 1, 0, 0, 2000]
    with pytest.raises(ValueError, match="bits beyond port 4"):
        await pile.setup(10, 1 << 4)
    with pytest.raises(ValueError, match=r"0\.\.3500"):
        await pile.setup(10, 0, 4000)
    with pytest.raises(ValueError, match="watchdog_s"):
        await pile.setup(-1, 0)
    await run_virtual(clock, pile.set_failsafe_mask(0b1010))
    assert client.sent[-1] == Sent(16, 1, 2, [0, 0b1010])


async def test_fault_reset_one_port_or_all() -> None:
    pile, client, clock = pile_rig(4)
    await run_virtual(clock, pile.fault_reset(3))
    await run_virtual(clock, pile.fault_reset())
    assert client.sent == [Sent(6, 1, 5, [3]), Sent(6, 1, 5, [0xFFFF])]
    with pytest.raises(ValueError):
        await pile.fault_reset(5)


async def test_evse_writes_and_the_setpoint_range() -> None:
    image = Image(input=place(evse_hot(hw_max=100)))  # the box says 10.0 A
    bus, client, clock = rig(image)
    wb = EvseDriver(Device("wb", "evse", "l", 1, "c", (1, 2, 3), max_current_a=16), bus)
    await run_virtual(clock, wb.setup(10, failsafe_current_a=6.0))
    assert client.sent[-1] == Sent(16, 1, 0, [10, 1, 0, 60])
    await run_virtual(clock, wb.set_current(12.34))
    assert client.sent[-1] == Sent(6, 1, 2, [123])
    await run_virtual(clock, wb.set_current(0))
    assert client.sent[-1] == Sent(6, 1, 2, [0])
    with pytest.raises(ValueError, match=r"0 or 6\.\.16"):
        await wb.set_current(5.9)
    hot = await run_virtual(clock, wb.read_hot())
    assert hot.hw_max_current_a == 10.0 and wb.max_current_a == 10.0
    with pytest.raises(ValueError, match=r"0 or 6\.\.10"):
        await wb.set_current(12)
    await run_virtual(clock, wb.set_indicator(2))
    await run_virtual(clock, wb.heartbeat())
    assert client.sent[-2:] == [Sent(6, 1, 4, [2]), Sent(6, 1, 1, [2])]
    image.holding[2] = 95
    assert await run_virtual(clock, wb.read_setpoint()) == pytest.approx(9.5)
