"""The core with devices that stop answering and alarms from a pile (found against the
simulator: tests/integration/test_faults.py)."""

from __future__ import annotations

import numpy as np

from chargectl.control.failsafe import failsafe_masks, worst_case_failsafe_a
from chargectl.control.layout import circuit_load
from tests.control.sheds import core_rig, want

# A socket in fail-safe: the 1000 W cut-off at 198 V (220 V - 10 %) and power factor 0.5.
PORT_A = 1000 / (198.0 * 0.5)


def test_a_silent_pile_counts_at_its_worst_case_for_as_long_as_it_is_silent() -> None:
    # Row B is unmetered: nothing but the worst case stands for pile b while it is silent.
    lay, core, obs = core_rig(
        ports=4, row_limit=30.0, main_limit=30.0, worst=2.0, port_power_limit_w=1000
    )
    assert core.failsafe_cost_a[0] == PORT_A
    demand = want(lay, ["pb/1", "pb/2", "pb/3", "pa/1"])
    for t in range(3):
        d = core.step(float(t), obs, demand)
        obs.bay_current_a[:] = np.where(core.on & lay.socket, 2.0, 0.0)
        obs.meter_a[0, 0] = circuit_load(lay, obs.bay_current_a)[0, 0]
    mask_b = d.failsafe_mask["pb"]
    assert mask_b, "pile b charges: some of its sockets stay on in failsafe"
    plan_b = float(d.setpoint_a[lay.pile_slices["pb"]].sum())
    worst_b = max(plan_b, bin(mask_b).count("1") * PORT_A)

    obs.bay_up[lay.pile_slices["pb"]] = False
    obs.bay_current_a[lay.pile_slices["pb"]] = 0.0
    row_b = lay.circuit_ids.index("row-b")
    for t in range(3, 10):
        d = core.step(float(t), obs, demand)
        assert d.unmanaged_a[row_b, 0] >= worst_b - 1e-9, f"tick {t}: worst case forgotten"
        assert d.failsafe_mask["pb"] == mask_b  # the pile keeps what it was last told
        assert (d.planned_a <= d.limit_a + 1e-9).all()
        # Every mask together, the silent pile's included, still fits on its own.
        worst = worst_case_failsafe_a(lay, core.failsafe_cost_a, d.failsafe_mask)
        assert (worst <= lay.limit_a + 1e-9).all()

    obs.bay_up[:] = True  # back: its bays are planned again like any other
    d = core.step(10.0, obs, demand)
    assert d.unmanaged_a[row_b, 0] < worst_b


def test_held_masks_are_charged_to_the_budget_first() -> None:
    lay, core, _ = core_rig(
        ports=4, row_limit=30.0, main_limit=20.0, worst=2.0, port_power_limit_w=1000
    )
    on = np.zeros(lay.n_bays, dtype=np.bool_)
    on[lay.pile_slices["pa"]] = True
    # main: 20 - 2 = 18 A of fail-safe budget, one port at 10.1 A. Pile b holds one.
    masks = failsafe_masks(lay, core.failsafe_cost_a, on, {"pb": 0b0001})
    assert masks["pb"] == 0b0001
    assert bin(masks["pa"]).count("1") == 0  # 10.1 + 10.1 > 18: no room left for pile a
    free = failsafe_masks(lay, core.failsafe_cost_a, on)
    assert bin(free["pa"]).count("1") == 1


def test_an_alarm_keeps_its_kind_and_names_its_pile() -> None:
    lay, core, obs = core_rig()
    obs.alarm, obs.alarm_at = "smoke", "pb"
    d = core.step(0.0, obs, want(lay, ["pa/1"]))
    assert (d.alarm, d.alarm_at) == ("smoke", "pb")  # the kind is what metrics label
    assert any("smoke at pb" in n for n in d.notes)
    assert not d.relay_on.any()
    obs.alarm = obs.alarm_at = None
    assert core.step(1.0, obs, want(lay, ["pa/1"])).alarm == "smoke"  # latched
    core.clear_alarm()
    d = core.step(2.0, obs, want(lay, ["pa/1"]))
    assert (d.alarm, d.alarm_at) == (None, None)
