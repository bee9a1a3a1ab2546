"""Per-field validity through the drivers and the bus: a bad non-critical register is one bad
field, counted and logged once; the unit stays up and keeps taking writes (heartbeats). A bad
critical register still fails the reading."""

from __future__ import annotations

import logging

import pytest

from chargectl.config.schema import Device, TcpBus
from chargectl.drivers.bus import ModbusBus
from chargectl.drivers.errors import BadValue
from chargectl.drivers.evse import EvseDriver
from chargectl.drivers.pile import PileDriver
from chargectl.runtime.clock import VirtualClock
from tests.drivers.fakes import Image, ScriptedClient, place, run_virtual
from tests.drivers.images import evse_hot, pile_hot, with_tap

PILE, BOX = 1, 2


def rig() -> tuple[PileDriver, EvseDriver, Image, Image, ScriptedClient, VirtualClock]:
    clock = VirtualClock()
    pile_image = Image(input=place(pile_hot(4)), holding=place([0] * 64))
    box_image = Image(input=place(evse_hot()), holding=place([0] * 5))
    client = ScriptedClient({PILE: pile_image, BOX: box_image})
    bus = ModbusBus(TcpBus("l", "127.0.0.1", 1), clock, client_factory=lambda: client)
    pile = PileDriver(Device("p", "pile", "l", PILE, "c", (1,), ports=4), bus)
    box = EvseDriver(Device("w", "evse", "l", BOX, "c", (1, 2, 3), max_current_a=32.0), bus)
    return pile, box, pile_image, box_image, client, clock


async def test_a_bad_tap_and_cabinet_temperature_leave_the_pile_up_and_beating(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pile, _box, image, _bimage, client, clock = rig()
    image.input.update(place(with_tap(pile_hot(4, temp=0x7FFF), 3, 9, b"\x01\x02\x03\x04")))
    caplog.set_level(logging.INFO, "chargectl.drivers.bus")
    for _ in range(3):
        hot = await run_virtual(clock, pile.read_hot())
        assert hot.tap is None and hot.tap_bad and hot.temperature_c is None
        assert hot.current_a == pytest.approx((1.0, 2.0, 3.0, 4.0))
        await run_virtual(clock, pile.heartbeat())
    health = pile._bus.health(PILE)
    assert health.up and health.errors == {} and health.consecutive_failures == 0
    assert health.bad_fields == {"tap": 3, "temperature_c": 3}
    assert [s.function for s in client.sent] == [4, 6] * 3  # read, heartbeat, every time
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # each field logged once, not once per read
    assert "p (l unit 1): tap (register 7): bad value 1033: tap port 9 outside 1..4" in warnings

    image.input.update(place(pile_hot(4)))  # good again
    hot = await run_virtual(clock, pile.read_hot())
    assert hot.bad == () and hot.temperature_c == pytest.approx(25.3)
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos == ["p (l unit 1): tap good again", "p (l unit 1): temperature_c good again"]


async def test_a_bad_slow_field_does_not_hide_the_hot_ones_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Hot and slow readings are separate scopes: a good slow read says nothing of the tap."""
    pile, _box, image, _bimage, _client, clock = rig()
    image.input.update(place(with_tap(pile_hot(4), 1, 7, b"\x01\x02\x03\x04")))
    image.input.update(place([0] * 8, 100) | place([0, 0xFFFF, 0, 0], 200) | place([0] * 4, 240))
    caplog.set_level(logging.INFO, "chargectl.drivers.bus")
    await run_virtual(clock, pile.read_hot())
    slow = await run_virtual(clock, pile.read_slow())
    assert slow.power_w == (0, None, 0, 0) and slow.energy_wh == (0, 0, 0, 0)
    await run_virtual(clock, pile.read_hot())
    assert not [r for r in caplog.records if r.levelno == logging.INFO]
    assert pile._bus.health(PILE).bad_fields == {"tap": 2, "power_w[2]": 1}


async def test_a_bad_critical_register_still_fails_the_reading() -> None:
    pile, box, image, bimage, _client, clock = rig()
    image.input.update(place(pile_hot(4, states=[0, 0, 0x0901, 0])))
    with pytest.raises(BadValue, match="unknown fault 9"):
        await run_virtual(clock, pile.read_hot())
    bimage.input.update(place(evse_hot(cp_state=0x7FFF)))
    with pytest.raises(BadValue, match="cp_state"):
        await run_virtual(clock, box.read_hot())
    assert pile._bus.health(PILE).errors == {"BadValue": 1}
    assert pile._bus.health(BOX).errors == {"BadValue": 1}


async def test_a_bad_hardware_maximum_keeps_the_last_good_one() -> None:
    _pile, box, _image, bimage, _client, clock = rig()
    await run_virtual(clock, box.read_hot())
    assert box.max_current_a == pytest.approx(16.0)  # the box's 16 A under the config's 32
    bimage.input.update(place(evse_hot(hw_max=0xFFFF)))
    hot = await run_virtual(clock, box.read_hot())
    assert hot.hw_max_current_a is None and box.max_current_a == pytest.approx(16.0)
    with pytest.raises(ValueError, match=r"6\.\.16"):
        await run_virtual(clock, box.set_current(20.0))  # never above the last good maximum
