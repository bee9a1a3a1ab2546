"""Devices built from templates other than the contract pages: the VoltBay V10 pile (coils,
discrete inputs, 0.1 A, 0.01 kWh, its own fault bits), the Alfen NG9xx wallbox (holding
floats, a box-set watchdog restarted by every setpoint), the Chint DTSU666 meter (holding
floats with scales), and a model added as one file in a directory of its own."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from chargectl.drivers.template import Template, shipped, templates
from chargectl.sim.devices.evse import EvseModel
from chargectl.sim.devices.meter import MeterModel
from chargectl.sim.devices.pile import PileModel
from tests.sim_devices.simdev_helpers import run_pile, s16


def voltbay() -> PileModel:
    return PileModel(10, 1000, template=shipped()["voltbay10"])


def values(reply: list[int] | int) -> list[int]:
    assert isinstance(reply, list), f"exception {reply}"
    return reply


def f32(words: list[int]) -> float:
    return float(struct.unpack(">f", struct.pack(">HH", *words))[0])


def f32_words(value: float) -> list[int]:
    return list(struct.unpack(">HH", struct.pack(">f", value)))


# --------------------------------------------------------------------------- VoltBay V10
def test_voltbay_input_registers_follow_its_template() -> None:
    pile = voltbay()
    assert pile.write_coils(0, [1, 1, 0, 1]) is None
    pile.set_energy_wh(2, 12345.6)
    run_pile(pile, 0.0, 0.1, amps=1.26, watts=277.0, cabinet_c=-4.2)
    regs = values(pile.read_input(0, 40))
    assert regs[0:2] == [0x5642, 10]  # "VB", ports
    assert regs[2] == 0  # no failsafe, heat or e-stop
    assert s16(regs[3]) == -4  # whole degC
    assert regs[4:11] == [0] * 7  # watchdog off, no tap
    assert regs[11:20] == [0] * 9  # reserved, inside the readable range
    assert regs[20:30] == [13, 13, 0, 13] + [0] * 6  # 0.1 A: 1.26 A -> 13
    assert regs[30:40] == [0] * 10  # no fault bits
    assert values(pile.read_input(40, 4)) == [277, 277, 0, 277]  # W
    energy = values(pile.read_input(60, 20))
    assert energy[2:4] == [0, 1234]  # port 2: 12345.6 Wh = 1234 x 0.01 kWh, floored
    for addr in (50, 59, 80, 100):
        assert pile.read_input(addr, 1) == 2  # between the blocks and past them


def test_voltbay_relays_are_coils_and_contacts_are_discrete_inputs() -> None:
    pile = voltbay()
    fields = shipped()["voltbay10"].fields
    closed, load = fields["relay_closed"].address, fields["load_present"].address
    assert pile.write_coils(0, [1, 0, 1]) is None
    assert pile.contact_closed()[:4].tolist() == [True, False, True, False]
    assert values(pile.read_coils(0, 10)) == [1, 0, 1] + [0] * 7
    run_pile(pile, 0.0, 0.1, amps=0.5, watts=100.0)
    assert values(pile.read_discrete(closed, 10)) == [1, 0, 1] + [0] * 7
    assert values(pile.read_discrete(load, 10)) == [1, 0, 1] + [0] * 7
    (_, first, last), *_ = [r for r in shipped()["voltbay10"].readable if r[0] == "discrete"]
    assert len(values(pile.read_discrete(first, last - first + 1))) == last - first + 1
    assert pile.read_discrete(max(last, load + 9) + 1, 1) == 2
    assert pile.read_coils(10, 1) == 2  # no port 11, nothing between relay and mask coils
    assert pile.write_coils(9, [1, 1]) == 2  # runs past port 10: nothing changes
    assert not pile.contact_closed()[9]
    assert [(r.table, r.addr, r.values, r.error) for r in pile.writes.records()][-1] == (
        "coil",
        9,
        (1, 1),
        2,
    )


def test_voltbay_failsafe_mask_coils_and_watchdog() -> None:
    pile = voltbay()
    assert pile.write_coils(16, [1, 0, 0, 1]) is None  # ports 1 and 4 stay on in failsafe
    assert pile.write_coils(0, [1] * 10) is None
    assert pile.write_holding(0, [2]) is None  # watchdog 2 s
    t = run_pile(pile, 0.0, 2.0)
    regs = values(pile.read_input(0, 5))
    assert regs[2] & 1 == 1 and regs[4] == 0  # failsafe, nothing left
    assert pile.contact_closed().astype(int).tolist() == [1, 0, 0, 1] + [0] * 6
    assert values(pile.read_coils(0, 10)) == [1, 0, 0, 1] + [0] * 6  # relays read back
    assert pile.write_coils(17, [1]) is None  # a mask write in failsafe drives at once
    assert pile.contact_closed()[1]
    assert pile.write_holding(1, [7]) is None  # heartbeat
    run_pile(pile, t, 0.1)
    assert values(pile.read_input(2, 1))[0] & 1 == 0


def test_voltbay_fault_bits_and_reset_all_is_0() -> None:
    pile = voltbay()
    assert pile.write_coils(0, [1] * 10) is None
    pile.set_short(3)
    pile.set_welded(5, True)
    pile.write_coils(4, [0])
    run_pile(pile, 0.0, 0.1, amps=1.0, watts=200.0)
    faults = values(pile.read_input(30, 10))
    assert faults[2] == 0b100  # short: the brand's bit 2
    assert faults[4] == 0b1000  # welded: bit 3
    assert pile.write_holding(3, [11]) == 3  # no port 11
    assert pile.write_holding(3, [0]) is None  # 0 clears every port
    assert values(pile.read_input(30, 10)) == [0] * 10
    run_pile(pile, 0.1, 0.1, amps=1.0, watts=200.0)
    assert values(pile.read_input(30, 10))[4] == 0b1000  # still welded: latched again


def test_voltbay_power_limit_range_is_its_own() -> None:
    pile = voltbay()
    assert values(pile.read_holding(2, 1)) == [1000]
    assert pile.write_holding(2, [49]) == 3
    assert pile.write_holding(2, [1501]) == 3
    assert pile.write_holding(2, [1500]) is None
    assert pile.read_holding(4, 1) == 2  # no lamps on this model
    with pytest.raises(ValueError, match=r"port_power_limit_w must be 50\.\.1500"):
        PileModel(10, 2000, template=shipped()["voltbay10"])
    with pytest.raises(ValueError, match=r"ports must be 10\.\.10"):
        PileModel(12, 1000, template=shipped()["voltbay10"])


def test_voltbay_over_power_cut_uses_its_limit() -> None:
    pile = voltbay()
    pile.write_coils(0, [1] * 10)
    run_pile(pile, 0.0, 2.1, amps=5.0, watts=1100.0)
    assert values(pile.read_input(30, 1)) == [0b1]  # over_power: bit 0
    assert not pile.contact_closed()[0]
    assert values(pile.read_coils(0, 1)) == [0]


# --------------------------------------------------------------------------- Alfen NG9xx
def alfen(hw_max_a: float = 32.0) -> EvseModel:
    return EvseModel(hw_max_a, 3, template=shipped()["alfen_ng9xx"])


def run_evse(
    evse: EvseModel, t: float, seconds: float, vehicle: int = 2, amps: float = 0.0
) -> float:
    a = np.full(3, amps)
    for _ in range(round(seconds / 0.1)):
        t += 0.1
        evse.step(t, 0.1, vehicle, a, amps * 3 * 230.0, 30.0)
    return t


def test_alfen_measurements_are_holding_floats() -> None:
    box = alfen()
    box.set_energy_wh(1_000_000.0)
    assert box.write_holding(1210, f32_words(16.0)) is None
    run_evse(box, 0.0, 36.0, amps=15.5)
    regs = values(box.read_holding(320, 58))  # one read across the reserved registers
    assert [f32(regs[i : i + 2]) for i in (0, 2, 4)] == [15.5, 15.5, 15.5]
    assert regs[6:24] == [0] * 18  # reserved 326..343
    assert f32(regs[24:26]) == pytest.approx(3 * 15.5 * 230.0)
    energy = struct.unpack(">d", struct.pack(">4H", *regs[54:58]))[0]
    assert energy == pytest.approx(1_000_000.0 + 3 * 15.5 * 230.0 / 100, rel=1e-12)  # Wh, f64
    assert values(box.read_holding(1201, 1)) == [ord("C") << 8]  # mode 3 state letter
    assert values(box.read_holding(1215, 1)) == [3]
    assert box.read_holding(378, 1) == 2  # past max_gap
    assert box.read_input(0, 1) == 2  # no input registers on this model
    assert box.read_coils(0, 1) == 1  # no coils: illegal function


def test_alfen_setpoint_range_and_read_only_safe_current() -> None:
    box = alfen(16.0)
    for amps in (5.9, 16.5, float("nan")):
        assert box.write_holding(1210, f32_words(amps)) == 3
    assert box.write_holding(1210, f32_words(0.0)) is None  # 0 pauses
    assert box.write_holding(1210, f32_words(6.0)) is None
    assert box.offered_a() == 6.0
    assert box.write_holding(1212, f32_words(6.0)) == 2  # set by the installer, not writable
    assert f32(values(box.read_holding(1212, 2))) == 0.0


def test_alfen_watchdog_is_set_on_the_box_and_the_setpoint_is_its_heartbeat() -> None:
    box = alfen()
    assert box.write_holding(1210, f32_words(16.0)) is None
    t = run_evse(box, 0.0, 59.0)
    assert box.offered_a() == 16.0
    assert values(box.read_holding(1208, 2)) == [0, 1]  # u32 seconds left
    assert box.write_holding(1210, f32_words(12.0)) is None  # restarts the 60 s
    t = run_evse(box, t, 59.0)
    assert box.offered_a() == 12.0
    t = run_evse(box, t, 1.0)
    assert box.offered_a() == 0.0  # fell back to the safe current (0 A)
    assert f32(values(box.read_holding(1210, 2))) == 0.0  # and reports it
    assert box.write_holding(1210, f32_words(10.0)) is None  # the setpoint ends failsafe
    assert box.offered_a() == 10.0


# --------------------------------------------------------------------------- DTSU666
def test_dtsu666_serves_scaled_holding_floats() -> None:
    meter = MeterModel("dtsu666")
    meter.update([230.1, 229.5, 231.0], [10.25, 0.5, 3.0], [2300.0, 100.0, 690.0], 49.98, 12.5)
    regs = values(meter.read_holding(0x2006, 12))
    got = [f32(regs[i : i + 2]) for i in range(0, 12, 2)]
    expect = [2301.0, 2295.0, 2310.0, 10250.0, 500.0, 3000.0]  # 0.1 V, mA
    assert got == pytest.approx(expect, rel=1e-6)
    assert f32(values(meter.read_holding(0x2012, 2))) == pytest.approx(30900.0)  # 0.1 W total
    assert f32(values(meter.read_holding(0x2044, 2))) == pytest.approx(4998.0)  # 0.01 Hz
    assert f32(values(meter.read_holding(0x401E, 2))) == 12.5  # kWh
    assert meter.read_input(0, 2) == 2
    assert meter.read_holding(0x2000, 2) == 2  # line-to-line voltages: not in the template
    assert meter.write_holding(0x2006, [0, 0]) == 2


# --------------------------------------------------------------------------- every template
def decode(t: Template, model: object, ports: int) -> dict[tuple[str, int | None], float]:
    """Read every field as a driver would (the parser's read plan) and decode it."""
    from chargectl.drivers.template import image_of, plan_blocks, raw_value

    blocks = plan_blocks(list(t.fields.values()), t.max_gap, ports=ports, readable=t.readable)
    read = {
        "input": model.read_input,  # type: ignore[attr-defined]
        "holding": model.read_holding,  # type: ignore[attr-defined]
        "coil": model.read_coils,  # type: ignore[attr-defined]
        "discrete": model.read_discrete,  # type: ignore[attr-defined]
    }
    replies = [values(read[b.table](b.address, b.count)) for b in blocks]
    image = image_of(blocks, replies)
    out: dict[tuple[str, int | None], float] = {}
    for f in t.fields.values():
        if f.bits or f.codes or f.name == "tap" or f.equals is not None:
            continue
        for port in range(1, ports + 1) if f.per_port else (None,):
            out[(f.name, port)] = raw_value(f, image, port) * f.scale
    return out


@pytest.mark.parametrize("kind", sorted(shipped()))
def test_every_shipped_template_reads_back_in_its_units(kind: str) -> None:
    """The driver's read plan of each template gets an answer for every block, and what it
    decodes is the model's state in the vocabulary's units, to the register's resolution."""
    t = shipped()[kind]
    if t.role == "pile":
        ports = t.ports[1] if t.fixed_ports is None else t.fixed_ports
        ports = min(ports, 12)
        limit = t.fields["port_power_limit"]
        model: object = PileModel(ports, int(limit.max or 2000), template=t)
        pile = model
        assert isinstance(pile, PileModel)
        for p in range(1, ports + 1):
            pile.apply("relay", p, 1)
        amps = [0.3 * p for p in range(1, ports + 1)]
        run_pile(pile, 0.0, 10.0, amps=amps, watts=[a * 220 for a in amps], temp=31.7)
        expect = {("port_current", p): amps[p - 1] for p in range(1, ports + 1)}
        expect |= {("port_energy", p): amps[p - 1] * 220 * 10 / 3600 for p in range(1, ports + 1)}
    elif t.role == "evse":
        model = EvseModel(16.0, 3, template=t)
        assert isinstance(model, EvseModel)
        model.apply("current_limit", None, 16.0)
        run_evse(model, 0.0, 10.0, amps=15.75)
        expect = {(f"current_l{n}", None): 15.75 for n in (1, 2, 3)}
        expect[("current_limit", None)] = 16.0
        ports = 1
    else:
        model = MeterModel(t)
        assert isinstance(model, MeterModel)
        n = t.phases
        model.update([231.5] * n, [12.34] * n, [2856.6] * n, 50.02, 1234.5)
        expect = {(f"current_l{c}", None): 12.34 for c in range(1, n + 1)}
        expect[("import_energy", None)] = 1234.5
        expect[("frequency", None)] = 50.02
        ports = 1
    got = decode(t, model, ports)
    for key, value in expect.items():
        f = t.fields[key[0]]
        step = f.scale if f.type not in ("f32", "f64") else abs(value) * 1e-6
        if key[0] == "port_energy":
            step = f.scale  # a counter floors to whole units
        assert got[key] == pytest.approx(value, abs=step), f"{kind} {key}"


# --------------------------------------------------------------------------- a new model
NEW_METER = """
kind: acme_em1
role: meter
description: ACME EM1, a 1-phase meter in input registers, u32 in 0.01 units
source: "a test: one template file is a new model"
phases: 1
word_order: little
fields:
  voltage_l1: {table: input, address: 100, type: u32, scale: 0.01}
  current_l1: {table: input, address: 102, type: u32, scale: 0.01}
  power_l1: {table: input, address: 104, type: i32}
  frequency: {table: input, address: 106, type: u16, scale: 0.01}
  import_energy: {table: input, address: 110, type: u32, scale: 0.01}
"""


def test_a_template_in_a_directory_of_its_own_is_a_new_model(tmp_path: Path) -> None:
    (tmp_path / "acme_em1.yaml").write_text(NEW_METER, encoding="utf-8")
    meter = MeterModel(templates([tmp_path])["acme_em1"])
    meter.update([230.57], [4.5], [-1000.0], 50.0, 1.234)
    regs = values(meter.read_input(100, 7))
    assert regs[0:2] == [23057, 0]  # little word order: low word first
    assert regs[2:4] == [450, 0]
    assert regs[4:6] == [(-1000) & 0xFFFF, 0xFFFF]
    assert regs[6] == 5000
    assert meter.read_input(107, 1) == 2
    assert values(meter.read_input(110, 2)) == [123, 0]  # a counter floors: 1.234 kWh


ENABLE_BOX = """
kind: acme_box
role: evse
description: ACME box, 1 phase, an enable coil and whole amps
source: "a test: a wallbox whose charging is switched by a coil"
phases: 1
min_current_a: 6
max_current_a: [6, 32]
step_a: 1
fields:
  cp_state: {table: input, address: 0, codes: {10: A, 11: B, 12: C, 13: D, 14: E, 15: F}}
  current_l1: {table: input, address: 1, scale: 0.1}
  current_l2: {table: input, address: 2, scale: 0.1}
  current_l3: {table: input, address: 3, scale: 0.1}
  watchdog_timeout: {table: holding, address: 0}
  heartbeat: {table: holding, address: 1}
  current_limit: {table: holding, address: 2, min: 6, max: 32}
  failsafe_current: {table: holding, address: 3, min: 6, max: 32}
  enable: {table: coil, address: 0}
"""


def test_an_enable_coil_switches_the_offer(tmp_path: Path) -> None:
    (tmp_path / "acme_box.yaml").write_text(ENABLE_BOX, encoding="utf-8")
    box = EvseModel(16.0, 1, template=templates([tmp_path])["acme_box"])
    assert values(box.read_coils(0, 1)) == [1]  # enabled from power-up
    assert box.write_holding(2, [10]) is None  # whole amps
    run_evse(box, 0.0, 0.1, amps=9.9)
    assert values(box.read_input(0, 4)) == [12, 99, 0, 0]  # C; one phase wired
    assert box.write_coils(0, [0]) is None
    assert box.offered_a() == 0.0
    run_evse(box, 0.1, 0.1)
    assert values(box.read_input(0, 1)) == [11]  # B: connected, not offered
    assert box.write_coils(0, [1]) is None
    assert box.offered_a() == 10.0
    assert box.write_holding(2, [17]) == 3  # above this box's 16 A
    with pytest.raises(ValueError, match="phases must be 1, got 3"):
        EvseModel(16.0, 3, template=templates([tmp_path])["acme_box"])
