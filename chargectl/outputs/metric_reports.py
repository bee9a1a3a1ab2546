"""What the controller hands the metrics: one `TickReport` per tick, plain data, checked.

Every value is checked when a report is made: a label value outside its fixed set
(chargectl.outputs.metric_table), a negative increment or a non-finite number raises
`MetricsError` naming what and where. `tick_report` makes a report from the control core's
arrays.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import version as package_version

from chargectl.control.layout import Layout
from chargectl.control.observe import FAULT_NONE, Decision, Observation
from chargectl.outputs.metric_table import (
    ALARM_KINDS,
    BAY_FAULTS,
    BAY_STATES,
    DEVICE_ERRORS,
    END_REASONS,
    ERROR_KINDS,
    FAULT_LABELS,
    TAP_RESULTS,
    BayState,
)


class MetricsError(ValueError):
    """A report the metrics cannot take: names what and where."""


def _finite(value: float, what: str) -> None:
    if not math.isfinite(value):
        raise MetricsError(f"{what}: must be a finite number, got {value!r}")


def _count(value: int, what: str) -> None:
    if value < 0:
        raise MetricsError(f"{what}: an increment must be >= 0, got {value!r}")


def _member(value: str, allowed: Sequence[str], what: str) -> None:
    if value not in allowed:
        raise MetricsError(f"{what}: unknown value {value!r}; known: {', '.join(allowed)}")


@dataclass(frozen=True, slots=True)
class CircuitReport:
    """One circuit, per phase in the circuit's phase order (as `ShedMetrics.phases` gives)."""

    circuit: str
    current_a: tuple[float, ...]
    planned_a: tuple[float, ...]
    thermal_ratio: float
    # The limit in force per phase (e.g. lowered while the breaker cools); None: unchanged.
    limit_a: tuple[float, ...] | None = None
    overload_events: int = 0  # new since the last report

    def __post_init__(self) -> None:
        where = f"circuit {self.circuit!r}"
        n = len(self.current_a)
        if len(self.planned_a) != n or (self.limit_a is not None and len(self.limit_a) != n):
            raise MetricsError(f"{where}: current_a, planned_a and limit_a differ in length")
        _finite(self.thermal_ratio, f"{where}.thermal_ratio")
        _count(self.overload_events, f"{where}.overload_events")


@dataclass(frozen=True, slots=True)
class BayReport:
    bay: str
    current_a: float
    setpoint_a: float
    state: BayState
    # The bay's own energy counter in Wh (a pile port's or a wallbox's lifetime register);
    # None when it was not read this tick (slow cadence, device down).
    energy_wh: float | None = None
    faults: frozenset[str] = frozenset()  # active now

    def __post_init__(self) -> None:
        where = f"bay {self.bay!r}"
        _member(self.state, BAY_STATES, f"{where}.state")
        if self.energy_wh is not None and not (
            math.isfinite(self.energy_wh) and self.energy_wh >= 0
        ):
            raise MetricsError(f"{where}.energy_wh: must be finite and >= 0, got {self.energy_wh}")
        for f in self.faults:
            _member(f, BAY_FAULTS, f"{where}.faults")


@dataclass(frozen=True, slots=True)
class DeviceReport:
    device: str
    up: bool
    errors: tuple[str, ...] = ()  # one entry (an error kind) per failed request since the last

    def __post_init__(self) -> None:
        for e in self.errors:
            _member(e, DEVICE_ERRORS, f"device {self.device!r}.errors")


@dataclass(frozen=True, slots=True)
class SessionEnd:
    reason: str
    energy_wh: float

    def __post_init__(self) -> None:
        _member(self.reason, END_REASONS, "session end reason")
        if not (math.isfinite(self.energy_wh) and self.energy_wh >= 0):
            raise MetricsError(f"session end energy_wh: must be finite, >= 0: {self.energy_wh}")


@dataclass(frozen=True, slots=True)
class TickReport:
    """What one tick hands the metrics. Circuits, bays and devices left out keep their last
    values; counters take what happened since the last report."""

    circuits: tuple[CircuitReport, ...] = ()
    bays: tuple[BayReport, ...] = ()
    devices: tuple[DeviceReport, ...] = ()
    alarms: frozenset[str] = frozenset()  # the alarms active now (the rest are clear)
    tick_duration_s: float | None = None
    sessions_active: int | None = None
    session_ends: tuple[SessionEnd, ...] = ()
    taps: tuple[str, ...] = ()  # one tap result per tap
    readings_set_aside: int | None = None  # since start-up (the session layer's count)
    clock_synced: bool | None = None
    findings: tuple[tuple[str, str], ...] = ()  # (kind, severity) per new fire-risk finding

    def __post_init__(self) -> None:
        for a in self.alarms:
            _member(a, ALARM_KINDS, "alarms")
        for t in self.taps:
            _member(t, TAP_RESULTS, "taps")
        if self.tick_duration_s is not None and not (
            math.isfinite(self.tick_duration_s) and self.tick_duration_s >= 0
        ):
            raise MetricsError(f"tick_duration_s: must be finite, >= 0: {self.tick_duration_s}")
        if self.sessions_active is not None and self.sessions_active < 0:
            raise MetricsError(f"sessions_active: must be >= 0, got {self.sessions_active}")


@dataclass(frozen=True, slots=True)
class BuildInfo:
    version: str
    python: str
    numba: str

    @staticmethod
    def installed() -> BuildInfo:
        # Package metadata, not `import numba`: that import alone costs up to 0.6 s.
        v = sys.version_info
        return BuildInfo(
            package_version("chargectl"), f"{v.major}.{v.minor}.{v.micro}", package_version("numba")
        )


# ---- from the control core's arrays ----------------------------------------------------------

_NOT_A_REQUEST = frozenset({"DeviceDown"})  # the unit was in backoff: not asked


def tick_report(
    layout: Layout,
    observation: Observation,
    decision: Decision,
    *,
    duration_s: float,
    device_up: Mapping[str, bool],
    errors: Iterable[tuple[str, str]] = (),
    energy_wh: Mapping[str, float | None] | None = None,
    sessions_active: int | None = None,
    session_ends: Sequence[SessionEnd] = (),
    taps: Sequence[str] = (),
    readings_set_aside: int | None = None,
    clock_synced: bool | None = None,
    findings: Sequence[tuple[str, str]] = (),
) -> TickReport:
    """One tick of the control core as a TickReport.

    `errors` are (device id, drivers error class name) of this tick's failed requests;
    `energy_wh` the bays' lifetime counters read this tick (bay id -> Wh, None or absent: not
    read). An unknown fault code, error class or alarm raises MetricsError.
    """
    circuits = []
    current = decision.circuit_current_a.tolist()
    planned = decision.planned_a.tolist()
    limit = decision.limit_a.tolist()
    ratio = decision.thermal_ratio.tolist()
    new_overloads = decision.new_overloads.tolist()
    for c, cid in enumerate(layout.circuit_ids):
        ph = [p for p in range(3) if layout.circuit_phases[c, p]]
        circuits.append(
            CircuitReport(
                cid,
                tuple(current[c][p] for p in ph),
                tuple(planned[c][p] for p in ph),
                ratio[c],
                tuple(limit[c][p] for p in ph),
                int(new_overloads[c]),
            )
        )

    energy = energy_wh or {}
    bay_current = observation.bay_current_a.tolist()
    setpoint = decision.setpoint_a.tolist()
    codes = observation.bay_fault.tolist()
    welded = decision.welded.tolist()
    bays = []
    for j, bay in enumerate(layout.bays):
        faults: frozenset[str] = frozenset()
        code = codes[j]
        if code != FAULT_NONE:
            if code not in FAULT_LABELS:
                raise MetricsError(f"bay {bay.id!r}: unknown fault code {code}")
            faults = frozenset((FAULT_LABELS[code],))
        if welded[j]:
            faults = faults | {"welded"}
        state: BayState = decision.bay_state[j]  # type: ignore[assignment]  # BayReport checks
        bays.append(
            BayReport(bay.id, bay_current[j], setpoint[j], state, energy.get(bay.id), faults)
        )

    per_device: dict[str, list[str]] = {d: [] for d in device_up}
    for device, cls in errors:
        if cls in _NOT_A_REQUEST:
            continue
        if cls not in ERROR_KINDS:
            raise MetricsError(
                f"device {device!r}: unknown error class {cls!r}; known: {', '.join(ERROR_KINDS)}"
            )
        per_device.setdefault(device, []).append(ERROR_KINDS[cls])
    devices = tuple(
        DeviceReport(d, device_up.get(d, False), tuple(errs)) for d, errs in per_device.items()
    )

    alarms = set()
    if decision.alarm is not None:
        alarms.add(decision.alarm)
    if any(welded):
        alarms.add("welded")
    alarms.update(decision.pile_alarms.values())  # pile_overtemp, supply_fault
    return TickReport(
        tuple(circuits),
        tuple(bays),
        devices,
        frozenset(alarms),
        duration_s,
        sessions_active,
        tuple(session_ends),
        tuple(taps),
        readings_set_aside,
        clock_synced,
        tuple(findings),
    )
