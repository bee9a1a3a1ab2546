"""A bay held out by a critical fire-risk finding: never eligible, its relay opens at once
(inside min_on too), never a fail-safe bit, a wallbox offered nothing; staff clear it."""

from __future__ import annotations

import numpy as np

from tests.control.test_core import make, physical, want


def test_a_held_socket_opens_at_once_and_stays_out_until_cleared() -> None:
    shed, lay, core, obs = make(ports=8, row_limit=16.0, port_power_limit_w=1000)
    demand = want(lay, ["pa/1", "pa/2"])
    j = lay.bay_index["pa/1"]
    pile = lay.pile_slices["pa"]
    k = j - pile.start
    d = core.step(0.0, obs, demand)
    assert d.relay_on[j] and d.failsafe_mask["pa"] >> k & 1
    physical(lay, core, obs, 2.0)
    core.hold_out(j)
    d = core.step(1.0, obs, demand)  # inside min_on: a pin does not keep it on
    assert not d.relay_on[j] and d.setpoint_a[j] == 0.0
    assert not d.failsafe_mask["pa"] >> k & 1
    assert d.bay_state[j] == "fault"
    assert d.relay_on[lay.bay_index["pa/2"]], "the others go on"
    for t in range(2, 2 + int(shed.control.min_off_s) + 30, 5):
        physical(lay, core, obs, 2.0)
        d = core.step(float(t), obs, demand)
        assert not d.relay_on[j] and not d.failsafe_mask["pa"] >> k & 1
        # shed-only plans between ticks cannot close it either
        d = core.step(float(t) + 0.5, obs, demand, shed_only=True)
        assert not d.relay_on[j]
    core.clear_fault(j)
    d = core.step(1000.0, obs, demand)
    assert d.relay_on[j] and d.bay_state[j] == "charging"


def test_clear_welded_clears_a_hold_too() -> None:
    _shed, lay, core, _obs = make(ports=4)
    j = lay.bay_index["pa/3"]
    core.hold_out(j)
    core.clear_welded(j)
    assert not core.held_out.any()


def test_a_held_wallbox_is_offered_nothing() -> None:
    _shed, lay, core, obs = make(ports=4)
    wb = lay.evse_index["wb"]
    obs.wallbox_plugged[wb] = True
    obs.wallbox_hw_max_a[wb] = 16.0
    demand = want(lay, ["wb"])
    j = lay.bay_index["wb"]
    assert core.step(0.0, obs, demand).setpoint_a[j] >= 6.0
    core.hold_out(j)
    d = core.step(1.0, obs, demand)
    assert d.setpoint_a[j] == 0.0 and d.bay_state[j] == "fault"


def test_a_hold_only_ever_removes() -> None:
    """Random demands and holds over a minute of ticks: a held bay is never on and never
    offered current."""
    rng = np.random.default_rng(12)
    _s, lay, core, obs = make(ports=8)
    for t in range(60):
        demand = want(lay, [b.id for b in lay.bays if rng.random() < 0.7])
        if rng.random() < 0.2:
            core.hold_out(int(rng.integers(lay.n_bays)))
        physical(lay, core, obs, 2.0)
        d = core.step(float(t) * 3.0, obs, demand)
        assert not (d.relay_on & core.held_out).any()
        assert not (d.setpoint_a[core.held_out] > 0).any()
