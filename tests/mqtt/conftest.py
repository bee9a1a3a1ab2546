"""Fixtures for the MQTT tests: a real broker, the campus layout, ticks made to order."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

from chargectl.config.load import load_shed
from chargectl.config.schema import Shed
from chargectl.control.layout import Layout, build_layout
from chargectl.control.observe import Decision, Demand, Observation
from chargectl.outputs.mqtt import MqttReporter
from chargectl.runtime.contracts import Poll, TickOutcome
from chargectl.runtime.events import EventTracker, SessionNews, TickEvents
from chargectl.sessions.manager import EndedSession, TapResult
from tests.mqtt.broker import ROOT, Broker, running_broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with running_broker(tmp_path / "broker") as b:
        yield b


@pytest.fixture(scope="session")
def campus() -> Shed:
    return load_shed(ROOT / "deploy" / "examples" / "campus.yaml")


@pytest.fixture(scope="session")
def layout(campus: Shed) -> Layout:
    return build_layout(campus)


def decision(
    layout: Layout,
    *,
    states: dict[str, str] | None = None,
    overloaded: tuple[str, ...] = (),
    alarm: str | None = None,
    current_a: float = 10.0,
) -> Decision:
    """A decision as the core would make it: every bay idle unless `states` says otherwise."""
    b, c = layout.n_bays, layout.n_circuits
    over = np.array([cid in overloaded for cid in layout.circuit_ids])
    state = tuple((states or {}).get(bay.id, "idle") for bay in layout.bays)
    cur = np.where(layout.circuit_phases, current_a, 0.0)
    return Decision(
        relay_on=np.zeros(b, dtype=np.bool_),
        setpoint_a=np.zeros(b),
        circuit_current_a=cur,
        limit_a=layout.limit_a.copy(),
        planned_a=cur.copy(),
        binding=np.zeros((c, 3), dtype=np.bool_),
        infeasible=np.zeros((c, 3), dtype=np.bool_),
        overloaded=over,
        new_overloads=over.copy(),
        thermal_ratio=np.full(c, 0.25),
        unmanaged_a=np.zeros((c, 3)),
        bay_state=state,
        failsafe_mask={},
        welded=np.zeros(b, dtype=np.bool_),
        alarm=alarm,
    )


def tick(layout: Layout, now: float, d: Decision) -> TickOutcome:
    poll = Poll(Observation.empty(layout))
    wall = 1_767_225_600.0 + now
    return TickOutcome(now, wall, 0.001, poll, d, Demand.none(layout), {}, TickEvents())


class Fed:
    """A reporter fed as the loop feeds it: each tick's events from an `EventTracker` over
    what the test says the devices and sessions did (`up`, `taps`, `settled`)."""

    def __init__(self, reporter: MqttReporter, layout: Layout) -> None:
        self.reporter = reporter
        self.tracker = EventTracker(layout.topology)
        self.up: Mapping[str, bool] = {}
        self.taps: Sequence[TapResult] = []
        self.settled: Sequence[EndedSession] = []

    def report(self, outcome: TickOutcome) -> None:
        news = SessionNews(tuple(self.taps), {}, tuple(self.settled), None)
        obs = outcome.poll.observation
        events = self.tracker.tick(obs, outcome.decision, dict(self.up), news)
        self.reporter.report(dataclasses.replace(outcome, events=events))
