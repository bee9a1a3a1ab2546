"""The paths to an overload an independent review found (issue 8), each closed in the core.

Each test drives the pure core with the readings a real shed would give and checks what the
TRUE current would be (the physical sum), not only the core's own estimate."""

from __future__ import annotations

import numpy as np
import pytest

from chargectl.config.schema import ControlSettings
from chargectl.control.core import ControlCore
from chargectl.control.failsafe import WORST_POWER_FACTOR, worst_case_failsafe_a
from chargectl.control.layout import Layout, circuit_load
from chargectl.control.observe import Observation
from tests.control.sheds import core_rig, want


def sockets(lay: Layout, pile: str) -> list[str]:
    return [b.id for b in lay.bays[lay.pile_slices[pile]]]


def draw(lay: Layout, core: ControlCore, obs: Observation, each: float, unmanaged: float) -> float:
    """Sockets that are on draw `each`; returns the true current on main (L1)."""
    obs.bay_current_a[:] = np.where(core.on & lay.socket, each, obs.bay_current_a)
    obs.bay_current_a[lay.socket & ~core.on] = 0.0
    true = circuit_load(lay, obs.bay_current_a)[0, 0] + unmanaged
    obs.meter_a[0, 0] = true
    return float(true)


# -- fail-safe budget -----------------------------------------------------------------------


@pytest.mark.parametrize("watts", [1000, 2000, 3500])
def test_failsafe_budget_holds_at_the_lowest_voltage_and_worst_power_factor(watts: int) -> None:
    lay, core, obs = core_rig(ports=8, row_limit=30.0, main_limit=40.0, port_power_limit_w=watts)
    demand = want(lay, sockets(lay, "pa") + sockets(lay, "pb"))
    for t in range(4):
        d = core.step(float(t), obs, demand)
        draw(lay, core, obs, 2.0, 2.0)
    # True worst case in fail-safe: every mask bit at the cut-off, at 198 V and power factor 0.5
    true_cut_a = watts / (198.0 * WORST_POWER_FACTOR)
    on = sum(bin(m).count("1") for m in d.failsafe_mask.values())
    assert core.failsafe_cost_a[0] == pytest.approx(true_cut_a)
    assert on * true_cut_a + 2.0 <= 40.0 + 1e-9
    worst = worst_case_failsafe_a(lay, core.failsafe_cost_a, d.failsafe_mask)
    assert (worst <= lay.limit_a + 1e-9).all()


def test_failsafe_budget_counts_the_unmanaged_load_the_meter_shows_above_its_worst_case() -> None:
    lay, core, obs = core_rig(
        ports=8, row_limit=40.0, main_limit=40.0, worst=2.0, port_power_limit_w=1000
    )
    demand = want(lay, sockets(lay, "pa"))
    for t in range(4):
        d = core.step(float(t), obs, demand)
        draw(lay, core, obs, 2.0, 2.0)
    assert bin(d.failsafe_mask["pa"]).count("1") == 3  # (40 - 2) / 10.1 A
    for t in range(4, 8):  # 15 A of unmanaged load: it is there when the controller dies too
        d = core.step(float(t), obs, demand)
        draw(lay, core, obs, 2.0, 15.0)
    assert bin(d.failsafe_mask["pa"]).count("1") == 2  # (40 - 15) / 10.1 A


# -- meters -----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["lost", "frozen"])
def test_a_lost_meter_keeps_what_it_measured_above_the_worst_case(how: str) -> None:
    lay, core, obs = core_rig(ports=8, row_limit=30.0, main_limit=30.0, worst=2.0)
    demand = want(lay, sockets(lay, "pa"))
    unmanaged = 10.0
    for t in range(10):
        core.step(float(t), obs, demand)
        draw(lay, core, obs, 2.0, unmanaged)
    on_before = int(core.on.sum())
    for t in range(10, 30):
        value = obs.meter_a[0, 0]
        true = draw(lay, core, obs, 2.0, unmanaged)
        obs.meter_a[0, 0] = np.nan if how == "lost" else value
        d = core.step(float(t), obs, demand)
        assert d.unmanaged_a[0, 0] >= unmanaged - 1e-9, f"t={t}"
        assert true <= 30.0 + 1e-9, f"t={t}: {true} A on a 30 A limit"
    assert int(core.on.sum()) <= on_before


def test_a_lost_meter_keeps_a_steady_measurement_not_a_one_sample_spike() -> None:
    lay, core, obs = core_rig(ports=8, row_limit=30.0, main_limit=30.0, worst=2.0)
    demand = want(lay, sockets(lay, "pa")[:2])
    for t in range(6):
        core.step(float(t), obs, demand)
        draw(lay, core, obs, 2.0, 1.0)
    obs.meter_a[0, 0] += 12.0  # one sample with an inrush spike in its RMS window
    core.step(6.0, obs, demand)
    obs.meter_a[0, 0] = np.nan  # then the meter dies
    d = core.step(7.0, obs, demand)
    assert d.unmanaged_a[0, 0] == pytest.approx(2.0)  # the worst case, not 13 A
    # The same 12 A in two samples running is load: a meter lost after it keeps it.
    lay, core, obs = core_rig(ports=8, row_limit=30.0, main_limit=30.0, worst=2.0)
    for t in range(6):
        core.step(float(t), obs, demand)
        draw(lay, core, obs, 2.0, 1.0 + (12.0 + 0.1 * t if t >= 4 else 0.0))
    core.step(6.0, obs, demand)
    obs.meter_a[0, 0] = np.nan
    d = core.step(7.0, obs, demand)
    assert d.unmanaged_a[0, 0] >= 13.4 - 1e-9


# -- wallboxes ----------------------------------------------------------------------------------


def test_a_lowered_wallbox_is_counted_at_its_draw_until_the_car_follows() -> None:
    settings = ControlSettings(min_on_s=0.0, min_off_s=0.0)
    lay, core, obs = core_rig(ports=8, row_limit=30.0, main_limit=30.0, worst=0.0, control=settings)
    w = lay.evse_index["wb"]
    obs.wallbox_plugged[w] = True
    obs.wallbox_hw_max_a[w] = 16.0
    obs.bay_current_a[w] = 16.0
    obs.meter_a[0, 0] = 16.0
    core.setpoint[w] = 16.0
    core.on[w] = True
    demand = want(lay, ["wb", *sockets(lay, "pa")])
    # The car charged 10 kWh, the sockets nothing and more than a turn's margin less: they are
    # served first and the wallbox is lowered.
    demand.credit[w] = 10_000.0
    car = 16.0
    for t in range(12):
        d = core.step(float(t), obs, demand)
        offer = float(d.setpoint_a[w])
        sockets_on = float(np.where(lay.socket & core.on, 2.5, 0.0).sum())
        # the truth while the car follows its lower offer: what it still draws, plus sockets
        assert car + sockets_on <= 30.0 + 1e-9, f"t={t}: car {car} A + sockets {sockets_on} A"
        car = max(offer, car - 2.0)  # a slow car: 2 A a second
        obs.bay_current_a[:] = np.where(lay.socket & core.on, 2.5, 0.0)
        obs.bay_current_a[w] = car
        obs.meter_a[0, 0] = circuit_load(lay, obs.bay_current_a)[0, 0]
    assert car == offer < 16.0
    assert int((lay.socket & core.on).sum()) >= 5  # the freed current went to sockets after all


# -- silent devices -----------------------------------------------------------------------------


def test_a_device_never_read_counts_at_its_worst_case() -> None:
    lay, core, obs = core_rig(
        ports=4, row_limit=30.0, main_limit=40.0, worst=0.0, port_power_limit_w=1000
    )
    sl = lay.pile_slices["pb"]
    obs.bay_up[sl] = False
    obs.failsafe_on = np.zeros(lay.n_bays, dtype=np.bool_)
    obs.failsafe_on[sl] = True  # its mask is unknown: every port may be on
    d = core.step(0.0, obs, want(lay, sockets(lay, "pa")))
    row_b = lay.circuit_ids.index("row-b")
    assert d.unmanaged_a[row_b, 0] == pytest.approx(4 * core.failsafe_cost_a[sl.start])


def test_a_silent_pile_under_a_meter_counts_once() -> None:
    """The meter still sees the silent pile's draw: it must not count again on top of its worst
    case, or a row goes 'infeasible' and every healthy socket goes off."""
    settings = ControlSettings(min_on_s=0.0, min_off_s=0.0)
    lay, core, obs = core_rig(
        ports=4,
        row_limit=30.0,
        main_limit=40.0,
        worst=2.0,
        port_power_limit_w=1000,
        control=settings,
    )
    demand = want(lay, sockets(lay, "pa") + sockets(lay, "pb"))
    for t in range(4):
        core.step(float(t), obs, demand)
        draw(lay, core, obs, 2.0, 1.0)
    sl = lay.pile_slices["pb"]
    assert core.on[sl].all()
    obs.bay_up[sl] = False  # its 4 x 2 A stay in the meter's reading
    d = core.step(4.0, obs, demand)
    plan_b = float(core.setpoint[sl].sum())  # what it was last told: 4 x (2 A + margin)
    mask_b = bin(d.failsafe_mask["pb"]).count("1") * float(core.failsafe_cost_a[sl.start])
    worst_b = max(plan_b, mask_b)
    # unmanaged on main: 1 A measured (the pile's 8 A taken out of the residual) + pile b once
    assert d.unmanaged_a[0, 0] == pytest.approx(1.0 + worst_b)
    assert core.on[lay.pile_slices["pa"]].all()


# -- unconfirmed commands -----------------------------------------------------------------------


def test_a_relay_whose_open_failed_counts_its_draw_and_is_not_called_welded() -> None:
    settings = ControlSettings(min_on_s=0.0, min_off_s=0.0)
    lay, core, obs = core_rig(ports=8, row_limit=30.0, main_limit=20.0, worst=0.0, control=settings)
    demand = want(lay, sockets(lay, "pa"))
    for t in range(3):
        core.step(float(t), obs, demand)
        draw(lay, core, obs, 2.0, 0.0)
    j = lay.bay_index["pa/1"]
    assert core.on[j]
    demand.wants[j] = False  # the resident stops: the open write fails
    core.step(3.0, obs, demand)
    assert not core.on[j]
    obs.command_unsure = np.zeros(lay.n_bays, dtype=np.bool_)
    obs.command_unsure[j] = True
    for t in range(4, 10):
        obs.bay_current_a[j] = 2.0  # still closed, still drawing
        d = core.step(float(t), obs, demand)
        planned = float(d.unmanaged_a[0, 0]) + float(
            np.where(lay.socket & core.on, d.setpoint_a, 0).sum()
        )
        assert planned >= 2.0 + float((lay.socket & core.on).sum()) * 2.0
        assert not d.welded[j]


def test_an_unconfirmed_mask_is_charged_first_and_only_shrinks() -> None:
    lay, core, obs = core_rig(
        ports=4, row_limit=30.0, main_limit=30.0, worst=2.0, port_power_limit_w=1000
    )
    demand = want(lay, sockets(lay, "pa") + sockets(lay, "pb"))
    for t in range(3):
        d = core.step(float(t), obs, demand)
        draw(lay, core, obs, 2.0, 0.0)
    # a write moving the budget from pile a to pile b failed: pile a may still hold 0b11
    obs.failsafe_on = np.zeros(lay.n_bays, dtype=np.bool_)
    obs.failsafe_on[lay.pile_slices["pa"]] = [True, True, False, False]
    core.failsafe_mask = {"pa": 0b00, "pb": 0b11}
    d = core.step(3.0, obs, demand)
    assert d.failsafe_mask["pa"] & ~0b11 == 0  # only shrinks
    possible = {"pa": 0b11 | d.failsafe_mask["pa"], "pb": d.failsafe_mask["pb"]}
    worst = worst_case_failsafe_a(lay, core.failsafe_cost_a, possible)
    assert (worst <= lay.limit_a + 1e-9).all()


# -- pile alarms ---------------------------------------------------------------------------------


def test_a_supply_fault_cuts_the_pile_and_an_overheated_cabinet_takes_no_more() -> None:
    settings = ControlSettings(min_on_s=900.0, min_off_s=0.0)
    lay, core, obs = core_rig(ports=4, row_limit=30.0, main_limit=30.0, control=settings)
    demand = want(lay, sockets(lay, "pa")[:2] + sockets(lay, "pb")[:2])
    for t in range(3):
        core.step(float(t), obs, demand)
        draw(lay, core, obs, 2.0, 0.0)
    demand = want(lay, sockets(lay, "pa") + sockets(lay, "pb"))
    obs.pile_alarms = {"pa": "supply_fault", "pb": "pile_overtemp"}
    d = core.step(3.0, obs, demand)
    pa, pb = lay.pile_slices["pa"], lay.pile_slices["pb"]
    assert not d.relay_on[pa].any()  # cut, min_on or not
    assert all(s == "disabled" for s in d.bay_state[pa])
    assert d.relay_on[pb].tolist() == [True, True, False, False]  # no more current
    assert d.failsafe_mask == {"pa": 0, "pb": 0}
    assert d.pile_alarms == {"pa": "supply_fault", "pb": "pile_overtemp"}
    assert any("supply_fault at pa" in n for n in d.notes)
    obs.pile_alarms = {}
    d = core.step(4.0, obs, demand)
    assert d.relay_on[pb].all() and any("cleared" in n for n in d.notes)


# -- between ticks ---------------------------------------------------------------------------


def test_a_shed_between_ticks_only_lowers() -> None:
    settings = ControlSettings(min_on_s=900.0, min_off_s=0.0)
    lay, core, obs = core_rig(ports=8, row_limit=30.0, main_limit=20.0, worst=0.0, control=settings)
    demand = want(lay, sockets(lay, "pa")[:4])
    for t in range(3):
        core.step(float(t), obs, demand)
        draw(lay, core, obs, 2.0, 0.0)
    before = core.on.copy()
    masks = dict(core.failsafe_mask)
    demand = want(lay, sockets(lay, "pa"))  # more want current: a shed must not admit them
    obs.meter_a[0, 0] = 8.0 + 15.0  # a 15 A load steps in: 23 A on a 20 A limit
    d = core.step(3.2, obs, demand, shed_only=True)
    assert not (d.relay_on & ~before).any()
    assert (d.relay_on & before).sum() < before.sum()  # pinned or not: shed now
    assert all(m & ~masks[p] == 0 for p, m in d.failsafe_mask.items())
