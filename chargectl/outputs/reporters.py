"""Reporters: each tick's outcome to the metrics, the local API and the event log.

Each runs after the tick's writes are out, and a failing reporter is logged by the loop,
never allowed to stop it.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from chargectl.adapters.sessions import SessionLink
from chargectl.control.layout import Layout
from chargectl.outputs.api import ApiServer
from chargectl.outputs.metrics import SessionEnd, ShedMetrics, tick_report
from chargectl.outputs.status import snapshot
from chargectl.runtime.controller import ShedIO, TickOutcome
from chargectl.sessions.manager import SessionEvents, TapResult

log = logging.getLogger("chargectl")


class MetricsReporter:
    def __init__(self, metrics: ShedMetrics, layout: Layout, io: ShedIO, link: SessionLink):
        self.metrics = metrics
        self.layout = layout
        self.io = io
        self.link = link
        self.last_events = SessionEvents({}, {}, ())  # this tick's, for the MQTT reporter

    def report(self, tick: TickOutcome) -> None:
        events = self.link.manager.drain_events()
        self.last_events = events
        ends = [SessionEnd(str(e.reason), float(e.energy_wh)) for e in events.settled]
        taps = [outcome for outcome, n in events.taps.items() for _ in range(n)]
        readout = self.link.manager.readout()
        self.metrics.update(
            tick_report(
                self.layout,
                tick.poll.observation,
                tick.decision,
                duration_s=tick.duration_s,
                device_up=self.io.device_up(),
                errors=tick.poll.errors,
                energy_wh=tick.poll.counters_wh,
                sessions_active=readout.active,
                session_ends=ends,
                taps=taps,
                readings_set_aside=readout.counter_anomalies,
                clock_synced=readout.clock_synced,
            )
        )


class StatusReporter:
    """Publishes the status snapshot to the local API, with the device health."""

    def __init__(self, shed_name: str, layout: Layout, io: ShedIO, api: ApiServer | None):
        self.shed_name = shed_name
        self.layout = layout
        self.io = io
        self.api = api
        self.ticks = 0
        self.latest: dict[str, Any] = {}

    def report(self, tick: TickOutcome) -> None:
        self.ticks += 1
        snap = snapshot(self.shed_name, self.layout, self.ticks, tick)
        snap["devices"] = self.io.device_up()
        snap["sessions"] = self.link_counts(tick)
        self.latest = snap
        if self.api is not None:
            self.api.publish(snap)

    @staticmethod
    def link_counts(tick: TickOutcome) -> dict[str, int]:
        states = tick.decision.bay_state
        return {s: states.count(s) for s in ("charging", "waiting", "paused")}


class EventLog:
    """State changes worth a line: notes of the core, taps, devices going down and back."""

    def __init__(self, link: SessionLink, io: ShedIO, keep: int = 200) -> None:
        self.link = link
        self.io = io
        self.lines: deque[str] = deque(maxlen=keep)
        self._up: dict[str, bool] = {}
        self.last_taps: list[TapResult] = []  # this tick's, for the MQTT reporter

    def add(self, line: str, level: int = logging.INFO) -> None:
        self.lines.append(line)
        log.log(level, "%s", line)

    def report(self, tick: TickOutcome) -> None:
        for note in tick.decision.notes:
            self.lines.append(note)  # the loop already logged it
        self.last_taps = self.link.drain_taps()
        for t in self.last_taps:
            self.add(f"tap {t.uid} at {t.bay}: {t.outcome}")
        for dev, up in self.io.device_up().items():
            was = self._up.get(dev)
            if was is not None and was != up:
                self.add(f"device {dev} {'back' if up else 'DOWN'}", logging.WARNING)
            self._up[dev] = up
