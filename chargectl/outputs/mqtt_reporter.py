"""The MQTT reporter: each tick's outcome into the outbox, never waiting on the network.

Events (taps, session ends, overloads, alarms, devices up and down) are put as they happen,
the state summary every `state_interval_s` (one slot: the newest replaces the last).
`MqttLink` (`chargectl.outputs.mqtt`) publishes what the outbox holds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from chargectl.control.layout import Layout
from chargectl.outputs.mqtt_outbox import Outbox, Outgoing
from chargectl.outputs.mqtt_topics import (
    TOPICS,
    alarm_event,
    device_event,
    overload_event,
    session_end_event,
    state_summary,
    tap_event,
    topic,
)
from chargectl.runtime.controller import TickOutcome
from chargectl.sessions.manager import EndedSession, TapResult


class MqttReporter:
    """A `Reporter` of the control loop: events as they happen, the state every interval.

    `taps` and `settled` return this tick's taps and settled sessions (the loop's other
    reporters drain them; the wiring hands over what they drained); `device_up` is the bus
    health.
    """

    def __init__(
        self,
        shed: str,
        layout: Layout,
        outbox: Outbox,
        *,
        state_interval_s: float,
        device_up: Callable[[], Mapping[str, bool]],
        taps: Callable[[], Sequence[TapResult]],
        settled: Callable[[], Sequence[EndedSession]],
        commands_busy: Callable[[], int] = lambda: 0,
    ) -> None:
        self.shed = shed
        self.layout = layout
        self.outbox = outbox
        self.commands_busy = commands_busy
        self.state_interval_s = state_interval_s
        self.device_up = device_up
        self.taps = taps
        self.settled = settled
        self._next_state = -np.inf
        self._overloaded = np.zeros(layout.n_circuits, dtype=np.bool_)
        self._alarm: str | None = None
        self._up: dict[str, bool] = {}

    def _event(self, key: str, body: Mapping[str, Any]) -> None:
        t = TOPICS[key]
        self.outbox.put(Outgoing(topic(self.shed, t.suffix), body, t.qos, t.retain))

    def report(self, tick: TickOutcome) -> None:
        wall, d = tick.wall, tick.decision
        for tap in self.taps():
            self._event("tap", tap_event(tap, wall))
        for s in self.settled():
            self._event("session_end", session_end_event(s, wall))
        over = np.asarray(d.overloaded, dtype=np.bool_)
        for c in np.flatnonzero(over != self._overloaded):
            self._event("overload", overload_event(self.layout, d, int(c), bool(over[c]), wall))
        self._overloaded = over.copy()
        if d.alarm != self._alarm:
            self._event("alarm", alarm_event(d.alarm, self._alarm, wall))
            self._alarm = d.alarm
        up = dict(self.device_up())
        for dev, is_up in up.items():
            was = self._up.get(dev)
            if was is not None and was != is_up:  # the first tick sets the baseline
                self._event("device", device_event(dev, is_up, wall))
        self._up = up
        if tick.now >= self._next_state:
            self._next_state = tick.now + self.state_interval_s
            down = [dev for dev, is_up in up.items() if not is_up]
            body = state_summary(
                self.shed,
                self.layout,
                d,
                wall=wall,
                devices_down=down,
                dropped=self.outbox.dropped,
                commands_busy=self.commands_busy(),
            )
            t = TOPICS["state"]
            self.outbox.put_state(Outgoing(topic(self.shed, t.suffix), body, t.qos, t.retain))
