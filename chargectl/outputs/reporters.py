"""Reporters: each tick's outcome to the metrics, the local API and the event log.

Each reads only the `TickOutcome` (its `events` carry every change of the tick: taps,
session starts and ends, devices up and down, alarms, overloads, faults), runs after the
tick's writes are out, and a failing reporter is logged by the loop, never allowed to stop it.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from chargectl.control.layout import Layout
from chargectl.control.observe import FAULT_NAMES
from chargectl.outputs.api import ApiServer
from chargectl.outputs.metrics import SessionEnd, ShedMetrics, tick_report
from chargectl.outputs.status import finding_summary, snapshot
from chargectl.runtime.contracts import TickOutcome
from chargectl.runtime.events import TickEvents

log = logging.getLogger("chargectl")


class MetricsReporter:
    def __init__(self, metrics: ShedMetrics, layout: Layout):
        self.metrics = metrics
        self.layout = layout

    def report(self, tick: TickOutcome) -> None:
        ev = tick.events
        readout = ev.readout
        self.metrics.update(
            tick_report(
                self.layout,
                tick.poll.observation,
                tick.decision,
                duration_s=tick.duration_s,
                device_up=dict(ev.device_up),
                errors=tick.poll.errors,
                energy_wh=tick.poll.counters_wh,
                sessions_active=readout.active if readout else 0,
                session_ends=[SessionEnd(str(e.reason), float(e.energy_wh)) for e in ev.settled],
                taps=[str(t.outcome) for t in ev.taps],
                readings_set_aside=readout.counter_anomalies if readout else 0,
                clock_synced=readout.clock_synced if readout else True,
                findings=[(str(f.kind), str(f.severity)) for f in ev.findings],
            )
        )


class StatusReporter:
    """Publishes the status snapshot to the local API, with the device health."""

    def __init__(self, shed_name: str, layout: Layout, api: ApiServer | None):
        self.shed_name = shed_name
        self.layout = layout
        self.api = api
        self.ticks = 0
        self.latest: dict[str, Any] = {}
        # bay -> its latest fire-risk finding, until the next session starts there
        self.findings: dict[str, dict[str, Any]] = {}

    def report(self, tick: TickOutcome) -> None:
        self.ticks += 1
        for t in tick.events.session_starts:
            self.findings.pop(t.bay, None)
        for f in tick.events.findings:
            self.findings[f.bay] = finding_summary(f, tick.wall)
        snap = snapshot(self.shed_name, self.layout, self.ticks, tick)
        for bay in snap["bays"]:
            bay["finding"] = self.findings.get(bay["id"])
        snap["devices"] = dict(tick.events.device_up)
        snap["sessions"] = self.link_counts(tick)
        self.latest = snap
        if self.api is not None:
            self.api.publish(snap)

    @staticmethod
    def link_counts(tick: TickOutcome) -> dict[str, int]:
        states = tick.decision.bay_state
        return {s: states.count(s) for s in ("charging", "waiting", "paused")}


class EventLog:
    """State changes worth a line, from the tick's events: notes of the core, taps, session
    ends, devices going down and back, alarms, overloads and bay faults."""

    def __init__(self, keep: int = 200) -> None:
        self.lines: deque[str] = deque(maxlen=keep)

    def add(self, line: str, level: int = logging.INFO) -> None:
        self.lines.append(line)
        log.log(level, "%s", line)

    def report(self, tick: TickOutcome) -> None:
        for note in tick.events.notes:
            self.lines.append(note)  # the loop already logged it
        for line, level in event_lines(tick.events):
            self.add(line, level)


def event_lines(ev: TickEvents) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = [
        (f"tap {t.uid} at {t.bay}: {t.outcome}", logging.INFO) for t in ev.taps
    ]
    out += [
        (f"session {s.id} at {s.bay} settled: {s.energy_wh} Wh ({s.reason})", logging.INFO)
        for s in ev.settled
    ]
    out += [
        (f"device {c.subject} {'back' if c.now else 'DOWN'}", logging.WARNING) for c in ev.devices
    ]
    out += [
        (
            f"circuit {c.subject} {'OVERLOADED' if c.now else 'back under its limit'}",
            logging.WARNING,
        )
        for c in ev.overloads
    ]
    if ev.alarm is not None:
        what = f"ALARM {ev.alarm.now}" if ev.alarm.now else f"alarm {ev.alarm.was} cleared"
        out.append((what, logging.WARNING))
    out += [
        (f"pile {c.subject}: {c.now or f'{c.was} cleared'}", logging.WARNING)
        for c in ev.pile_alarms
    ]
    out += [
        (
            f"bay {c.subject}: fault {_fault(c.now)}"
            if c.now
            else f"bay {c.subject}: fault cleared",
            logging.WARNING,
        )
        for c in ev.faults
    ]
    out += [
        (
            f"FIRE RISK {f.severity} {f.kind} at {f.bay} (card {f.card}, session "
            f"{f.session_id}): {f.seen}"
            + ("; the socket is cut and held out until staff clear it" if f.held else ""),
            logging.WARNING,
        )
        for f in ev.findings
    ]
    return out


def _fault(code: object) -> str:
    return FAULT_NAMES.get(code, str(code)) if isinstance(code, int) else str(code)
