"""The loop's side of the sessions: a faulted bay's lamp is red even while a tap's
"accepted" blink would show."""

from __future__ import annotations

import numpy as np

from chargectl.adapters.sessions import SessionLink
from chargectl.config.schema import SessionSettings
from chargectl.control.allocation import make_allocator
from chargectl.control.core import ControlCore
from chargectl.control.layout import build_layout
from chargectl.control.observe import FAULT_OVER_POWER, Observation
from chargectl.runtime.contracts import Poll, Tap
from chargectl.sessions.cards import Card, parse_uid
from chargectl.sessions.machine import Lamp
from chargectl.sessions.manager import SessionManager
from tests.control.sheds import two_row_shed
from tests.sessions.rig import FakeLedger

UID = "04A1B2C3"


def test_a_fault_turns_the_lamp_red_during_the_accepted_blink() -> None:
    shed = two_row_shed(ports=2)
    lay = build_layout(shed)
    core = ControlCore(shed, lay, make_allocator(lay))
    manager = SessionManager(
        SessionSettings(), FakeLedger([Card(parse_uid(UID), "flat 1")]), [b.id for b in lay.bays]
    )
    link = SessionLink(manager, lay)
    link.restore({b.id: 0 for b in lay.bays}, wall=1.0e9, now=0.0)
    obs = Observation.empty(lay)
    obs.bay_up[:] = True
    obs.meter_a[0, 0] = 0.0
    poll = Poll(observation=obs, counters_wh={b.id: 0 for b in lay.bays})
    link.on_tap(Tap("pa/1", UID), 0.0, 1.0e9)
    link.update(0.0, 1.0e9, poll, core)
    decision = core.step(0.0, obs, link.demand())
    j = lay.bay_index["pa/1"]
    assert link.lamps(decision)["pa/1"] == Lamp.ACCEPTED  # the blink, no fault yet
    obs.bay_fault[j] = FAULT_OVER_POWER
    decision = core.step(1.0, obs, link.demand())
    assert decision.bay_state[j] == "fault"
    assert link.lamps(decision)["pa/1"] == Lamp.FAULT
    assert link.lamps(decision)["pa/2"] == Lamp.AVAILABLE
    assert np.count_nonzero(decision.relay_on) == 0
