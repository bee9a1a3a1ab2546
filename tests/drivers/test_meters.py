"""Meter templates as data: parsing, batching, the generic meter over SDM630 / SDM120 / DTSU666
images, validation, and the registry + factory choosing drivers by kind."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargectl.config.schema import Device, TcpBus
from chargectl.drivers.bus import ModbusBus
from chargectl.drivers.errors import BadValue, ConfigError
from chargectl.drivers.evse import EvseDriver
from chargectl.drivers.factory import make_driver
from chargectl.drivers.mapped import decode_blocks, meter_blocks
from chargectl.drivers.meter import MeterDriver, to_reading
from chargectl.drivers.pile import PileDriver
from chargectl.drivers.registry import role_of
from chargectl.drivers.template import Field as Quantity
from chargectl.drivers.template import (
    decode_value,
    load_template,
    parse_template,
    plan_blocks,
    shipped,
)
from chargectl.runtime.clock import VirtualClock
from tests.drivers.fakes import Image, ScriptedClient, f32_words, run_virtual
from tests.drivers.images import sdm_image

UNIT = 10


def meter_on(
    kind: str, image: Image, phases: tuple[int, ...] = (1, 2, 3)
) -> tuple[MeterDriver, ScriptedClient, VirtualClock]:
    clock = VirtualClock()
    client = ScriptedClient({UNIT: image})
    bus = ModbusBus(TcpBus("l", "127.0.0.1", 1), clock, client_factory=lambda: client)
    device = Device("m", kind, "l", UNIT, None, phases)
    driver = make_driver(device, bus)
    assert isinstance(driver, MeterDriver)
    return driver, client, clock


def dtsu_image(v: float, a: float, w: float, hz: float, kwh: float) -> Image:
    """Holding registers of a DTSU666 in its raw units (0.1 V, mA, 0.1 W, 0.01 Hz, kWh)."""
    regs: dict[int, int] = {}

    def put(addr: int, value: float) -> None:
        regs[addr], regs[addr + 1] = f32_words(value)

    for ch in range(3):
        put(0x2006 + 2 * ch, v * 10)
        put(0x200C + 2 * ch, a * 1000)
        put(0x2014 + 2 * ch, w * 10)
    put(0x2012, 3 * w * 10)
    put(0x2044, hz * 100)
    put(0x401E, kwh)
    return Image(holding=regs)


def test_shipped_maps_batch_into_few_reads() -> None:
    maps = {k: SimpleNamespace(blocks=meter_blocks(t)) for k, t in shipped().items()}
    assert set(maps) >= {"sdm630", "sdm120", "dtsu666"}
    assert [(b.table, b.address, b.count) for b in maps["sdm630"].blocks] == [
        ("input", 0, 18), ("input", 52, 2), ("input", 70, 4),
    ]  # fmt: skip
    assert [(b.address, b.count) for b in maps["sdm120"].blocks] == [
        (0, 2), (6, 2), (12, 2), (70, 4),
    ]  # fmt: skip
    assert [(b.table, b.address, b.count) for b in maps["dtsu666"].blocks] == [
        ("holding", 0x2006, 20), ("holding", 0x2044, 2), ("holding", 0x401E, 2),
    ]  # fmt: skip


def test_a_map_file_alone_registers_a_meter_kind() -> None:
    assert role_of("dtsu666") == "meter"
    assert role_of("sdm630") == "meter" and role_of("pile") == "pile"
    code = Path(__file__).parents[2] / "drivers"
    assert not [p.name for p in code.glob("*.py") if "dtsu" in p.read_text().lower()]
    assert "chint" in shipped()["dtsu666"].source.lower()  # the template cites its source


def test_plan_blocks_gap_and_size_limits() -> None:
    def q(name: str, addr: int, vtype: Any = "f32") -> Quantity:
        return Quantity(name, "input", addr, vtype, "big", 1.0)

    qs = [q("a", 0), q("b", 2), q("c", 6), q("d", 200, "u16"), q("e", 201, "u16")]
    assert [(b.address, b.count) for b in plan_blocks(qs, 0)] == [(0, 4), (6, 2), (200, 2)]
    assert [(b.address, b.count) for b in plan_blocks(qs, 2)] == [(0, 8), (200, 2)]
    many = [q(f"x{i}", 2 * i) for i in range(100)]  # 200 contiguous registers
    assert [(b.address, b.count) for b in plan_blocks(many, 0)] == [(0, 124), (124, 76)]


@pytest.mark.parametrize(
    ("words", "vtype", "order", "value"),
    [
        ([0xFFFF], "i16", "big", -1),
        ([0xFFFF], "u16", "big", 65535),
        ([0x0001, 0x0002], "u32", "big", 65538),
        ([0x0002, 0x0001], "u32", "little", 65538),
        ([0xFFFF, 0xFFFE], "i32", "big", -2),
        ([*f32_words(-12.5)], "f32", "big", -12.5),
        ([*reversed(f32_words(230.25))], "f32", "little", 230.25),
    ],
)
def test_decode_value(words: list[int], vtype: Any, order: Any, value: float) -> None:
    assert decode_value(words, vtype, order) == value


def _meter(**changes: Any) -> dict[str, Any]:
    """A valid 1-phase meter template's data with `changes` (field name -> spec, or a
    top-level key -> value)."""
    fields: dict[str, Any] = {
        n: {"address": 2 * i, "type": "f32"}
        for i, n in enumerate(
            ["voltage_l1", "current_l1", "power_l1", "frequency", "import_energy"]
        )
    }
    data: dict[str, Any] = {"kind": "x", "role": "meter", "fields": fields}
    for key, value in changes.items():
        (fields if key in fields or key.startswith(("voltage", "power")) else data)[key] = value
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"role": "meter", "fields": {}}, "kind: required"),
        (_meter(voltage_l1={"address": 0, "type": "f16"}), "voltage_l1.type"),
        (_meter(voltage_l1={"address": -1, "type": "u16"}), "voltage_l1.address"),
        (_meter(voltage_l1={"address": 0, "type": "u64"}), "voltage_l1.type"),
        (_meter(voltage_l1={"address": 0, "type": "u16", "table": "coil"}), "voltage_l1.table"),
        (_meter(voltage_l1={"address": 0, "type": "u16", "scale": 0}), "voltage_l1.scale"),
        (_meter(voltage_l1={"address": 3, "type": "u16"}), "current_l1: overlaps voltage_l1"),
        (_meter(colour="red"), "unknown key"),
        (_meter(phases=2), "phases"),
    ],
)  # fmt: skip
def test_parse_map_names_the_file_and_field(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_template(data, "maps/x.yaml")
    assert str(info.value).startswith("maps/x.yaml:")


def test_load_map_requires_kind_to_match_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "mymeter.yaml"
    fields = "{voltage_l1: {address: 0}, current_l1: {address: 1}, power_l1: {address: 2}, "
    fields += "frequency: {address: 3}, import_energy: {address: 4}}"
    path.write_text(f"kind: other\nrole: meter\nfields: {fields}\n")
    with pytest.raises(ConfigError, match="must match the file name"):
        load_template(path)


async def test_sdm630_reading() -> None:
    image = Image(
        input=sdm_image([230.1, 231, 229], [10.5, 0, 3.25], [2400, 0, -50], hz=49.98, kwh=10.5)
    )
    meter, client, clock = meter_on("sdm630", image)
    r = await run_virtual(clock, meter.read())
    assert r.volts == pytest.approx((230.1, 231, 229), abs=1e-4)
    assert r.amps == pytest.approx((10.5, 0, 3.25))
    assert r.watts == pytest.approx((2400, 0, -50))
    assert r.total_w == pytest.approx(2350) and r.hz == pytest.approx(49.98, abs=1e-4)
    assert r.import_kwh == pytest.approx(10.5)
    assert len(client.sent) == 3 and set(client.functions()) == {4}


async def test_sdm120_total_is_its_one_channel() -> None:
    image = Image(input=sdm_image([228.0], [4.5], [1000.0]))
    meter, client, clock = meter_on("sdm120", image, phases=(2,))
    r = await run_virtual(clock, meter.read())
    assert r.amps == pytest.approx((4.5,)) and r.total_w == pytest.approx(1000.0)
    assert len(client.sent) == 4


async def test_dtsu666_is_served_from_data_alone_with_scales_and_holding_reads() -> None:
    meter, client, clock = meter_on("dtsu666", dtsu_image(231.5, 12.25, 2800.0, 50.01, 4321.0))
    r = await run_virtual(clock, meter.read())
    assert r.volts == pytest.approx((231.5,) * 3, abs=1e-3)
    assert r.amps == pytest.approx((12.25,) * 3, abs=1e-4)
    assert r.watts == pytest.approx((2800.0,) * 3, abs=1e-2)
    assert r.total_w == pytest.approx(8400.0, abs=1e-1)
    assert r.hz == pytest.approx(50.01, abs=1e-4) and r.import_kwh == pytest.approx(4321.0)
    assert client.functions() == [3, 3, 3]


async def test_meter_channels_follow_the_config_phases() -> None:
    image = Image(input=sdm_image([230, 231, 229], [1, 2, 3], [10, 20, 30]))
    meter, _client, clock = meter_on("sdm630", image, phases=(3,))
    r = await run_virtual(clock, meter.read())
    assert r.amps == (1.0,) and r.total_w == pytest.approx(60)


@pytest.mark.parametrize(
    ("broken", "register", "why"),
    [
        ({"amps": [1, -0.5, 1]}, 8, "current_l2"),
        ({"amps": [2000.5, 1, 1]}, 6, "current_l1"),
        ({"amps": [math.nan, 1, 1]}, 6, "not a finite number"),
        ({"amps": [1, 1, -math.inf]}, 10, "not a finite number"),
    ],
)
async def test_meter_refuses_a_bad_current(broken: dict[str, Any], register: int, why: str) -> None:
    values: dict[str, Any] = {"volts": [230] * 3, "amps": [1] * 3, "watts": [200] * 3}
    values.update(broken)
    image = Image(input=sdm_image(**values))
    meter, _client, clock = meter_on("sdm630", image)
    with pytest.raises(BadValue, match=why) as info:
        await run_virtual(clock, meter.read())
    assert info.value.register == register and info.value.device == "m"
    assert meter._bus.health(UNIT).errors == {"BadValue": 1}


@pytest.mark.parametrize(
    ("broken", "field", "register", "why"),
    [
        ({"volts": [math.inf, 230, 230]}, "volts[1]", 0, "not a finite number"),
        ({"volts": [230, 1200, 230]}, "volts[2]", 2, "voltage_l2"),
        ({"watts": [200, 200, math.nan], "total": 400}, "watts[3]", 16, "not a finite number"),
        ({"total": math.nan}, "total_w", 52, "not a finite number"),
        ({"hz": -1.0}, "hz", 70, "frequency"),
        ({"kwh": -3.0}, "import_kwh", 72, "import_energy"),
        ({"kwh": math.inf}, "import_kwh", 72, "not a finite number"),
    ],
)
async def test_meter_marks_a_bad_noncritical_field(
    broken: dict[str, Any], field: str, register: int, why: str
) -> None:
    values: dict[str, Any] = {"volts": [230] * 3, "amps": [1, 2, 3], "watts": [200] * 3}
    values.update(broken)
    meter, _client, clock = meter_on("sdm630", Image(input=sdm_image(**values)))
    r = await run_virtual(clock, meter.read())
    assert r.amps == (1.0, 2.0, 3.0)  # the currents the controller protects with are there
    assert [(b.name, b.register) for b in r.bad] == [(field, register)]
    assert why in r.bad[0].why
    name, _, ch = field.partition("[")
    value = getattr(r, name)
    assert (value[int(ch[:-1]) - 1] if ch else value) is None
    health = meter._bus.health(UNIT)
    assert health.up and health.errors == {} and health.bad_fields == {field: 1}


async def test_a_bad_channel_power_makes_a_summed_total_bad_too() -> None:
    image = Image(input=sdm_image([228.0], [4.5], [math.nan]))
    meter, _client, clock = meter_on("sdm120", image, phases=(1,))
    r = await run_virtual(clock, meter.read())
    assert r.watts == (None,) and r.total_w is None and r.amps == (4.5,)
    assert [b.name for b in r.bad] == ["watts[1]", "total_w"]


async def test_meter_energy_going_backwards_is_a_bad_field_then_followed() -> None:
    image = Image(input=sdm_image([230], [1], [200], kwh=100.0))
    meter, _client, clock = meter_on("sdm120", image, phases=(1,))
    await run_virtual(clock, meter.read())
    image.input.update(sdm_image([230], [1], [200], kwh=99.0))
    r = await run_virtual(clock, meter.read())
    assert r.import_kwh is None and "backwards" in r.bad[0].why and r.amps == (1.0,)
    assert meter._bus.health(UNIT).bad_fields == {"import_kwh": 1}  # counted in the health
    r = await run_virtual(clock, meter.read())
    assert r.import_kwh == pytest.approx(99.0) and r.bad == ()


def test_make_driver_by_kind_and_its_errors() -> None:
    clock = VirtualClock()
    client = ScriptedClient({})
    bus = ModbusBus(TcpBus("l", "127.0.0.1", 1), clock, client_factory=lambda: client)
    assert isinstance(
        make_driver(Device("p", "pile", "l", 1, "c", (1,), ports=12), bus), PileDriver
    )
    assert isinstance(make_driver(Device("w", "evse", "l", 2, "c", (1, 2, 3)), bus), EvseDriver)
    known = "alfen_ng9xx, dtsu666, evse, pile, sdm120, sdm630, voltbay10"
    with pytest.raises(ConfigError, match=rf"unknown kind 'sdm999'; known: {known}"):
        make_driver(Device("x", "sdm999", "l", 3, None, (1,)), bus)
    with pytest.raises(ConfigError, match="not 'l'"):
        make_driver(Device("x", "sdm630", "other", 3, None, (1,)), bus)
    with pytest.raises(ConfigError, match="a sdm120 has 1"):
        make_driver(Device("x", "sdm120", "l", 4, None, (1, 2, 3)), bus)
    with pytest.raises(ConfigError, match=r"ports must be 1\.\.32"):
        make_driver(Device("x", "pile", "l", 5, "c", (1,), ports=0), bus)
    with pytest.raises(ConfigError, match="already p"):
        make_driver(Device("q", "pile", "l", 1, "c", (1,), ports=4), bus)


@given(kind=st.sampled_from(["sdm630", "sdm120", "dtsu666"]), data=st.data())
def test_any_meter_image_decodes_or_is_a_bad_value(kind: str, data: st.DataObject) -> None:
    reg_map = shipped()[kind]
    blocks = meter_blocks(reg_map)
    replies = [
        data.draw(st.lists(st.integers(0, 0xFFFF), min_size=b.count, max_size=b.count))
        for b in blocks
    ]
    try:
        r = to_reading("m", reg_map, reg_map.phases, decode_blocks(blocks, "m", replies))
    except BadValue as err:
        assert err.device == "m" and err.register is not None
        currents = {q.address for n, q in reg_map.fields.items() if n.startswith("current")}
        assert err.register in currents  # only a current fails a meter's reading
        return
    assert all(math.isfinite(x) and 0 <= x <= 2000 for x in r.amps)
    bad = {b.name for b in r.bad}
    for name in ("total_w", "hz", "import_kwh"):
        value = getattr(r, name)
        assert (value is None) == (name in bad)
        assert value is None or math.isfinite(value)
    for name in ("volts", "watts"):
        for ch, v in enumerate(getattr(r, name), 1):
            assert (v is None) == (f"{name}[{ch}]" in bad)
            assert v is None or math.isfinite(v)
