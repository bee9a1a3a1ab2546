"""One event stream per tick: everything the reporters need to know changed.

`EventTracker` is the only place that compares a tick with the one before (devices up and
down, overloads, the alarm, pile alarms, bay faults); `TickEvents` carries those changes with
the tick's taps, session starts and ends and the session counts. Metrics, MQTT, the API
snapshot and the event log read only this, so a change is detected once and every output
reports the same change on the same tick.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from chargectl.control.observe import Decision, Observation
from chargectl.firewatch.detectors import Finding
from chargectl.sessions.manager import (
    EndedSession,
    SessionReadout,
    TapOutcome,
    TapResult,
)
from chargectl.topology import Topology


@dataclass(frozen=True, slots=True)
class SessionNews:
    """From the session layer, since the last tick."""

    taps: tuple[TapResult, ...]
    ended: Mapping[str, int]  # reason -> sessions ended
    settled: tuple[EndedSession, ...]  # sessions whose energy became final
    readout: SessionReadout | None  # the counts now (None: no session layer)


@dataclass(frozen=True, slots=True)
class Change:
    """`subject` went from `was` to `now` (None: absent, e.g. no alarm, no fault)."""

    subject: str  # a device, a circuit, a bay, or "" for the shed-wide alarm
    now: object
    was: object


@dataclass(frozen=True)
class TickEvents:
    taps: tuple[TapResult, ...] = ()
    ended: Mapping[str, int] = field(default_factory=dict)
    settled: tuple[EndedSession, ...] = ()
    readout: SessionReadout | None = None
    device_up: Mapping[str, bool] = field(default_factory=dict)  # health now, every device
    devices: tuple[Change, ...] = ()  # device id: up True/False
    overloads: tuple[Change, ...] = ()  # circuit id: overloaded True/False
    alarm: Change | None = None  # "": "smoke"/"estop"/None
    pile_alarms: tuple[Change, ...] = ()  # pile id: "pile_overtemp"/"supply_fault"/None
    faults: tuple[Change, ...] = ()  # bay id: fault code (int), 0 when cleared
    notes: tuple[str, ...] = ()  # the core's state changes worth a line
    findings: tuple[Finding, ...] = ()  # the fire-risk watch's new findings (each once)

    @property
    def session_starts(self) -> tuple[TapResult, ...]:
        return tuple(t for t in self.taps if t.outcome == TapOutcome.STARTED)


class EventTracker:
    """Compares each tick with the last. The first tick sets the baseline of device health
    (a device is not 'back' at start-up); overloads, alarms and faults start from none, but
    an alarm restored from the ledger (`restored`)."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self._up: dict[str, bool] | None = None
        self._over = np.zeros(len(topology.circuits), dtype=np.bool_)
        self._alarm: str | None = None
        self._pile_alarms: dict[str, str] = {}
        self._fault = np.zeros(len(topology.bays), dtype=np.int64)

    def restored(self, alarm: str | None) -> None:
        """A restart's alarm restored from the ledger is the baseline, not a new latch: the
        start-up logs it (one line), and metrics and the status show it active from the first
        tick, but no alarm event is sent again."""
        self._alarm = alarm

    def tick(
        self,
        observation: Observation,
        decision: Decision,
        device_up: Mapping[str, bool],
        news: SessionNews,
        findings: tuple[Finding, ...] = (),
    ) -> TickEvents:
        up = dict(device_up)
        devices: tuple[Change, ...] = ()
        if self._up is not None:
            devices = tuple(
                Change(d, u, self._up.get(d)) for d, u in up.items() if self._up.get(d) != u
            )
        self._up = up

        ids = [c.id for c in self.topology.circuits]
        over = np.asarray(decision.overloaded, dtype=np.bool_)
        overloads = tuple(
            Change(ids[c], bool(over[c]), bool(self._over[c]))
            for c in np.flatnonzero(over != self._over)
        )
        self._over = over.copy()

        alarm = None
        if decision.alarm != self._alarm:
            alarm = Change("", decision.alarm, self._alarm)
            self._alarm = decision.alarm

        now_alarms = dict(decision.pile_alarms)
        piles = sorted(set(now_alarms) | set(self._pile_alarms))
        pile_alarms = tuple(
            Change(p, now_alarms.get(p), self._pile_alarms.get(p))
            for p in piles
            if now_alarms.get(p) != self._pile_alarms.get(p)
        )
        self._pile_alarms = now_alarms

        fault = np.asarray(observation.bay_fault, dtype=np.int64)
        bays = self.topology.bays
        faults = tuple(
            Change(bays[j].id, int(fault[j]), int(self._fault[j]))
            for j in np.flatnonzero(fault != self._fault)
        )
        self._fault = fault.copy()

        return TickEvents(
            taps=news.taps,
            ended=news.ended,
            settled=news.settled,
            readout=news.readout,
            device_up=up,
            devices=devices,
            overloads=overloads,
            alarm=alarm,
            pile_alarms=pile_alarms,
            faults=faults,
            notes=tuple(decision.notes),
            findings=findings,
        )
