"""The session layer's side of the loop: the power it judges (the device's own W, VA only as
the fallback), the bays' plausible power from the config, and the wall clock's sync state."""

from __future__ import annotations

import pytest

from chargectl.adapters.sessions import SessionLink, max_power_w
from chargectl.config.schema import SessionSettings
from chargectl.control.allocation import make_allocator
from chargectl.control.core import ControlCore
from chargectl.control.layout import build_layout
from chargectl.control.observe import Observation
from chargectl.runtime.contracts import Poll, Tap
from chargectl.sessions.cards import Card, parse_uid
from chargectl.sessions.machine import BayObservation
from chargectl.sessions.manager import SessionManager
from chargectl.sessions.records import SessionStart
from tests.control.sheds import two_row_shed
from tests.sessions.rig import FakeLedger

UID = "04A1B2C3"


class Recording(SessionManager):
    def update(self, now: float, wall: float, obs: dict[str, BayObservation]) -> None:  # type: ignore[override]
        self.seen = dict(obs)
        super().update(now, wall, obs)


def _link(synced: list[bool | None] | None = None) -> tuple[SessionLink, Recording, ControlCore]:
    shed = two_row_shed(ports=2, port_power_limit_w=1500)
    lay = build_layout(shed)
    core = ControlCore(shed, lay, make_allocator(lay))
    ledger = FakeLedger([Card(parse_uid(UID), "flat 1")])
    mgr = Recording(
        SessionSettings(), ledger, [b.id for b in lay.bays], max_power_w=max_power_w(shed, lay)
    )
    link = SessionLink(mgr, lay, wall_synced=None if synced is None else lambda: synced[0])
    link.restore({b.id: 0 for b in lay.bays}, wall=1.0e9, now=0.0)
    return link, mgr, core


def test_max_power_from_the_config() -> None:
    shed = two_row_shed(ports=2, port_power_limit_w=1500, phases=3)
    got = max_power_w(shed, build_layout(shed))
    margin = 1.25  # sessions.counter_power_margin's default
    assert got["pa/1"] == got["pb/2"] == 1500 * margin
    assert got["wb"] == pytest.approx(16.0 * 3 * 220.0 * 1.1 * margin)


def test_the_device_power_and_the_va_reach_the_session_layer() -> None:
    link, mgr, core = _link()
    obs = Observation.empty(link.layout)
    obs.bay_up[:] = True
    poll = Poll(observation=obs, counters_wh={b.id: 0 for b in link.layout.bays})
    poll.power_w.update({"pa/1": 2.0, "pa/2": None})
    poll.va = {"pa/1": 4.5, "pa/2": 80.0}  # type: ignore[attr-defined]  # the adapter's new field
    link.update(1.0, 1.0e9 + 1, poll, core)
    assert (mgr.seen["pa/1"].power_w, mgr.seen["pa/1"].va, mgr.seen["pa/1"].power) == (
        2.0,
        4.5,
        2.0,
    )
    assert mgr.seen["pa/2"].power == 80.0  # no power reported: VA


def test_a_poll_without_va_still_works() -> None:
    link, mgr, core = _link()
    obs = Observation.empty(link.layout)
    obs.bay_up[:] = True
    poll = Poll(observation=obs, power_w={"pa/1": 50.0})
    link.update(1.0, 1.0e9 + 1, poll, core)
    assert mgr.seen["pa/1"].power == 50.0 and mgr.seen["pa/1"].va is None


def test_the_link_asks_the_clock_whether_it_is_synchronized() -> None:
    state: list[bool | None] = [False]
    link, mgr, core = _link(state)
    link.on_tap(Tap("pa/1", UID), 1.0, 1.0e9 + 1)
    (start,) = mgr._ledger.of(SessionStart)  # type: ignore[attr-defined]
    assert start.clock_ok is False and mgr.readout().clock_synced is False
    state[0] = None  # unknown counts as synchronized (the unit waited for time-sync.target)
    obs = Observation.empty(link.layout)
    link.update(2.0, 1.0e9 + 2, Poll(observation=obs), core)
    assert mgr.readout().clock_synced is True
