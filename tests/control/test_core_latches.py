"""A restart's latches handed to a new core (`ControlCore.restore_latches`): the first step of
the restarted core opens what they cover, relays found closed included, and closes nothing
there until staff clear them."""

from __future__ import annotations

import numpy as np

from tests.control.sheds import core_rig, want


def test_a_restored_alarm_opens_every_relay_found_closed_and_offers_nothing() -> None:
    lay, core, obs = core_rig()
    bays = ["pa/1", "pa/2", "pb/1", "wb"]
    core.on = lay.socket.copy()  # relays found closed at the restart (taken as on)
    core.restore_latches("smoke", "pb", {})
    for t in range(5):
        d = core.step(float(t), obs, want(lay, bays))
        assert not d.relay_on.any() and not d.setpoint_a.any(), t
        assert (d.alarm, d.alarm_at) == ("smoke", "pb")
    core.clear_alarm()
    after = 5.0 + core.settings.min_off_s  # the sockets opened at the restart wait min_off
    d = core.step(after, obs, want(lay, bays))
    assert d.relay_on[[lay.bay_index[b] for b in bays[:3]]].all() and d.alarm is None


def test_restored_holds_keep_their_bays_out_until_cleared() -> None:
    lay, core, obs = core_rig()
    j = lay.bay_index["pa/3"]
    core.restore_latches(None, None, {j: "over_temp"})
    assert core.alarm is None and core.held_why == {j: "over_temp"}
    for t in range(5):
        d = core.step(float(t), obs, want(lay, ["pa/3", "pa/4"]))
        assert not d.relay_on[j] and d.bay_state[j] == "fault"
        assert d.relay_on[lay.bay_index["pa/4"]]
    core.clear_fault(j)
    d = core.step(5.0, obs, want(lay, ["pa/3", "pa/4"]))
    assert d.relay_on[j]
    assert np.flatnonzero(core.held_out).size == 0
