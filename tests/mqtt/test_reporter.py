"""The tick's side: the outbox never blocks and drops the oldest; the reporter turns ticks into
the state summary and into events, each once, when it happens; the backoff stays in bounds."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest

from chargectl.control.layout import Layout
from chargectl.outputs.mqtt import MqttReporter, Outbox, Outgoing, reconnect_delay
from chargectl.outputs.mqtt_outbox import encode as _encode
from chargectl.runtime.contracts import TickOutcome
from chargectl.sessions.machine import Reason
from chargectl.sessions.manager import EndedSession, TapOutcome, TapResult
from tests.mqtt.conftest import Fed, decision, tick


def msg(n: int) -> Outgoing:
    return Outgoing("t", {"n": n}, 1, False)


def test_the_outbox_drops_the_oldest_and_counts() -> None:
    box = Outbox(3)
    for n in range(5):
        box.put(msg(n))
    assert box.dropped == 2
    out = []
    while (m := box.peek()) is not None:
        out.append(m.payload)
        box.done(m)
    assert out == [{"n": 2}, {"n": 3}, {"n": 4}]


def test_a_message_dropped_while_in_flight_is_not_taken_twice() -> None:
    box = Outbox(2)
    box.put(msg(0))
    box.put(msg(1))
    flying = box.peek()
    assert flying is not None
    box.put(msg(2))  # drops msg 0, the one being published
    box.done(flying)  # must not remove msg 1
    rest = []
    while (m := box.peek()) is not None:
        rest.append(m.payload)
        box.done(m)
    assert rest == [{"n": 1}, {"n": 2}]


def test_the_state_is_one_slot_sent_after_the_events() -> None:
    box = Outbox(10)
    box.put_state(Outgoing("s", {"v": 1}, 0, True))
    box.put(msg(0))
    box.put_state(Outgoing("s", {"v": 2}, 0, True))
    seen = []
    while (m := box.peek()) is not None:
        seen.append(m.payload)
        box.done(m)
    assert seen == [{"n": 0}, {"v": 2}]
    assert box.dropped == 0


async def test_next_waits_for_a_message() -> None:
    box = Outbox(2)
    waiter = asyncio.create_task(box.next())
    await asyncio.sleep(0)
    assert not waiter.done()
    box.put(msg(7))
    assert (await asyncio.wait_for(waiter, 1)).payload == {"n": 7}


def test_reconnect_delay_grows_to_the_cap_with_jitter() -> None:
    rng = random.Random(3)
    for attempt in range(12):
        ceiling = min(60.0, 2.0**attempt)
        for _ in range(50):
            d = reconnect_delay(attempt, 60.0, rng.random())
            assert ceiling / 2 <= d <= ceiling
    assert reconnect_delay(0, 60, 0.0) == 0.5
    assert reconnect_delay(1000, 60, 0.999) == pytest.approx(59.97)
    assert reconnect_delay(3, 60, 0.5, base_s=0.1) == pytest.approx(0.6)


class Feed:
    """What the devices and sessions did, fed to a reporter tick by tick (see `Fed`)."""

    def __init__(self) -> None:
        self.up = {"pile-a1": True, "meter-main": True}
        self.taps: list[TapResult] = []
        self.settled: list[EndedSession] = []
        self.fed: Fed | None = None

    def reporter(self, layout: Layout, box: Outbox, interval: float = 10.0) -> Feed:
        self.fed = Fed(MqttReporter("campus", layout, box, state_interval_s=interval), layout)
        return self

    def report(self, outcome: TickOutcome) -> None:
        assert self.fed is not None
        self.fed.up, self.fed.taps, self.fed.settled = self.up, self.taps, self.settled
        self.fed.report(outcome)


def drain(box: Outbox) -> list[tuple[str, Any]]:
    out = []
    while (m := box.peek()) is not None:
        out.append((m.topic, json.loads(_encode(m.payload))))
        box.done(m)
    return out


def test_the_state_summary_every_interval(layout: Layout) -> None:
    box, feed = Outbox(100), Feed()
    rep = feed.reporter(layout, box, interval=10.0)
    states = {layout.bays[0].id: "charging", layout.bays[1].id: "charging"}
    states[layout.bays[2].id] = "waiting"
    published = []
    for now in range(25):
        rep.report(tick(layout, float(now), decision(layout, states=states)))
        published += [now for topic, _ in drain(box) if topic == "chargectl/campus/state"]
    assert published == [0, 10, 20]
    feed.up["meter-main"] = False
    rep.report(tick(layout, 30.0, decision(layout, states=states, current_a=41.5)))
    ((_topic, state),) = [m for m in drain(box) if m[0].endswith("/state")]
    assert state["shed"] == "campus"
    assert state["bays"]["charging"] == 2
    assert state["bays"]["waiting"] == 1
    assert state["bays"]["idle"] == layout.n_bays - 3
    assert state["devices_down"] == ["meter-main"]
    main = state["circuits"][0]
    assert main["id"] == "main"
    assert main["phases"] == [1, 2, 3]
    assert main["current_a"] == [41.5, 41.5, 41.5]
    assert main["limit_a"] == [float(x) for x in layout.limit_a[0]]
    assert state["alarm"] is None


def test_events_once_when_they_happen(layout: Layout) -> None:
    box, feed = Outbox(100), Feed()
    rep = feed.reporter(layout, box, interval=1e9)
    rep.report(tick(layout, 0.0, decision(layout)))
    drain(box)  # the first state
    feed.taps = [TapResult("pile-a1/3", "04A1B2C3", TapOutcome.STARTED, 17)]
    feed.settled = [EndedSession(16, "04D5E6F7", "pile-a1/4", 1000.0, Reason.FULL, 1234)]
    feed.up["pile-a1"] = False
    rep.report(tick(layout, 1.0, decision(layout, overloaded=("row-a",), alarm="smoke")))
    got = dict(drain(box))
    assert got["chargectl/campus/events/tap"] == {
        "wall": 1_767_225_601.0,
        "bay": "pile-a1/3",
        "card": "04A1B2C3",
        "result": "started",
        "session": 17,
    }
    assert got["chargectl/campus/events/session_end"] == {
        "wall": 1_767_225_601.0,
        "bay": "pile-a1/4",
        "session": 16,
        "card": "04D5E6F7",
        "reason": "full",
        "energy_kwh": 1.234,
        "started": 1000.0,
    }
    over = got["chargectl/campus/events/overload"]
    assert (over["circuit"], over["active"]) == ("row-a", True)
    assert got["chargectl/campus/events/alarm"]["active"] is True
    assert got["chargectl/campus/events/alarm"]["alarm"] == "smoke"
    assert got["chargectl/campus/events/device"]["device"] == "pile-a1"
    assert got["chargectl/campus/events/device"]["up"] is False
    # Nothing new: nothing published.
    feed.taps, feed.settled = [], []
    rep.report(tick(layout, 2.0, decision(layout, overloaded=("row-a",), alarm="smoke")))
    assert drain(box) == []
    # Everything back to normal: each ending is told once.
    feed.up["pile-a1"] = True
    rep.report(tick(layout, 3.0, decision(layout)))
    got = dict(drain(box))
    assert got["chargectl/campus/events/overload"]["active"] is False
    assert got["chargectl/campus/events/alarm"] == {
        "wall": 1_767_225_603.0,
        "active": False,
        "alarm": "smoke",
    }
    assert got["chargectl/campus/events/device"]["up"] is True
    assert len(got) == 3


def test_a_device_down_at_start_is_in_the_state_not_an_event(layout: Layout) -> None:
    box, feed = Outbox(100), Feed()
    feed.up["pile-a1"] = False
    feed.reporter(layout, box).report(tick(layout, 0.0, decision(layout)))
    got = drain(box)
    assert [t for t, _ in got] == ["chargectl/campus/state"]
    assert got[0][1]["devices_down"] == ["pile-a1"]


def test_the_reporter_with_no_broker_keeps_the_newest_events(layout: Layout) -> None:
    box, feed = Outbox(5), Feed()
    rep = feed.reporter(layout, box, interval=1e9)
    for n in range(12):
        feed.taps = [TapResult("pile-a1/1", f"0000{n:04X}", TapOutcome.UNKNOWN, None)]
        rep.report(tick(layout, float(n), decision(layout)))
    assert box.dropped == 7
    cards = [body["card"] for topic, body in drain(box) if topic.endswith("/tap")]
    assert cards == [f"0000{n:04X}" for n in range(7, 12)]
