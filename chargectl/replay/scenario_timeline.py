"""A scenario expanded into its timeline: pure and seeded, the same seed gives the same day.

- Arrivals: a Poisson process whose rate follows the stream's profile by time of day (the
  rate is constant between two points, so each stretch draws its count and then its times).
  Each arrival draws, in one fixed order, what it brings (by the mix's shares), its state of
  charge, how long it stays, whether it leaves early and when, and a bay among those free at
  that moment (a bay is taken from plugging in until leaving, and `SWAP_S` after). With no
  bay free it is turned away. Sockets and wallboxes draw from streams of their own, so adding
  cars leaves the e-bikes' day as it was.
- Unmanaged load: the value of each circuit's profile at the start and at every change point.
- Faults: a start event, and an end event after `for` (the ending action of
  `scenario_faults`); a crash's end is the controller's restart.
Times are seconds from the replay's start.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from chargectl.replay.scenario_faults import CRASH, FAULTS, RESTART
from chargectl.replay.scenario_types import CarChoice, ChargerChoice, Scenario, Stream
from chargectl.topology import topology_of

_DAY = 86400.0
TAP_DELAY_S = (3.0, 20.0)  # plug in, then the card: this long after
# A socket holds one plug: the next resident's goes in this long after the last one came out
# at the soonest (one pulls the plug and steps aside, the other plugs in). A swap quicker than
# a tick would show the controller no quiet sample between the two chargers.
SWAP_S = 5.0


@dataclass(frozen=True, slots=True)
class Arrival:
    at: float  # plugged in
    tap_at: float  # the card tapped at the bay
    leave_at: float  # unplugged (may lie past the replay's end)
    bay: str
    uid: str  # the resident's card, 4 bytes hex, unique within the timeline
    soc: float
    stops_early: bool  # leaves before the stay it would otherwise take, full or not
    charger: ChargerChoice | None  # at a socket
    car: CarChoice | None  # at a wallbox

    def plug_action(self) -> dict[str, Any]:
        """The simulator's action (sim/actions.py) that plugs it in."""
        if self.car is not None:
            c = self.car
            return {
                "do": "plug",
                "bay": self.bay,
                "soc": self.soc,
                "max_a": c.max_a,
                "phases": c.phases,
                "capacity_kwh": c.capacity_kwh,
            }
        assert self.charger is not None
        return {"do": "plug", "bay": self.bay, "profile": self.charger.profile, "soc": self.soc}


@dataclass(frozen=True, slots=True)
class LoadStep:
    at: float
    circuit: str
    amps: tuple[float, ...]  # one per phase of the circuit

    def action(self) -> dict[str, Any]:
        return {"do": "load", "circuit": self.circuit, "amps": list(self.amps)}


@dataclass(frozen=True, slots=True)
class FaultEvent:
    at: float
    fault: int  # index into Scenario.faults
    starts: bool  # False: the fault ends
    action: Mapping[str, Any]  # a simulator action, or {"do": "crash"} / {"do": "restart"}


@dataclass(frozen=True, slots=True)
class Timeline:
    duration_s: float
    arrivals: tuple[Arrival, ...]  # by time; sockets and wallboxes together
    turned_away: tuple[float, ...]  # times of arrivals that found no bay free
    load_steps: tuple[LoadStep, ...]  # by time
    fault_events: tuple[FaultEvent, ...]  # by time (an end before a start at one time)

    def load_at(self, t: float) -> dict[str, tuple[float, ...]]:
        """Each profiled circuit's unmanaged load at `t` (seconds from the start)."""
        out: dict[str, tuple[float, ...]] = {}
        for s in self.load_steps:
            if s.at > t:
                break
            out[s.circuit] = s.amps
        return out

    def load_series(self, step_s: float) -> dict[str, np.ndarray]:
        """Per profiled circuit, its amps at 0, step_s, 2 step_s, ... (steps x phases)."""
        times = np.arange(0.0, self.duration_s, step_s)
        out: dict[str, np.ndarray] = {}
        for circuit in dict.fromkeys(s.circuit for s in self.load_steps):
            steps = [s for s in self.load_steps if s.circuit == circuit]
            starts = np.array([s.at for s in steps])
            values = np.array([s.amps for s in steps], dtype=np.float64)
            out[circuit] = values[np.searchsorted(starts, times, side="right") - 1]
        return out


def expand(scenario: Scenario) -> Timeline:
    """The scenario's day, drawn from its seed."""
    topo = topology_of(scenario.shed)
    sockets = [b.id for b in topo.bays if b.is_socket]
    wallboxes = [b.id for b in topo.bays if not b.is_socket]
    bikes_seq, cars_seq = np.random.SeedSequence(scenario.seed).spawn(2)
    a1, away1 = _arrivals(scenario, scenario.arrivals, sockets, bikes_seq, 0xB0000000)
    a2, away2 = _arrivals(scenario, scenario.cars, wallboxes, cars_seq, 0xCA000000)
    return Timeline(
        duration_s=scenario.duration_s,
        arrivals=tuple(sorted(a1 + a2, key=lambda a: a.at)),
        turned_away=tuple(sorted(away1 + away2)),
        load_steps=_load_steps(scenario),
        fault_events=_fault_events(scenario),
    )


def segments(stream: Stream, start_s: float, duration_s: float) -> list[tuple[float, float, float]]:
    """(from, to, per hour) over the replay, in seconds from its start, where the rate holds."""
    if not stream.rate:
        return []
    cuts = {0.0, duration_s}
    day = -_DAY
    while day < start_s + duration_s:
        for p in stream.rate:
            t = day + p.at_s - start_s
            if 0.0 < t < duration_s:
                cuts.add(t)
        day += _DAY
    edges = sorted(cuts)
    return [(a, b, stream.per_hour(start_s + a)) for a, b in itertools.pairwise(edges)]


def _arrivals(
    scenario: Scenario, stream: Stream, bays: list[str], seq: np.random.SeedSequence, uid0: int
) -> tuple[list[Arrival], list[float]]:
    rng = np.random.default_rng(seq)
    times: list[float] = []
    for a, b, per_hour in segments(stream, scenario.start_s, scenario.duration_s):
        n = int(rng.poisson(per_hour * (b - a) / 3600.0))
        times.extend(np.sort(rng.uniform(a, b, n)).tolist())
    if not times:
        return [], []
    shares = np.array([m.share for m in stream.mix], dtype=np.float64)
    shares /= shares.sum()
    free_at = np.zeros(len(bays))  # each bay is free again from this time
    out: list[Arrival] = []
    away: list[float] = []
    for i, at in enumerate(times):
        choice = stream.mix[int(rng.choice(len(shares), p=shares))]
        soc = float(rng.uniform(*choice.soc))
        stay = float(rng.uniform(*stream.stay_s))
        early = bool(rng.random() < stream.stop_early_share)
        early_s = float(rng.uniform(*stream.stop_early_s))
        tap = float(rng.uniform(*TAP_DELAY_S))
        pick = float(rng.random())
        leave = at + (min(early_s, stay) if early else stay)
        free = np.flatnonzero(free_at <= at)
        if free.size == 0:
            away.append(at)
            continue
        j = int(free[int(pick * free.size)])
        free_at[j] = leave + SWAP_S
        out.append(
            Arrival(
                at=at,
                tap_at=at + tap,
                leave_at=leave,
                bay=bays[j],
                uid=f"{(uid0 + i) & 0xFFFFFFFF:08x}",
                soc=soc,
                stops_early=early,
                charger=choice if isinstance(choice, ChargerChoice) else None,
                car=choice if isinstance(choice, CarChoice) else None,
            )
        )
    return out, away


def _load_steps(scenario: Scenario) -> tuple[LoadStep, ...]:
    steps: list[LoadStep] = []
    for prof in scenario.unmanaged:
        steps.append(LoadStep(0.0, prof.circuit, prof.amps_at(scenario.start_s)))
        day = -_DAY
        while day < scenario.start_s + scenario.duration_s:
            for at_s, amps in prof.points:
                t = day + at_s - scenario.start_s
                if 0.0 < t < scenario.duration_s:
                    steps.append(LoadStep(t, prof.circuit, amps))
            day += _DAY
    return tuple(sorted(steps, key=lambda s: s.at))


def _fault_events(scenario: Scenario) -> tuple[FaultEvent, ...]:
    events: list[FaultEvent] = []
    nominal = scenario.shed.shed.voltage_v
    for i, f in enumerate(scenario.faults):
        start = {"do": CRASH} if f.kind == CRASH else dict(f.action)
        events.append(FaultEvent(f.at, i, True, start))
        if f.for_s is None or f.at + f.for_s >= scenario.duration_s:
            continue
        end_of = FAULTS[f.kind].end
        if f.kind == CRASH:
            end: dict[str, Any] = {"do": RESTART}
        elif end_of is not None:
            end = end_of(f.action, nominal)
        else:
            continue
        events.append(FaultEvent(f.at + f.for_s, i, False, end))
    return tuple(sorted(events, key=lambda e: (e.at, e.starts)))
