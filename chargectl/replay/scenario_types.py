"""The scenario file's frozen types: as written (converted from YAML by the config's own
converter, so every problem has its line) and as resolved (times in seconds, the shed loaded).

Times of day are `HH:MM` or `HH:MM:SS`; durations as the simulator's scenarios take them
(`90`, `"90s"`, `"1m30s"`, `"2h"`). A range is a list of two values, `[low, high]`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chargectl.config.schema import Shed

Time = str | float

# ---------------------------------------------------------------- as written in the file


@dataclass(frozen=True, slots=True)
class RateFile:
    at: Time  # time of day; the rate holds until the next point (round midnight)
    per_hour: float


@dataclass(frozen=True, slots=True)
class ChargerMixFile:
    profile: str  # a charger profile of chargectl.sim.physics.chargers
    share: float = 1.0
    soc: tuple[float, ...] = (0.2, 0.5)


@dataclass(frozen=True, slots=True)
class CarMixFile:
    share: float = 1.0
    max_a: float = 16.0
    phases: int = 3
    capacity_kwh: float = 40.0
    soc: tuple[float, ...] = (0.2, 0.6)


@dataclass(frozen=True, slots=True)
class StopEarlyFile:
    share: float = 0.0
    after: tuple[Time, ...] = ("15m", "2h")


@dataclass(frozen=True, slots=True)
class ArrivalsFile:
    rate: tuple[RateFile, ...] = ()
    mix: tuple[ChargerMixFile, ...] = ()
    stay: tuple[Time, ...] = ("8h", "14h")
    stop_early: StopEarlyFile = StopEarlyFile()


@dataclass(frozen=True, slots=True)
class CarsFile:
    rate: tuple[RateFile, ...] = ()
    mix: tuple[CarMixFile, ...] = ()
    stay: tuple[Time, ...] = ("2h", "10h")
    stop_early: StopEarlyFile = StopEarlyFile()


@dataclass(frozen=True, slots=True)
class LoadFile:
    at: Time
    amps: tuple[float, ...]  # one per phase of the circuit


@dataclass(frozen=True, slots=True)
class UnmanagedFile:
    circuit: str
    profile: tuple[LoadFile, ...]


@dataclass(frozen=True, slots=True)
class ScenarioFile:
    """The file's top level but `faults` (their parameters follow the simulator's actions)."""

    shed: str  # the shed config, relative to the scenario file
    duration: Time
    start: Time = "00:00"
    seed: int = 1
    tick_s: float | None = None  # None: the shed's control.tick_s
    arrivals: ArrivalsFile = ArrivalsFile()
    cars: CarsFile = CarsFile()
    unmanaged: tuple[UnmanagedFile, ...] = ()


# ---------------------------------------------------------------- resolved


@dataclass(frozen=True, slots=True)
class RatePoint:
    at_s: float  # seconds after midnight
    per_hour: float


@dataclass(frozen=True, slots=True)
class ChargerChoice:
    profile: str
    share: float
    soc: tuple[float, float]


@dataclass(frozen=True, slots=True)
class CarChoice:
    share: float
    max_a: float
    phases: int
    capacity_kwh: float
    soc: tuple[float, float]


@dataclass(frozen=True, slots=True)
class Stream:
    """Who arrives: at sockets (`ChargerChoice`) or at wallboxes (`CarChoice`)."""

    rate: tuple[RatePoint, ...]  # by time of day, sorted; empty: nobody
    mix: tuple[ChargerChoice, ...] | tuple[CarChoice, ...]
    stay_s: tuple[float, float]  # plugged in this long (collected, full or not)
    stop_early_share: float  # the share who leave before that ...
    stop_early_s: tuple[float, float]  # ... this long after plugging in

    def per_hour(self, at_s: float) -> float:
        """The rate at a time of day (seconds after midnight)."""
        if not self.rate:
            return 0.0
        tod = at_s % 86400.0
        current = self.rate[-1].per_hour  # before the first point: the last, round midnight
        for p in self.rate:
            if p.at_s <= tod:
                current = p.per_hour
        return current


@dataclass(frozen=True, slots=True)
class LoadProfile:
    circuit: str
    phases: tuple[int, ...]  # the circuit's supply phases, one amps value each
    points: tuple[tuple[float, tuple[float, ...]], ...]  # (seconds after midnight, amps)

    def amps_at(self, at_s: float) -> tuple[float, ...]:
        tod = at_s % 86400.0
        current = self.points[-1][1]
        for t, amps in self.points:
            if t <= tod:
                current = amps
        return current


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str  # a row of scenario_faults.FAULTS
    at: float  # seconds from the replay's start
    for_s: float | None  # None: for the rest of the replay
    action: Mapping[str, Any]  # the simulator's action that starts it ({"do": kind, ...})
    path: str  # `faults[3]`, for messages


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str  # the file's stem: `evening-peak`
    source: Path
    shed: Shed
    start_s: float  # time of day the replay starts, seconds after midnight
    duration_s: float
    seed: int
    tick_s: float
    arrivals: Stream
    cars: Stream
    unmanaged: tuple[LoadProfile, ...]
    faults: tuple[Fault, ...]  # by start time
