"""The pile's register image and behaviour, against ../shared/hardware/pile.md (no network)."""

from __future__ import annotations

import numpy as np
import pytest

from chargectl.sim.devices.pile import PileModel
from tests.sim_devices.simdev_helpers import run_pile, s16

N = 12


@pytest.fixture
def pile() -> PileModel:
    return PileModel(N)


def hot(pile: PileModel) -> list[int]:
    block = pile.read_input(0, 80)
    assert isinstance(block, list)
    return block


def holding(pile: PileModel, addr: int, count: int = 1) -> list[int]:
    values = pile.read_holding(addr, count)
    assert isinstance(values, list), f"holding {addr}: exception {values}"
    return values


def close_all(pile: PileModel) -> None:
    assert pile.write_holding(16, [1] * pile.ports) is None


# --------------------------------------------------------------------------- hot block
def test_hot_block_identity_and_measurements(pile: PileModel) -> None:
    close_all(pile)
    amps = [0.5 + 0.25 * i for i in range(N)]
    run_pile(pile, 0.0, 0.1, amps=amps, watts=100.0, supply_v=221.3, cabinet_c=-4.2)
    block = hot(pile)
    assert block[0:3] == [0x4350, 1, N]
    assert block[3] == 0  # no failsafe, smoke, heat, supply fault or e-stop
    assert s16(block[4]) == -42
    assert block[5] == 2213
    assert block[6:13] == [0, 0, 0, 0, 0, 0, 0]  # no tap yet, watchdog disabled
    assert block[13] == round(sum(amps) * 100)
    assert block[14:16] == [0, 0]
    assert block[16 : 16 + N] == [round(a * 1000) for a in amps]
    assert block[16 + N : 48] == [0] * (32 - N)  # ports above N read 0
    assert block[48 : 48 + N] == [0b11] * N  # relay closed, load present, no fault
    assert block[48 + N : 80] == [0] * (32 - N)


def test_load_present_threshold_is_20_ma(pile: PileModel) -> None:
    close_all(pile)
    run_pile(pile, 0.0, 0.1, amps=[0.019, 0.020] + [0.0] * (N - 2))
    block = hot(pile)
    assert block[48] == 0b01 and block[49] == 0b11 and block[50] == 0b01


def test_reads_inside_the_hot_block_at_any_offset(pile: PileModel) -> None:
    assert pile.read_input(79, 1) == [0]
    assert pile.read_input(2, 1) == [N]
    assert pile.read_input(70, 10) == [0] * 10


def test_slow_blocks(pile: PileModel) -> None:
    close_all(pile)
    watts = [float(100 * (i + 1)) for i in range(N)]
    temps = [20.0 + i - 30.0 * (i == 0) for i in range(N)]
    run_pile(pile, 0.0, 3600.0, amps=1.0, watts=watts, temp=temps, dt=1.0)
    energy = pile.read_input(100, 2 * N)
    assert isinstance(energy, list)
    wh = [(energy[2 * i] << 16) | energy[2 * i + 1] for i in range(N)]
    assert wh == [round(w) for w in watts]  # 1 h at W watts = W Wh
    assert pile.read_input(200, N) == [round(w) for w in watts]
    temp_regs = pile.read_input(240, N)
    assert isinstance(temp_regs, list)
    assert [s16(v) for v in temp_regs] == [round(t * 10) for t in temps]
    assert s16(temp_regs[0]) == -100


def test_energy_counter_wraps_at_2_pow_32_high_word_first(pile: PileModel) -> None:
    pile.set_energy_wh(3, 2**32 - 2 + 0.5)
    assert pile.read_input(104, 2) == [0xFFFF, 0xFFFE]
    close_all(pile)
    run_pile(pile, 0.0, 3.0, amps=1.0, watts=1200.0, dt=1.0)  # + 1 Wh
    assert pile.read_input(104, 2) == [0xFFFF, 0xFFFF]  # 2^32 - 0.5 Wh
    run_pile(pile, 3.0, 6.0, amps=1.0, watts=1200.0, dt=1.0)  # + 2 Wh
    assert pile.read_input(104, 2) == [0, 1]  # 2^32 + 1.5 Wh, wrapped


def test_port_current_saturates_instead_of_wrapping(pile: PileModel) -> None:
    close_all(pile)
    run_pile(pile, 0.0, 0.1, amps=[70.0] + [0.0] * (N - 1))
    assert hot(pile)[16] == 65535


# --------------------------------------------------------------------------- exceptions
@pytest.mark.parametrize(
    ("addr", "count"),
    [
        (80, 1),  # gap after the hot block
        (79, 2),  # runs into the gap
        (99, 1),
        (100 + 2 * N, 1),  # energy of port N+1
        (100, 2 * N + 1),
        (164, 1),
        (200 + N, 1),  # power of port N+1
        (232, 1),
        (240 + N, 1),
        (272, 1),
        (65535, 1),
    ],
)
def test_input_gaps_and_absent_ports_answer_02(pile: PileModel, addr: int, count: int) -> None:
    assert pile.read_input(addr, count) == 2


@pytest.mark.parametrize(("addr", "count"), [(6, 1), (5, 2), (15, 1), (16 + N, 1), (48 + N, 1)])
def test_holding_gaps_answer_02(pile: PileModel, addr: int, count: int) -> None:
    assert pile.read_holding(addr, count) == 2
    before = pile.snapshot()
    assert pile.write_holding(addr, [0] * count) == 2
    after = pile.snapshot()
    assert after["relay_cmd"] == before["relay_cmd"] and after["indicator"] == before["indicator"]


def test_read_count_out_of_range_answers_03(pile: PileModel) -> None:
    assert pile.read_input(0, 0) == 3
    assert pile.read_input(0, 126) == 3


def test_32_port_pile_serves_relay_and_indicator_blocks_in_one_read() -> None:
    big = PileModel(32)
    values = big.read_holding(16, 64)
    assert values == [0] * 64
    assert big.read_input(100, 64) == [0] * 64
    assert big.read_input(164, 1) == 2


@pytest.mark.parametrize(
    ("addr", "value"),
    [
        (4, 3501),  # port_power_limit above 3500
        (5, 0),  # fault_reset: neither a port nor 0xFFFF
        (5, N + 1),
        (16, 2),  # relay_cmd only 0 or 1
        (48, 8),  # indicator 0..7
        (2, 1),  # failsafe_mask bit 32..: ports the pile does not have
        (3, 1 << N),
    ],
)
def test_out_of_range_writes_answer_03_and_change_nothing(
    pile: PileModel, addr: int, value: int
) -> None:
    before = [holding(pile, 0, 6), holding(pile, 16, N), holding(pile, 48, N)]
    assert pile.write_holding(addr, [value]) == 3
    assert [holding(pile, 0, 6), holding(pile, 16, N), holding(pile, 48, N)] == before
    assert pile.writes.records()[-1].error == 3


def test_multi_register_write_is_all_or_nothing(pile: PileModel) -> None:
    assert pile.write_holding(16, [1, 1, 2, 1]) == 3
    assert holding(pile, 16, 4) == [0, 0, 0, 0]
    assert pile.write_holding(16, [1, 1, 0, 1]) is None
    assert holding(pile, 16, 4) == [1, 1, 0, 1]
    assert pile.contact_closed()[:4].tolist() == [True, True, False, True]


def test_config_registers_read_back(pile: PileModel) -> None:
    assert holding(pile, 0, 6) == [0, 0, 0, 0, 2000, 0]  # defaults
    assert pile.write_holding(0, [30, 7, 0x0000, 0x0A05, 1500]) is None
    assert holding(pile, 0, 6) == [30, 7, 0, 0x0A05, 1500, 0]
    assert pile.write_holding(48, [2, 7]) is None
    assert holding(pile, 48, 2) == [2, 7]


def test_writes_are_logged_bounded() -> None:
    pile = PileModel(4, write_log_size=3)
    for v in range(5):
        pile.write_holding(1, [v])
    pile.write_holding(16, [9])
    records = pile.writes.records()
    assert [(r.addr, r.values, r.error) for r in records] == [
        (1, (3,), None),
        (1, (4,), None),
        (16, (9,), 3),
    ]
    assert pile.writes.total == 6


# --------------------------------------------------------------------------- watchdog
def test_watchdog_failsafe_and_heartbeat(pile: PileModel) -> None:
    mask = 0b1010_0000_0101  # ports 1, 3, 10 and 12 stay closed in failsafe
    assert pile.write_holding(2, [mask >> 16, mask & 0xFFFF]) is None
    assert pile.write_holding(16, [0, 1, 1, 1] + [1] * (N - 4)) is None
    assert pile.write_holding(0, [5]) is None
    t = run_pile(pile, 0.0, 4.0)
    assert hot(pile)[12] == 1  # seconds left, rounded up
    assert hot(pile)[3] & 1 == 0
    t = run_pile(pile, t, 1.0)
    block = hot(pile)
    assert block[3] & 1 == 1  # failsafe
    assert block[12] == 0
    expected = [(mask >> p) & 1 for p in range(N)]
    assert holding(pile, 16, N) == expected  # relay_cmd reads back the failsafe value
    assert pile.contact_closed().astype(int).tolist() == expected
    assert [v & 1 for v in block[48 : 48 + N]] == expected
    # relay commands in failsafe are accepted and have no effect
    assert pile.write_holding(17, [1]) is None
    assert holding(pile, 17)[0] == 0
    t = run_pile(pile, t, 10.0)
    assert hot(pile)[3] & 1 == 1  # stays in failsafe until a heartbeat
    assert pile.write_holding(1, [42]) is None  # heartbeat
    assert hot(pile)[3] & 1 == 0
    assert holding(pile, 1)[0] == 42
    assert holding(pile, 16, N) == expected  # relays stay until commanded
    assert hot(pile)[12] == 5
    assert pile.write_holding(17, [1]) is None
    assert pile.contact_closed()[1]


def test_watchdog_disabled_by_default_and_by_zero(pile: PileModel) -> None:
    close_all(pile)
    t = run_pile(pile, 0.0, 100.0, dt=1.0)
    assert hot(pile)[3] & 1 == 0
    pile.write_holding(0, [3])
    pile.write_holding(0, [0])
    run_pile(pile, t, 100.0, dt=1.0)
    assert hot(pile)[3] & 1 == 0 and hot(pile)[12] == 0
    assert pile.contact_closed().all()


def test_heartbeats_keep_failsafe_away(pile: PileModel) -> None:
    pile.write_holding(0, [2])
    t = 0.0
    for beat in range(10):
        t = run_pile(pile, t, 1.5)
        pile.write_holding(1, [beat])
    assert hot(pile)[3] & 1 == 0


def test_failsafe_mask_write_during_failsafe_redrives(pile: PileModel) -> None:
    close_all(pile)
    pile.write_holding(0, [1])
    run_pile(pile, 0.0, 1.0)
    assert not pile.contact_closed().any()  # default mask: all open
    pile.write_holding(3, [0b11])
    assert pile.contact_closed()[:3].tolist() == [True, True, False]


# --------------------------------------------------------------------------- faults
def port_fault(pile: PileModel, port: int) -> int:
    return hot(pile)[48 + port - 1] >> 8


def test_over_power_latches_after_more_than_2_s(pile: PileModel) -> None:
    close_all(pile)
    watts = [2500.0] + [300.0] * (N - 1)
    t = run_pile(pile, 0.0, 2.0, amps=2.0, watts=watts)
    assert port_fault(pile, 1) == 0 and pile.contact_closed()[0]
    t = run_pile(pile, t, 0.1, amps=2.0, watts=watts)
    assert port_fault(pile, 1) == 1
    assert not pile.contact_closed()[0] and pile.contact_closed()[1]
    assert holding(pile, 16)[0] == 0
    # a close command is accepted and has no effect until fault_reset
    assert pile.write_holding(16, [1]) is None
    assert not pile.contact_closed()[0]
    assert pile.write_holding(5, [1]) is None
    assert holding(pile, 5)[0] == 0  # fault_reset reads 0
    assert port_fault(pile, 1) == 0
    assert not pile.contact_closed()[0]  # a reset never closes a relay by itself
    assert pile.write_holding(16, [1]) is None
    assert pile.contact_closed()[0]


def test_over_power_needs_continuous_excess(pile: PileModel) -> None:
    close_all(pile)
    t = 0.0
    for _ in range(5):
        t = run_pile(pile, t, 1.5, amps=10.0, watts=2200.0)
        t = run_pile(pile, t, 0.1, amps=1.0, watts=200.0)
    assert port_fault(pile, 1) == 0


def test_power_limit_register_and_zero_disables(pile: PileModel) -> None:
    close_all(pile)
    pile.write_holding(4, [0])
    t = run_pile(pile, 0.0, 10.0, amps=15.0, watts=3300.0)
    assert port_fault(pile, 1) == 0
    pile.write_holding(4, [1000])
    run_pile(pile, t, 2.5, amps=5.0, watts=1100.0)
    assert [port_fault(pile, p) for p in range(1, N + 1)] == [1] * N


def test_constructor_power_limit() -> None:
    pile = PileModel(2, port_power_limit_w=1000)
    assert pile.read_holding(4, 1) == [1000]


def test_over_temperature_latches_at_65_c(pile: PileModel) -> None:
    close_all(pile)
    t = run_pile(pile, 0.0, 1.0, amps=1.0, watts=200.0, temp=[64.9, 65.0] + [30.0] * (N - 2))
    assert port_fault(pile, 1) == 0 and port_fault(pile, 2) == 2
    assert pile.contact_closed()[0] and not pile.contact_closed()[1]
    # reset while still hot: it latches again at the next step
    pile.write_holding(5, [2])
    assert port_fault(pile, 2) == 0
    t = run_pile(pile, t, 0.1, temp=[30.0, 66.0] + [30.0] * (N - 2))
    assert port_fault(pile, 2) == 2
    pile.write_holding(5, [0xFFFF])
    run_pile(pile, t, 0.1, temp=30.0)
    assert port_fault(pile, 2) == 0


def test_welded_relay_reports_fault_3_and_stays_closed(pile: PileModel) -> None:
    pile.set_welded(4, True)
    assert pile.contact_closed()[3]  # stuck closed although commanded open
    t = run_pile(pile, 0.0, 0.1, amps=2.0, watts=400.0)
    assert port_fault(pile, 4) == 3
    assert hot(pile)[48 + 3] & 0b11 == 0b11  # contact feedback closed, load present
    assert hot(pile)[16 + 3] == 2000
    assert [port_fault(pile, p) for p in range(1, N + 1) if p != 4] == [0] * (N - 1)
    # a commanded-closed welded relay carrying current is not a fault
    pile.write_holding(5, [4])
    pile.write_holding(19, [1])
    run_pile(pile, t, 1.0, amps=2.0, watts=400.0)
    assert port_fault(pile, 4) == 0


def test_short_circuit_fault_4(pile: PileModel) -> None:
    close_all(pile)
    pile.set_short(7)
    assert port_fault(pile, 7) == 4 and not pile.contact_closed()[6]
    pile.write_holding(22, [1])
    assert not pile.contact_closed()[6]
    pile.write_holding(5, [0xFFFF])
    pile.write_holding(22, [1])
    assert pile.contact_closed()[6] and port_fault(pile, 7) == 0


def test_latched_port_stays_open_in_failsafe(pile: PileModel) -> None:
    pile.write_holding(2, [0, 0b111])
    pile.set_short(2)
    pile.write_holding(0, [1])
    run_pile(pile, 0.0, 1.0)
    assert pile.contact_closed()[:3].tolist() == [True, False, True]


# --------------------------------------------------------------------------- status inputs
@pytest.mark.parametrize(
    ("supply_v", "cabinet_c", "bits"),
    [
        (220.0, 69.9, 0),
        (220.0, 70.0, 0b100),
        (175.9, 25.0, 0b1000),
        (176.0, 25.0, 0),
        (264.0, 25.0, 0),
        (264.1, 25.0, 0b1000),
    ],
)
def test_cabinet_and_supply_status(
    pile: PileModel, supply_v: float, cabinet_c: float, bits: int
) -> None:
    run_pile(pile, 0.0, 0.1, supply_v=supply_v, cabinet_c=cabinet_c)
    assert hot(pile)[3] == bits


def test_smoke_and_emergency_stop(pile: PileModel) -> None:
    close_all(pile)
    pile.set_inputs(smoke=True)
    assert hot(pile)[3] == 0b10 and pile.contact_closed().all()  # smoke only reports
    pile.set_inputs(smoke=False, estop=True)
    assert hot(pile)[3] == 0b10000
    assert not pile.contact_closed().any()
    assert pile.write_holding(16, [1]) is None  # accepted, no effect
    assert not pile.contact_closed().any()
    pile.set_inputs(estop=False)
    assert not pile.contact_closed().any()  # released: relays stay open until commanded
    close_all(pile)
    assert pile.contact_closed().all()


# --------------------------------------------------------------------------- taps
def test_tap_registers_right_aligned_uid(pile: PileModel) -> None:
    pile.tap(3, bytes.fromhex("04a1b2c3"))
    assert hot(pile)[6:12] == [1, 0x0403, 0, 0, 0x04A1, 0xB2C3]
    pile.tap(12, bytes.fromhex("04112233445566"))
    assert hot(pile)[6:12] == [2, 0x070C, 0x0004, 0x1122, 0x3344, 0x5566]
    pile.tap(1, bytes.fromhex("0102030405060708"))
    assert hot(pile)[6:12] == [3, 0x0801, 0x0102, 0x0304, 0x0506, 0x0708]


def test_tap_seq_wraps_65535_to_1(pile: PileModel) -> None:
    for _ in range(65535):
        pile.tap(1, b"\x01\x02\x03\x04")
    assert hot(pile)[6] == 65535
    pile.tap(2, b"\x01\x02\x03\x05")
    assert hot(pile)[6] == 1


@pytest.mark.parametrize(("port", "uid"), [(0, b"1234"), (N + 1, b"1234"), (1, b"12345")])
def test_bad_taps_are_refused(pile: PileModel, port: int, uid: bytes) -> None:
    with pytest.raises(ValueError, match=r"port|UID"):
        pile.tap(port, uid)
    assert hot(pile)[6] == 0


# --------------------------------------------------------------------------- construction
@pytest.mark.parametrize("ports", [0, 33])
def test_port_count_is_checked(ports: int) -> None:
    with pytest.raises(ValueError, match="ports"):
        PileModel(ports)


def test_contact_closed_is_read_only(pile: PileModel) -> None:
    with pytest.raises(ValueError, match="read-only"):
        pile.contact_closed()[0] = True


def test_step_rejects_nonpositive_dt(pile: PileModel) -> None:
    z = np.zeros(N)
    with pytest.raises(ValueError, match="dt"):
        pile.step(0.0, 0.0, z, z, z, 220.0, 25.0)


def test_step_rejects_arrays_of_the_wrong_length(pile: PileModel) -> None:
    ok, short = np.zeros(N), np.zeros(N - 1)
    for args in ((short, ok, ok), (ok, short, ok), (ok, ok, np.zeros(N + 1))):
        with pytest.raises(ValueError, match="one value per port"):
            pile.step(0.1, 0.1, *args, 220.0, 25.0)


def test_power_cycle_reboots_to_defaults_and_keeps_energy() -> None:
    from chargectl.sim.devices.pile import PileModel

    pm = PileModel(4, 1500)
    assert pm.write_holding(0, [10, 7, 0, 0b0011, 1000]) is None
    assert pm.write_holding(16, [1, 1, 0, 0]) is None
    pm.set_energy_wh(2, 1234)
    pm.tap(1, bytes.fromhex("04A1B2C3"))
    pm.set_welded(4, True)
    pm.power_cycle()
    assert pm.read_holding(0, 6) == [0, 0, 0, 0, 1500, 0]
    assert pm.read_holding(16, 4) == [0, 0, 0, 0]
    assert pm.contact_closed().tolist() == [False, False, False, True]  # welded stays closed
    assert pm.read_input(6, 1) == [0]  # no tap since power-up
    assert pm.read_input(102, 2) == [0, 1234]
