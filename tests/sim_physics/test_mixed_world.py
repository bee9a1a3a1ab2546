"""A shed of mixed models: the contract pile, a VoltBay V10, an Alfen NG9xx and a DTSU666 on
one supply. The physics do not care which template a device has; the registers do, and the
actions reach every role (a fault on a VoltBay port, a car at the Alfen)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from chargectl.config.schema import (
    Breaker,
    Circuit,
    Device,
    Endpoint,
    Shed,
    ShedInfo,
    SimSettings,
    TcpBus,
)
from chargectl.drivers.template import shipped
from chargectl.sim.actions import ActionError, apply
from chargectl.sim.devices.evse import EvseModel
from chargectl.sim.devices.pile import PileModel
from chargectl.sim.runner import Simulator

VB = shipped()["voltbay10"].fields
ALFEN = shipped()["alfen_ng9xx"].fields
DTSU = shipped()["dtsu666"].fields


def mixed_shed() -> Shed:
    return Shed(
        source=Path("/nonexistent/mixed.yaml"),
        shed=ShedInfo("mixed", 3, 230.0),
        circuits=(Circuit("main", 50.0, Breaker(63.0, "C"), meter="m-main"),),
        buses=(TcpBus("line", "127.0.0.1", 0),),
        devices=(
            Device("m-main", "dtsu666", "line", 10, None, (1, 2, 3)),
            Device("pa", "pile", "line", 1, "main", (1,), 4),
            Device("vb", "voltbay10", "line", 2, "main", (2,), 10, 1000),
            Device("ev", "alfen_ng9xx", "line", 21, "main", (1, 2, 3), max_current_a=16.0),
        ),
        sim=SimSettings(control_api=Endpoint("127.0.0.1", 0)),
    )


def f32(words: list[int] | int) -> float:
    assert isinstance(words, list), f"exception {words}"
    return float(struct.unpack(">f", struct.pack(">HH", *words))[0])


def f32_words(value: float) -> list[int]:
    return list(struct.unpack(">HH", struct.pack(">f", value)))


@pytest.fixture
def sim() -> Simulator:
    return Simulator(mixed_shed(), virtual=True)


def test_every_device_is_built_from_its_kind_s_template(sim: Simulator) -> None:
    kinds = {dev: snap["kind"] for dev, snap in sim.devices().items()}
    roles = {dev: snap["role"] for dev, snap in sim.devices().items()}
    assert kinds == {"m-main": "dtsu666", "pa": "pile", "vb": "voltbay10", "ev": "alfen_ng9xx"}
    assert roles == {"m-main": "meter", "pa": "pile", "vb": "pile", "ev": "evse"}
    assert sim.world.topo.socket_bays[4:] == tuple(f"vb/{p}" for p in range(1, 11))


def test_both_pile_families_and_the_wallbox_charge_and_the_meter_sees_it(sim: Simulator) -> None:
    w = sim.world
    vb, pa, ev = w.models["vb"], w.models["pa"], w.models["ev"]
    assert isinstance(vb, PileModel) and isinstance(pa, PileModel)
    assert isinstance(ev, EvseModel)
    for bay in ("pa/1", "vb/1", "vb/2"):
        w.plug_charger(bay, "li72", 0.3)
    assert pa.write_holding(16, [1]) is None  # the contract's relay register
    assert vb.write_coils(VB["relay"].address, [1, 1]) is None  # VoltBay's relay coils
    apply(sim, {"do": "plug", "bay": "ev", "max_a": 16, "phases": 3, "soc": 0.3})
    assert ev.write_holding(ALFEN["current_limit"].address, f32_words(10.0)) is None
    sim.advance(30.0)
    t = w.truth()
    assert [t["bays"][b]["stage"] for b in ("pa/1", "vb/1", "vb/2")] == ["cc"] * 3
    assert t["wallboxes"]["ev"]["amps"] == pytest.approx([10.0] * 3, abs=0.05)
    amps = t["circuits"]["main"]["amps"]
    vb_a = t["bays"]["vb/1"]["amps"] + t["bays"]["vb/2"]["amps"]
    assert amps[1] == pytest.approx(10.0 + vb_a, abs=0.05)  # phase 2: the VoltBay and the car
    # The VoltBay reports its ports in 0.1 A; the DTSU666 the phases in mA as floats.
    regs = vb.read_input(VB["port_current"].address, 2)
    assert regs == [round(t["bays"]["vb/1"]["amps"] * 10), round(t["bays"]["vb/2"]["amps"] * 10)]
    meter = w.models["m-main"]
    for phase, name in enumerate(("current_l1", "current_l2", "current_l3")):
        reading = f32(meter.read_holding(DTSU[name].address, 2)) * DTSU[name].scale
        assert reading == pytest.approx(amps[phase], abs=0.1)
    assert f32(ev.read_holding(ALFEN["current_l1"].address, 2)) == pytest.approx(10.0, abs=0.05)


def test_faults_reach_a_voltbay_port_in_its_own_bits(sim: Simulator) -> None:
    vb = sim.world.models["vb"]
    assert isinstance(vb, PileModel)
    vb.write_coils(VB["relay"].address, [1] * 10)
    apply(sim, {"do": "short", "bay": "vb/3"})
    sim.advance(0.5)
    faults = vb.read_input(VB["port_fault"].address, 10)
    assert faults == [0, 0, 1 << VB["port_fault"].bits["short"]] + [0] * 7
    assert not sim.world.truth()["bays"]["vb/3"]["closed"]
    apply(sim, {"do": "estop", "device": "vb"})
    sim.advance(0.1)
    status = vb.read_input(VB["status"].address, 1)
    assert status == [1 << VB["status"].bits["estop"]]
    assert not any(sim.world.truth()["bays"][f"vb/{p}"]["closed"] for p in range(1, 11))


def test_what_a_template_cannot_show_is_refused_by_name(sim: Simulator) -> None:
    with pytest.raises(ActionError, match=r"smoke vb: voltbay10 has no smoke input"):
        apply(sim, {"do": "smoke", "device": "vb"})
    with pytest.raises(ActionError, match=r"tap ev: alfen_ng9xx has no card reader"):
        apply(sim, {"do": "tap", "bay": "ev", "uid": "04a1b2c3"})
    apply(sim, {"do": "tap", "bay": "vb/4", "uid": "04a1b2c3"})  # VoltBay has a reader
    tap = sim.world.models["vb"].read_input(VB["tap"].address, 6)
    assert tap == [1, 0x0404, 0, 0, 0x04A1, 0xB2C3]


def test_a_car_at_the_alfen_follows_its_setpoint_and_its_box_set_watchdog(
    sim: Simulator,
) -> None:
    ev = sim.world.models["ev"]
    assert isinstance(ev, EvseModel)
    apply(sim, {"do": "plug", "bay": "ev", "max_a": 32, "phases": 3, "soc": 0.2})
    ev.write_holding(ALFEN["current_limit"].address, f32_words(16.0))
    sim.advance(20.0)
    assert sim.world.truth()["wallboxes"]["ev"]["amps"] == pytest.approx([16.0] * 3, abs=0.05)
    code = ev.read_holding(ALFEN["cp_state"].address, 1)
    assert code == [ord("C") << 8]
    sim.advance(60.0)  # 80 s after the last setpoint: the box fell back to its safe current
    assert sim.world.truth()["wallboxes"]["ev"]["offered_a"] == 0.0
    assert sim.world.truth()["wallboxes"]["ev"]["amps"] == pytest.approx([0.0] * 3, abs=0.05)
    assert ev.read_holding(ALFEN["cp_state"].address, 1) == [ord("B") << 8]


def test_a_kind_without_a_template_is_refused_by_device() -> None:
    base = mixed_shed()
    shed = Shed(
        source=base.source,
        shed=base.shed,
        circuits=base.circuits,
        buses=base.buses,
        devices=(*base.devices[:3], Device("ev", "acme", "line", 21, "main", (1, 2, 3))),
        sim=base.sim,
    )
    with pytest.raises(ValueError, match=r"devices\[ev\]\.kind: unknown device kind 'acme'"):
        Simulator(shed, virtual=True)
