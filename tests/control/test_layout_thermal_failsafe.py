from __future__ import annotations

import numpy as np
import pytest

from chargectl.control.failsafe import failsafe_masks, worst_case_failsafe_a
from chargectl.control.layout import build_layout, circuit_load
from chargectl.control.thermal import K_NO_TRIP, BreakerThermal, Derate
from tests.control.sheds import two_row_shed


def test_layout_orders_circuits_and_bays() -> None:
    lay = build_layout(two_row_shed(ports=4))
    assert lay.circuit_ids == ("main", "row-a", "row-b")
    assert list(lay.parent) == [-1, 0, 0]
    assert [b.id for b in lay.bays] == [
        "pa/1",
        "pa/2",
        "pa/3",
        "pa/4",
        "pb/1",
        "pb/2",
        "pb/3",
        "pb/4",
        "wb",
    ]
    assert lay.pile_slices["pb"] == slice(4, 8)
    assert lay.evse_index == {"wb": 8}
    # every bay is under main; pile a's only under row-a
    assert lay.under[0].all()
    assert list(lay.under[1]) == [True] * 4 + [False] * 5
    # unmetered rows have no worst-case unmanaged unless configured; main has 2 A on L1 only
    assert lay.unmanaged_worst_a[0].tolist() == [2.0, 0.0, 0.0]


def test_circuit_load_sums_subtrees_per_phase() -> None:
    lay = build_layout(two_row_shed(phases=3, ports=2))
    amps = np.array([1.0, 2.0, 3.0, 4.0, 10.0])
    load = circuit_load(lay, amps)
    assert load[1].tolist() == [3.0, 0.0, 0.0]
    assert load[2].tolist() == [7.0, 0.0, 0.0]
    # the 3-phase wallbox draws its current on every phase of main
    assert load[0].tolist() == [20.0, 10.0, 10.0]


def test_thermal_settles_below_derate_at_rating_and_heats_above() -> None:
    th = BreakerThermal(np.array([32.0]))
    for _ in range(3000):
        th.step(1.0, np.array([[32.0, 0.0, 0.0]]))
    assert th.ratio()[0] == pytest.approx(1 / K_NO_TRIP**2, rel=1e-6)
    assert th.ratio()[0] < 0.8
    for _ in range(60):
        th.step(1.0, np.array([[48.0, 0.0, 0.0]]))
    assert th.ratio()[0] > 0.8
    # cooling is exponential towards zero
    before = th.ratio()[0]
    th.step(120.0, np.zeros((1, 3)))
    assert th.ratio()[0] == pytest.approx(before * np.exp(-1.0), rel=1e-6)


def test_derate_has_hysteresis() -> None:
    d = Derate(above=0.8, below=0.7, factor=0.5)
    limit = np.array([[10.0, 10.0, 10.0]])
    assert d.apply(np.array([0.79]), limit)[0, 0] == 10.0
    assert d.apply(np.array([0.81]), limit)[0, 0] == 5.0
    assert d.apply(np.array([0.75]), limit)[0, 0] == 5.0  # still hot
    assert d.apply(np.array([0.69]), limit)[0, 0] == 10.0


def test_failsafe_masks_fit_every_circuit_at_the_port_cut_off() -> None:
    shed = two_row_shed(ports=8, row_limit=16.0, main_limit=30.0, port_power_limit_w=1000)
    lay = build_layout(shed)
    port_a = np.where(lay.socket, 1000 / 220.0, 0.0)
    everything_on = lay.socket.copy()
    masks = failsafe_masks(lay, port_a, everything_on)
    worst = worst_case_failsafe_a(lay, port_a, masks)
    assert (worst <= lay.limit_a + 1e-9).all()
    kept = sum(bin(m).count("1") for m in masks.values())
    # 16 A rows take 3 sockets of 4.55 A each; main (30 - 2 worst) takes all 6
    assert masks == {"pa": 0b111, "pb": 0b111}
    assert kept == 6


def test_failsafe_keeps_only_charging_sockets() -> None:
    lay = build_layout(two_row_shed(ports=8))
    port_a = np.where(lay.socket, 2000 / 220.0, 0.0)
    on = np.zeros(lay.n_bays, dtype=bool)
    on[5] = True  # pa/6
    assert failsafe_masks(lay, port_a, on) == {"pa": 1 << 5, "pb": 0}
