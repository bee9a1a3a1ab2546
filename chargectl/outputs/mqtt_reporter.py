"""The MQTT reporter: each tick's outcome into the outbox, never waiting on the network.

Events (taps, session ends, overloads, alarms, devices up and down) are put as they happen,
the state summary every `state_interval_s` (one slot: the newest replaces the last).
`MqttLink` (`chargectl.outputs.mqtt`) publishes what the outbox holds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from chargectl.control.layout import Layout
from chargectl.outputs.mqtt_outbox import Outbox, Outgoing
from chargectl.outputs.mqtt_topics import (
    TOPICS,
    alarm_event,
    device_event,
    finding_event,
    overload_event,
    session_end_event,
    state_summary,
    tap_event,
    topic,
)
from chargectl.runtime.contracts import TickOutcome


class MqttReporter:
    """A `Reporter` of the control loop: the tick's events as they happen (from
    `TickOutcome.events`, like every other reporter), the state every interval."""

    def __init__(
        self,
        shed: str,
        layout: Layout,
        outbox: Outbox,
        *,
        state_interval_s: float,
        commands_busy: Callable[[], int] = lambda: 0,
    ) -> None:
        self.shed = shed
        self.layout = layout
        self.outbox = outbox
        self.commands_busy = commands_busy
        self.state_interval_s = state_interval_s
        self._next_state = -np.inf

    @staticmethod
    def _was(value: object) -> str | None:
        return None if value is None else str(value)

    def _event(self, key: str, body: Mapping[str, Any]) -> None:
        t = TOPICS[key]
        self.outbox.put(Outgoing(topic(self.shed, t.suffix), body, t.qos, t.retain))

    def report(self, tick: TickOutcome) -> None:
        wall, d, ev = tick.wall, tick.decision, tick.events
        for tap in ev.taps:
            self._event("tap", tap_event(tap, wall))
        for s in ev.settled:
            self._event("session_end", session_end_event(s, wall))
        index = self.layout.topology.circuit_index
        for c in ev.overloads:
            body = overload_event(self.layout, d, index[c.subject], bool(c.now), wall)
            self._event("overload", body)
        if ev.alarm is not None:
            self._event("alarm", alarm_event(d.alarm, self._was(ev.alarm.was), wall))
        for dev in ev.devices:
            self._event("device", device_event(dev.subject, bool(dev.now), wall))
        for f in ev.findings:
            self._event("finding", finding_event(f, wall))
        up = ev.device_up
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
