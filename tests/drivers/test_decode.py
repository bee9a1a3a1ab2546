"""Pure decoding of pile and wallbox register images: every field, and every kind of value
outside physical sense refused with the device and the register named: a critical field
fails the reading, a non-critical one is None and listed as bad."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargectl.drivers.counters import CounterMemory
from chargectl.drivers.errors import BadValue
from chargectl.drivers.readings import FAULT_OVER_POWER, FAULT_WELDED, Tap
from tests.drivers.contract import evse, pile
from tests.drivers.images import evse_hot, pile_hot, with_tap


def test_pile_hot_decodes_every_field() -> None:
    image = pile_hot(
        4,
        currents_ma=[0, 2250, 63000, 15],
        states=[0, 0b11, 0b01 | (FAULT_OVER_POWER << 8), 0b10 | (FAULT_WELDED << 8)],
        status=0b10101,
        watchdog=7,
    )
    image = with_tap(image, 9, 3, bytes.fromhex("04a1b2c3d4e5f6"))
    hot = pile.decode_hot("pile-a", 4, image[: pile.hot_count(4)])
    assert (hot.failsafe, hot.smoke, hot.over_temp, hot.supply_fault, hot.estop) == (
        True, False, True, False, True,
    )  # fmt: skip
    assert hot.alarm == "estop"
    assert hot.temperature_c == pytest.approx(25.3) and hot.voltage_v == pytest.approx(220.1)
    assert hot.tap == Tap(seq=9, port=3, uid="04A1B2C3D4E5F6")
    assert hot.watchdog_remaining_s == 7
    assert hot.current_a == pytest.approx((0.0, 2.25, 63.0, 0.015))
    assert hot.pile_current_a == pytest.approx(65.26)
    assert hot.relay_closed == (False, True, True, False)
    assert hot.load_present == (False, True, False, True)
    assert hot.fault == (0, 0, FAULT_OVER_POWER, FAULT_WELDED)


def test_pile_hot_read_is_one_request_that_covers_what_n_needs() -> None:
    assert pile.hot_count(1) == 49 and pile.hot_count(20) == 68 and pile.hot_count(32) == 80


@pytest.mark.parametrize(
    ("uid", "expected"),
    [
        (bytes.fromhex("deadbeef"), "DEADBEEF"),
        (bytes.fromhex("0102030405060708"), "0102030405060708"),
        (bytes.fromhex("00000001"), "00000001"),  # leading zero bytes inside the UID are kept
    ],
)
def test_tap_uid_lengths(uid: bytes, expected: str) -> None:
    hot = pile.decode_hot("p", 2, with_tap(pile_hot(2), 1, 2, uid)[:50])
    assert hot.tap is not None and hot.tap.uid == expected and hot.tap.port == 2


def test_no_tap_yet_is_none() -> None:
    assert pile.decode_hot("p", 2, pile_hot(2)[:50]).tap is None


def _broken_uid_padding() -> list[int]:
    image = with_tap(pile_hot(4), 3, 1, bytes.fromhex("a1b2c3d4"))
    image[8] = 0x0100  # a stray byte left of a 4-byte UID
    return image


@pytest.mark.parametrize(
    ("image", "register", "why"),
    [
        (pile_hot(4, model=0x4556), 0, "model id"),
        (pile_hot(4, version=2), 1, "protocol version"),
        (pile_hot(4, port_count=12), 2, "port count"),
        (pile_hot(4, status=0x0020), 3, "bits above bit4"),
        (pile_hot(4, status=0xFFFF), 3, "bits above bit4"),
        (pile_hot(4, currents_ma=[0, 63001, 0, 0]), 17, "port 2 current"),
        (pile_hot(4, currents_ma=[0, 0, 0, 0xFFFF]), 19, "port 4 current"),
        (pile_hot(4, states=[0, 0, 5 << 8, 0]), 50, "unknown fault 5"),
        (pile_hot(4, states=[0xFFFF, 0, 0, 0]), 48, "unknown fault 255"),
        (pile_hot(4, states=[0, 0b100, 0, 0]), 49, "bits 2..7"),
    ],
)
def test_pile_hot_refuses_a_bad_critical_value(image: list[int], register: int, why: str) -> None:
    with pytest.raises(BadValue, match=why) as info:
        pile.decode_hot("pile-a", 4, image[:52])
    assert info.value.register == register
    assert str(info.value).startswith(f"pile-a register {register}:")


@pytest.mark.parametrize(
    ("image", "field", "register", "why"),
    [
        (pile_hot(4, pile_current=0xFFFF), "pile_current_a", 13, "pile current"),
        (pile_hot(4, temp=0x7FFF), "temperature_c", 4, "cabinet temperature"),
        (pile_hot(4, temp=0x8000), "temperature_c", 4, "cabinet temperature"),
        (pile_hot(4, voltage=6000), "voltage_v", 5, "supply voltage"),
        (with_tap(pile_hot(4), 1, 5, b"\x01\x02\x03\x04"), "tap", 7, "tap port 5"),
        (with_tap(pile_hot(4), 1, 0, b"\x01\x02\x03\x04"), "tap", 7, "tap port 0"),
        (with_tap(pile_hot(4), 1, 1, b"\x01\x02\x03\x04\x05"), "tap", 7, "UID length 5"),
        (_broken_uid_padding(), "tap", 8, "zero-padded"),
    ],
)
def test_pile_hot_marks_a_bad_noncritical_field_and_keeps_the_rest(
    image: list[int], field: str, register: int, why: str
) -> None:
    hot = pile.decode_hot("pile-a", 4, image[:52])
    assert getattr(hot, field) is None  # never a plausible stand-in
    assert [(b.name, b.register) for b in hot.bad] == [(field, register)]
    assert why in hot.bad[0].why and str(hot.bad[0]).startswith(f"{field} (register {register})")
    assert hot.tap_bad == (field == "tap")
    # Every critical field is still there, exactly as served.
    good = pile.decode_hot("pile-a", 4, pile_hot(4)[:52])
    assert (hot.current_a, hot.relay_closed, hot.fault) == (
        good.current_a,
        good.relay_closed,
        good.fault,
    )
    assert (hot.smoke, hot.estop, hot.failsafe) == (good.smoke, good.estop, good.failsafe)


def test_every_noncritical_pile_field_bad_at_once_is_still_a_reading() -> None:
    image = with_tap(pile_hot(4, temp=0x7FFF, voltage=0xFFFF, pile_current=0xFFFF), 1, 9, b"ab")
    hot = pile.decode_hot("p", 4, image[:52])
    assert (hot.temperature_c, hot.voltage_v, hot.tap, hot.pile_current_a) == (None,) * 4
    assert [b.name for b in hot.bad] == ["temperature_c", "voltage_v", "tap", "pile_current_a"]
    assert hot.current_a == pytest.approx((1.0, 2.0, 3.0, 4.0))


def test_a_good_no_tap_is_none_and_not_bad() -> None:
    hot = pile.decode_hot("p", 2, pile_hot(2)[:50])
    assert hot.tap is None and hot.bad == () and not hot.tap_bad


def test_pile_slow_decodes_energy_power_and_temperatures() -> None:
    energy = [0, 10, 1, 0, 0xFFFF, 0xFFFF]  # 10, 65536, 2**32 - 1 Wh
    slow = pile.decode_slow("p", 3, energy, [0, 450, 1999], [200, 0xFFF6, 650])
    assert slow.energy_wh == (10, 65536, 2**32 - 1)
    assert slow.power_w == (0, 450, 1999)
    assert slow.temperature_c == pytest.approx((20.0, -1.0, 65.0))


@pytest.mark.parametrize(
    ("power", "temps", "field", "register"),
    [
        ([0, 20001], [0, 0], "power_w[2]", 201),
        ([0, 0], [0, 1600], "temperature_c[2]", 241),
        ([0, 0], [0xFC00, 0], "temperature_c[1]", 240),
        ([0, 0], [0x7FFF, 0], "temperature_c[1]", 240),
        ([0, 0], [0, 0x8000], "temperature_c[2]", 241),
    ],
)
def test_pile_slow_marks_a_bad_field(
    power: list[int], temps: list[int], field: str, register: int
) -> None:
    slow = pile.decode_slow("p", 2, [0, 0, 0, 5], power, temps)
    assert [(b.name, b.register) for b in slow.bad] == [(field, register)]
    name, port = field.split("[")
    values = getattr(slow, name)
    k = int(port[:-1]) - 1
    assert values[k] is None and all(v is not None for i, v in enumerate(values) if i != k)
    assert slow.energy_wh == (0, 5)


def test_pile_slow_counter_backwards_is_that_port_bad_then_followed() -> None:
    mem = CounterMemory("p")
    slow = pile.decode_slow("p", 2, [0, 10, 0, 20], [0, 0], [0, 0], counters=mem)
    assert slow.energy_wh == (10, 20) and slow.bad == ()
    slow = pile.decode_slow("p", 2, [0, 11, 0, 19], [0, 0], [0, 0], counters=mem)
    assert slow.energy_wh == (11, None)
    assert [(b.name, b.register) for b in slow.bad] == [("energy_wh[2]", 102)]
    slow = pile.decode_slow("p", 2, [0, 12, 0, 19], [0, 0], [0, 0], counters=mem)
    assert slow.energy_wh == (12, 19) and slow.bad == ()  # the memory followed the reset


def test_counters_wrap_forward_and_catch_backwards_once() -> None:
    mem = CounterMemory("pile-a")
    mem.check({100: 2**32 - 5, 102: 7})
    mem.check({100: 3, 102: 7})  # wrapped: 8 Wh forward
    with pytest.raises(BadValue, match="backwards from 7") as info:
        mem.check({100: 4, 102: 6})
    assert info.value.register == 102
    mem.check({100: 5, 102: 6})  # reported once, then followed (a reset counter)
    mem.check({100: 5, 102: 8})


def test_float_counter_backwards() -> None:
    mem = CounterMemory("m")
    mem.check_float(72, 10.5)
    mem.check_float(72, 10.5)
    with pytest.raises(BadValue, match="backwards"):
        mem.check_float(72, 10.4)


def test_evse_hot_decodes_every_field() -> None:
    image = evse_hot(status=0b1001, watchdog=4)
    image[14], image[15] = 2, (7 << 8) | 1
    image[16:20] = [0x0001, 0x0203, 0x0405, 0x0607]
    hot = evse.decode_hot("wb-1", 3, image)
    assert hot.cp_state == 3 and hot.cp_letter == "C" and hot.charging and hot.vehicle_connected
    assert hot.failsafe and hot.contactor_welded and not hot.rcd_trip and not hot.over_temp
    assert hot.faulted
    assert hot.current_a == pytest.approx((10.0, 10.1, 9.9))
    assert hot.power_w == 6600 and hot.energy_wh == 65536 + 0x2345
    assert hot.temperature_c == pytest.approx(31.2)
    assert hot.phases == 3 and hot.hw_max_current_a == pytest.approx(16.0)
    assert hot.tap == Tap(seq=2, port=1, uid="01020304050607")
    assert hot.watchdog_remaining_s == 4


@pytest.mark.parametrize(
    ("regs", "register", "why"),
    [
        ({"model": 0x4350}, 0, "model id"),
        ({"cp_state": 0}, 2, "cp_state"),
        ({"cp_state": 7}, 2, "cp_state"),
        ({"cp_state": 0xFFFF}, 2, "cp_state"),
        ({"status": 0x10}, 3, "bits above bit3"),
        ({"status": 0xFFFF}, 3, "bits above bit3"),
        ({"l2": 10001}, 5, "L2 current"),
        ({"l1": 0xFFFF}, 4, "L1 current"),
        ({"phases": 2}, 12, "1 or 3"),
        ({"phases": 1}, 12, "config wires 3"),
    ],
)
def test_evse_hot_refuses_a_bad_critical_value(
    regs: dict[str, int], register: int, why: str
) -> None:
    with pytest.raises(BadValue, match=why) as info:
        evse.decode_hot("wb-1", 3, evse_hot(**regs))
    assert info.value.register == register


@pytest.mark.parametrize(
    ("regs", "field", "register", "why"),
    [
        ({"hw_max": 0xFFFF}, "hw_max_current_a", 13, "hardware maximum"),
        ({"hw_max": 50}, "hw_max_current_a", 13, "hardware maximum"),
        ({"power_hi": 2, "power_lo": 0}, "power_w", 7, "power"),
        ({"temp": 0x9000}, "temperature_c", 11, "temperature"),
        ({"temp": 0x7FFF}, "temperature_c", 11, "temperature"),
        ({"tap_seq": 1, "tap_info": (4 << 8) | 2}, "tap", 15, "tap port 2"),
        ({"tap_seq": 1, "tap_info": 0xFFFF}, "tap", 15, "UID length 255"),
    ],
)
def test_evse_hot_marks_a_bad_noncritical_field(
    regs: dict[str, int], field: str, register: int, why: str
) -> None:
    hot = evse.decode_hot("wb-1", 3, evse_hot(**regs))
    assert getattr(hot, field) is None
    assert [(b.name, b.register) for b in hot.bad] == [(field, register)]
    assert why in hot.bad[0].why
    assert hot.cp_state == 3 and hot.current_a == pytest.approx((10.0, 10.1, 9.9))


def test_evse_energy_backwards_is_a_bad_field() -> None:
    mem = CounterMemory("wb")
    assert evse.decode_hot("wb", 3, evse_hot(), mem).energy_wh == 65536 + 0x2345
    hot = evse.decode_hot("wb", 3, evse_hot(energy_hi=0), mem)
    assert hot.energy_wh is None and [b.name for b in hot.bad] == ["energy_wh"]


def test_evse_setpoint_rounds_down() -> None:
    assert evse.deci_amps(6.0) == 60
    assert evse.deci_amps(10.29) == 102
    assert evse.deci_amps(15.999) == 159


words = st.integers(0, 0xFFFF)


@given(ports=st.integers(1, 32), image=st.lists(words, min_size=80, max_size=80))
def test_any_pile_hot_image_decodes_or_is_a_bad_value(ports: int, image: list[int]) -> None:
    image[0], image[1], image[2] = pile.MODEL, pile.PROTOCOL, ports  # get past the identity
    try:
        hot = pile.decode_hot("p", ports, image[: pile.hot_count(ports)])
    except BadValue as err:
        assert err.device == "p" and err.register is not None
        return
    assert len(hot.current_a) == ports and all(0 <= a <= 63 for a in hot.current_a)
    assert set(hot.fault) <= {0, 1, 2, 3, 4}
    bad = {b.name for b in hot.bad}
    for name in ("temperature_c", "voltage_v", "pile_current_a"):
        assert (getattr(hot, name) is None) == (name in bad)  # None only when listed bad
    assert hot.temperature_c is None or -55 <= hot.temperature_c <= 155
    assert hot.tap is None or 1 <= hot.tap.port <= ports


@given(image=st.lists(words, min_size=21, max_size=21))
def test_any_evse_image_decodes_or_is_a_bad_value(image: list[int]) -> None:
    image[0], image[1] = evse.MODEL, evse.PROTOCOL
    try:
        hot = evse.decode_hot("wb", None, image)
    except BadValue as err:
        assert err.device == "wb" and err.register is not None
        return
    assert 1 <= hot.cp_state <= 6 and all(0 <= a <= 100 for a in hot.current_a)
    bad = {b.name for b in hot.bad}
    for name in ("power_w", "energy_wh", "temperature_c", "hw_max_current_a"):
        assert (getattr(hot, name) is None) == (name in bad)


@given(ports=st.integers(1, 32), data=st.data())
def test_any_pile_slow_image_decodes_or_is_a_bad_value(ports: int, data: st.DataObject) -> None:
    energy = data.draw(st.lists(words, min_size=2 * ports, max_size=2 * ports))
    power = data.draw(st.lists(words, min_size=ports, max_size=ports))
    temps = data.draw(st.lists(words, min_size=ports, max_size=ports))
    slow = pile.decode_slow("p", ports, energy, power, temps)  # never fails: nothing critical
    assert all(e is not None and 0 <= e < 2**32 for e in slow.energy_wh)
    assert len(slow.power_w) == ports == len(slow.temperature_c)
    bad = {b.name for b in slow.bad}
    for name in ("power_w", "temperature_c"):
        for p, v in enumerate(getattr(slow, name), 1):
            assert (v is None) == (f"{name}[{p}]" in bad)
