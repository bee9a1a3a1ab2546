"""The wallbox and the SDM meters against ../shared/hardware/evse.md and meter-sdm.md."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from chargectl.sim.devices.evse import EvseModel
from chargectl.sim.devices.meter import MeterModel
from tests.sim_devices.simdev_helpers import s16


def run_evse(
    evse: EvseModel,
    t: float,
    seconds: float,
    *,
    vehicle: int = 0,
    amps: tuple[float, float, float] = (0.0, 0.0, 0.0),
    watts: float = 0.0,
    temp: float = 25.0,
    dt: float = 0.1,
) -> float:
    a = np.asarray(amps, dtype=np.float64)
    for _ in range(round(seconds / dt)):
        t += dt
        evse.step(t, dt, vehicle, a, watts, temp)
    return t


def inputs(evse: EvseModel) -> list[int]:
    values = evse.read_input(0, 21)
    assert isinstance(values, list)
    return values


def holdings(evse: EvseModel) -> list[int]:
    values = evse.read_holding(0, 5)
    assert isinstance(values, list)
    return values


# --------------------------------------------------------------------------- wallbox
def test_evse_hot_block() -> None:
    evse = EvseModel(32.0, 3)
    evse.write_holding(2, [160])
    run_evse(evse, 0.0, 3600.0, vehicle=2, amps=(15.5, 15.25, 15.0), watts=10230.0, dt=1.0)
    evse.tap(bytes.fromhex("a1b2c3d4"))
    regs = inputs(evse)
    assert regs[0:4] == [0x4556, 1, 3, 0]  # model, version, C (charging), status
    assert regs[4:7] == [1550, 1525, 1500]
    assert (regs[7] << 16) | regs[8] == 10230
    assert (regs[9] << 16) | regs[10] == 10230  # 1 h at 10230 W
    assert s16(regs[11]) == 250
    assert regs[12:14] == [3, 320]
    assert regs[14:20] == [1, 0x0401, 0, 0, 0xA1B2, 0xC3D4]  # tap_info low byte always 1
    assert regs[20] == 0


def test_evse_single_phase_reads_0_on_unused_phases() -> None:
    evse = EvseModel(16.0, 1)
    run_evse(evse, 0.0, 0.1, vehicle=2, amps=(10.0, 3.0, 3.0), watts=2200.0)
    regs = inputs(evse)
    assert regs[4:7] == [1000, 0, 0]
    assert regs[12] == 1


@pytest.mark.parametrize(
    ("vehicle", "limit", "cp"), [(0, 160, 1), (1, 160, 2), (2, 160, 3), (2, 0, 2)]
)
def test_evse_cp_state(vehicle: int, limit: int, cp: int) -> None:
    evse = EvseModel(16.0, 3)
    evse.write_holding(2, [limit])
    run_evse(evse, 0.0, 0.1, vehicle=vehicle)
    assert inputs(evse)[2] == cp


@pytest.mark.parametrize("value", [1, 59, 161, 0xFFFF])
def test_evse_current_limit_range(value: int) -> None:
    evse = EvseModel(16.0, 3)
    assert evse.write_holding(2, [100]) is None
    assert evse.write_holding(2, [value]) == 3
    assert evse.write_holding(3, [value]) == 3
    assert holdings(evse)[2:4] == [100, 0]
    assert evse.offered_a() == 10.0


def test_evse_limit_bounds_accepted() -> None:
    evse = EvseModel(16.0, 3)
    for value in (0, 60, 160):
        assert evse.write_holding(2, [value]) is None
        assert evse.offered_a() == value / 10


def test_evse_addresses() -> None:
    evse = EvseModel(16.0, 3)
    assert evse.read_input(21, 1) == 2
    assert evse.read_input(20, 2) == 2
    assert evse.read_holding(5, 1) == 2
    assert evse.write_holding(4, [1, 1]) == 2
    assert evse.write_holding(4, [8]) == 3
    assert evse.write_holding(4, [7]) is None
    assert holdings(evse) == [0, 0, 0, 0, 7]
    assert evse.write_holding(0, [10, 3, 120, 60, 2]) is None
    assert holdings(evse) == [10, 3, 120, 60, 2]


def test_evse_failsafe_reports_failsafe_current_and_heartbeat_leaves_it() -> None:
    evse = EvseModel(16.0, 3)
    evse.write_holding(0, [3, 0, 160, 60])
    t = run_evse(evse, 0.0, 2.0, vehicle=2)
    assert inputs(evse)[20] == 1 and inputs(evse)[3] & 1 == 0
    t = run_evse(evse, t, 1.0, vehicle=2)
    assert inputs(evse)[3] & 1 == 1 and inputs(evse)[20] == 0
    assert holdings(evse)[2] == 60 and evse.offered_a() == 6.0
    assert evse.write_holding(2, [160]) is None  # ignored in failsafe
    assert evse.offered_a() == 6.0
    assert evse.write_holding(3, [0]) is None  # a new failsafe current applies at once
    assert evse.offered_a() == 0.0 and inputs(evse)[2] == 2  # paused: B
    evse.write_holding(1, [1])
    assert inputs(evse)[3] & 1 == 0
    assert holdings(evse)[2] == 0  # the limit stays as failsafe left it
    evse.write_holding(2, [100])
    assert evse.offered_a() == 10.0


def test_evse_status_faults() -> None:
    evse = EvseModel(16.0, 3)
    evse.write_holding(2, [160])
    run_evse(evse, 0.0, 0.1, vehicle=2, temp=80.0)
    assert inputs(evse)[3] == 0b10
    evse.set_faults(rcd=True, welded=True)
    assert inputs(evse)[3] == 0b1110
    assert inputs(evse)[2] == 6 and evse.offered_a() == 0.0
    evse.set_faults(rcd=False)
    assert evse.offered_a() == 16.0 and inputs(evse)[2] == 3


def test_evse_bad_construction_and_inputs() -> None:
    with pytest.raises(ValueError, match="phases"):
        EvseModel(16.0, 2)
    with pytest.raises(ValueError, match="hw_max"):
        EvseModel(5.0, 3)
    evse = EvseModel(16.0, 3)
    with pytest.raises(ValueError, match="vehicle"):
        evse.step(0.1, 0.1, 3, np.zeros(3), 0.0, 25.0)
    with pytest.raises(ValueError, match="UID"):
        evse.tap(b"abc")


# --------------------------------------------------------------------------- meters
def floats(words: list[int] | int) -> list[float]:
    assert isinstance(words, list)
    raw = struct.pack(f">{len(words)}H", *words)
    return list(struct.unpack(f">{len(words) // 2}f", raw))


def test_sdm630_registers() -> None:
    meter = MeterModel("sdm630")
    meter.update([230.5, 229.0, 231.25], [10.0, 12.5, 0.5], [2300.0, 2862.5, 115.0], 50.0, 1234.5)
    assert floats(meter.read_input(0, 18)) == [
        230.5, 229.0, 231.25, 10.0, 12.5, 0.5, 2300.0, 2862.5, 115.0,
    ]  # fmt: skip
    assert floats(meter.read_input(52, 2)) == [5277.5]
    assert floats(meter.read_input(70, 4)) == [50.0, 1234.5]
    assert meter.read_input(18, 2) == 2
    assert meter.read_input(50, 2) == 2
    assert meter.read_input(74, 2) == 2
    assert meter.read_holding(0, 2) == 2
    assert meter.write_holding(0, [1]) == 2


def test_sdm120_registers() -> None:
    meter = MeterModel("sdm120")
    meter.update([221.0], [4.5], [990.0], 49.98, 17.25)
    assert floats(meter.read_input(0, 2)) == [221.0]
    assert floats(meter.read_input(6, 2)) == [4.5]
    assert floats(meter.read_input(12, 2)) == [990.0]
    assert floats(meter.read_input(70, 4)) == pytest.approx([49.98, 17.25], rel=1e-6)
    for addr in (2, 8, 14, 52):
        assert meter.read_input(addr, 2) == 2
    assert meter.read_input(0, 8) == 2  # spans the absent L2/L3 registers


def test_meter_float_high_word_first() -> None:
    meter = MeterModel("sdm120")
    meter.update([1.0], [0.0], [-2.0], 50.0, 0.0)
    assert meter.read_input(0, 2) == [0x3F80, 0x0000]
    assert meter.read_input(12, 2) == [0xC000, 0x0000]


def test_frozen_meter_keeps_the_last_values() -> None:
    meter = MeterModel("sdm630")
    meter.update([230.0] * 3, [1.0] * 3, [230.0] * 3, 50.0, 1.0)
    meter.frozen = True
    meter.update([230.0] * 3, [9.0] * 3, [2070.0] * 3, 50.0, 2.0)
    assert floats(meter.read_input(6, 6)) == [1.0, 1.0, 1.0]
    assert meter.updates == 1
    meter.frozen = False
    meter.update([230.0] * 3, [9.0] * 3, [2070.0] * 3, 50.0, 2.0)
    assert floats(meter.read_input(6, 6)) == [9.0, 9.0, 9.0]


def test_meter_refuses_wrong_shapes_and_kinds() -> None:
    with pytest.raises(ValueError, match="kind"):
        MeterModel("sdm72")
    meter = MeterModel("sdm120")
    with pytest.raises(ValueError, match="amps needs 1"):
        meter.update([230.0], [1.0, 2.0, 3.0], [1.0], 50.0, 0.0)
