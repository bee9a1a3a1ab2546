"""The controller's Prometheus metrics: a table of descriptions, plain-data updates, a scrape
endpoint off the event loop.

`METRICS` is the table (one row per metric). `ShedMetrics` keeps the latest values in plain
Python state; the controller hands it one `TickReport` per tick (plain data, no prometheus
types) and never waits on a scrape. A scrape runs in the HTTP server's own thread, copies the
state under a lock and builds the exposition there, so serialising thousands of series never
stalls the control loop.

Conventions: base units (amperes, joules, seconds), counters end in `_total` and take
increments, and every series carries the shed's name as `shed`. Counters are exposed without
`_created` series (they double the series count and nothing here reads them). Label values
come from fixed sets (bay states, end reasons, tap results, faults, alarms, device errors) so
the series count stays bounded: an unknown value is a programming error and raises
`MetricsError`. Sessions and cards are never labels.
"""

from __future__ import annotations

import bisect
import math
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version as package_version
from typing import Any, Literal
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from chargectl.config.schema import Shed, bay_id
from chargectl.control.layout import Layout
from chargectl.control.observe import (
    FAULT_NONE,
    FAULT_OVER_POWER,
    FAULT_OVER_TEMP,
    FAULT_SHORT,
    FAULT_WALLBOX,
    FAULT_WELDED,
    Decision,
    Observation,
)

Kind = Literal["gauge", "counter", "histogram"]
BayState = Literal["idle", "waiting", "charging", "paused", "fault", "disabled"]

# The fixed label value sets. Extending one is a one-line change here (and in the dashboard
# or alerts if they should show it).
BAY_STATES: tuple[BayState, ...] = ("idle", "waiting", "charging", "paused", "fault", "disabled")
END_REASONS: tuple[str, ...] = (
    "user_stop",
    "full",
    "unplugged",
    "no_load",
    "max_duration",
    "quota",
    "over_power",
    "over_temp",
    "fault",
    "emergency",
    "staff_stop",
)
TAP_RESULTS: tuple[str, ...] = (
    "started",  # a session opened (charging, or waiting for capacity)
    "stopped",  # the session's own card tapped again
    "unknown",  # rejected: no such card
    "blocked",
    "expired",
    "quota",  # rejected: the card's daily energy limit is used up
    "busy",  # rejected: another card's session runs on that bay
    "unavailable",  # rejected: the bay is in fault or the shed in emergency
    "invalid",  # rejected: a malformed UID
    "limit",  # rejected: the card already charges at sessions.max_per_card bays
)
ALARM_KINDS: tuple[str, ...] = (
    "smoke",
    "estop",
    "welded",  # a relay or contactor welded somewhere in the shed
    "pile_overtemp",  # a pile cabinet at or above its limit
    "supply_fault",  # a pile sees its supply voltage out of range
    "residual_current",  # a wallbox's RCD tripped
)
BAY_FAULTS: tuple[str, ...] = (
    "over_power",
    "over_temp",
    "welded",
    "short_circuit",
    "residual_current",
    "pilot_error",
    "evse_fault",
)
# bad_value: a reply that could not be a reading (the device counts as down); bad_field: one
# non-critical field of a reading was bad (that field is ignored, the device stays up).
DEVICE_ERRORS: tuple[str, ...] = (
    "timeout",
    "exception_reply",
    "bad_value",
    "bad_field",
    "connection_lost",
)

_WH = 3600.0  # joules per watt-hour

# The tick target is p99 <= 30 ms at 1 s or 0.25 s ticks: resolution where that is decided.
TICK_BUCKETS_S: tuple[float, ...] = (
    0.001,
    0.002,
    0.005,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
)
# An e-bike session is tens to a few hundred Wh, a car's up to tens of kWh.
SESSION_ENERGY_BUCKETS_J: tuple[float, ...] = tuple(
    wh * _WH for wh in (10, 25, 50, 100, 200, 300, 500, 750, 1000, 2000, 5000, 10000, 20000, 50000)
)


class MetricsError(ValueError):
    """A report the metrics cannot take: names what and where."""


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric: its name as scraped (counters with `_total`), kind, help, labels besides
    `shed`, unit suffix, and histogram buckets."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    unit: str = ""
    buckets: tuple[float, ...] = ()

    def series_names(self) -> tuple[str, ...]:
        """The sample names a scrape shows for this metric."""
        if self.kind == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "chargectl_circuit_current_amperes",
        "gauge",
        "Measured current of a circuit on one phase (meter, or the bays under it without one).",
        ("circuit", "phase"),
        "amperes",
    ),
    MetricSpec(
        "chargectl_circuit_limit_amperes",
        "gauge",
        "The most the controller may plan on a circuit's phase.",
        ("circuit", "phase"),
        "amperes",
    ),
    MetricSpec(
        "chargectl_circuit_planned_amperes",
        "gauge",
        "Current the latest plan allows on a circuit's phase, unmanaged load included.",
        ("circuit", "phase"),
        "amperes",
    ),
    MetricSpec(
        "chargectl_breaker_thermal_ratio",
        "gauge",
        "Breaker thermal state over its trip point (1 = trips).",
        ("circuit",),
    ),
    MetricSpec(
        "chargectl_bay_current_amperes",
        "gauge",
        "Measured current of a bay (a socket, or a wallbox's highest phase).",
        ("bay",),
        "amperes",
    ),
    MetricSpec(
        "chargectl_bay_setpoint_amperes",
        "gauge",
        "Current the controller allows a bay (0 = off or paused).",
        ("bay",),
        "amperes",
    ),
    MetricSpec(
        "chargectl_bay_state",
        "gauge",
        "A bay's state, one-hot over " + ", ".join(BAY_STATES) + ".",
        ("bay", "state"),
    ),
    MetricSpec(
        "chargectl_bay_energy_joules_total",
        "counter",
        "Energy delivered by a bay since the daemon started, from the bay's own counter.",
        ("bay",),
        "joules",
    ),
    MetricSpec(
        "chargectl_bay_fault",
        "gauge",
        "1 while a bay has a fault; a series appears the first time a fault is seen.",
        ("bay", "fault"),
    ),
    MetricSpec(
        "chargectl_device_up",
        "gauge",
        "1 when the device answered its latest poll, else 0.",
        ("device",),
    ),
    MetricSpec(
        "chargectl_device_errors_total",
        "counter",
        "Failed device requests, by error kind.",
        ("device", "error"),
    ),
    MetricSpec(
        "chargectl_overload_events_total",
        "counter",
        "Times a circuit's measured current exceeded its limit and bays were shed.",
        ("circuit",),
    ),
    MetricSpec(
        "chargectl_alarm",
        "gauge",
        "1 while a shed-wide alarm is active (" + ", ".join(ALARM_KINDS) + ").",
        ("kind",),
    ),
    MetricSpec(
        "chargectl_tick_duration_seconds",
        "histogram",
        "Time one control tick took, poll to last write.",
        (),
        "seconds",
        TICK_BUCKETS_S,
    ),
    MetricSpec(
        "chargectl_build_info",
        "gauge",
        "Always 1; the labels say what runs.",
        ("version", "python", "numba"),
    ),
    MetricSpec(
        "chargectl_sessions_active",
        "gauge",
        "Charging sessions open (charging or waiting).",
    ),
    MetricSpec(
        "chargectl_sessions_total",
        "counter",
        "Charging sessions ended, by reason.",
        ("reason",),
    ),
    MetricSpec(
        "chargectl_energy_readings_set_aside_total",
        "counter",
        "Energy counter readings a bay's power could not explain: set aside, never billed.",
    ),
    MetricSpec(
        "chargectl_wall_clock_synced",
        "gauge",
        "1 while the wall clock is synchronized; 0: new sessions get provisional times.",
    ),
    MetricSpec(
        "chargectl_card_taps_total",
        "counter",
        "Card taps, by result.",
        ("result",),
    ),
    MetricSpec(
        "chargectl_session_energy_joules",
        "histogram",
        "Energy of ended sessions.",
        (),
        "joules",
        SESSION_ENERGY_BUCKETS_J,
    ),
)

SPECS: dict[str, MetricSpec] = {m.name: m for m in METRICS}


def all_series_names() -> frozenset[str]:
    """Every sample name the table can produce (for checking dashboards and rules)."""
    return frozenset(n for m in METRICS for n in m.series_names())


# ---- the reports the controller hands over ------------------------------------------------


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


# ---- the state ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)  # per bucket, not cumulative; last = +Inf
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        # `le` buckets: a value equal to a bound belongs to that bound's bucket.
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def snapshot(self) -> tuple[list[tuple[str, float]], float]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += n
            out.append((floatToGoString(bound), float(running)))
        return out, self.total


def _resolved_phases(shed: Shed) -> dict[str, tuple[int, ...]]:
    """Each circuit's phases: its own, else its parent's, the root's being the supply's."""
    supply = (1,) if shed.shed.phases == 1 else (1, 2, 3)
    by_id = {c.id: c for c in shed.circuits}
    out: dict[str, tuple[int, ...]] = {}

    def resolve(cid: str, seen: tuple[str, ...]) -> tuple[int, ...]:
        if cid in out:
            return out[cid]
        if cid in seen:
            raise MetricsError(f"circuit {cid!r}: parent cycle {' -> '.join((*seen, cid))}")
        c = by_id[cid]
        if c.phases:
            ph = c.phases
        elif c.parent is None:
            ph = supply
        elif c.parent not in by_id:
            raise MetricsError(f"circuit {cid!r}: unknown parent {c.parent!r}")
        else:
            ph = resolve(c.parent, (*seen, cid))
        out[cid] = ph
        return ph

    for c in shed.circuits:
        resolve(c.id, ())
    return out


def _bay_ids(shed: Shed) -> list[str]:
    bays: list[str] = []
    for d in shed.devices:
        if d.kind == "evse":
            bays.append(bay_id(d.id, None))
        elif d.ports > 0:  # a pile (only piles have ports)
            bays.extend(bay_id(d.id, p) for p in range(1, d.ports + 1))
    return bays


class ShedMetrics:
    """The metrics of one shed, in a private registry (`.registry`).

    `update()` is called from the control loop; `collect()` from the scrape thread. Both take
    one lock; a scrape holds it only to copy the state.
    """

    def __init__(self, shed: Shed, build: BuildInfo | None = None) -> None:
        self.shed_name = shed.shed.name
        self.build = build if build is not None else BuildInfo.installed()
        self.phases: dict[str, tuple[int, ...]] = _resolved_phases(shed)
        self._lock = threading.Lock()

        # circuit -> per-phase values, in the order of self.phases[circuit]
        self._current: dict[str, tuple[float, ...]] = {}
        self._planned: dict[str, tuple[float, ...]] = {}
        self._limit: dict[str, tuple[float, ...]] = {
            c.id: (c.limit_a,) * len(self.phases[c.id]) for c in shed.circuits
        }
        self._thermal: dict[str, float] = {}
        self._overloads: dict[str, int] = {c.id: 0 for c in shed.circuits}

        bays = _bay_ids(shed)
        self._bays = frozenset(bays)
        # bay -> (current, setpoint, state); insertion order = the shed's bay order
        self._bay_now: dict[str, tuple[float, float, BayState]] = {}
        self._energy_j: dict[str, float] = {}
        self._energy_last_wh: dict[str, float] = {}
        # bay -> fault -> active; a fault once seen on a bay stays a series (0 when clear)
        self._faults: dict[str, dict[str, bool]] = {}

        self._devices = frozenset(d.id for d in shed.devices)
        self._device_up: dict[str, bool] = {}
        self._device_errors: dict[tuple[str, str], int] = {
            (d.id, e): 0 for d in shed.devices for e in DEVICE_ERRORS
        }

        self._alarms: frozenset[str] = frozenset()
        self._tick = _Histogram(TICK_BUCKETS_S)
        self._sessions_active = 0
        self._set_aside = 0
        self._clock_synced = True
        self._sessions_total: dict[str, int] = dict.fromkeys(END_REASONS, 0)
        self._taps: dict[str, int] = dict.fromkeys(TAP_RESULTS, 0)
        self._session_energy = _Histogram(SESSION_ENERGY_BUCKETS_J)

        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    # ---- the control loop's side ----

    def update(self, report: TickReport) -> None:
        """Take one tick's report. Raises MetricsError (and changes nothing) when it names a
        circuit, bay or device the shed does not have, or a circuit with the wrong phase count."""
        for c in report.circuits:
            phases = self.phases.get(c.circuit)
            if phases is None:
                raise MetricsError(f"circuit {c.circuit!r}: not in shed {self.shed_name!r}")
            if len(c.current_a) != len(phases):
                raise MetricsError(
                    f"circuit {c.circuit!r}: {len(c.current_a)} phase values, "
                    f"the circuit has phases {phases}"
                )
        for b in report.bays:
            if b.bay not in self._bays:
                raise MetricsError(f"bay {b.bay!r}: not in shed {self.shed_name!r}")
        for d in report.devices:
            if d.device not in self._devices:
                raise MetricsError(f"device {d.device!r}: not in shed {self.shed_name!r}")

        with self._lock:
            for c in report.circuits:
                self._current[c.circuit] = c.current_a
                self._planned[c.circuit] = c.planned_a
                if c.limit_a is not None:
                    self._limit[c.circuit] = c.limit_a
                self._thermal[c.circuit] = c.thermal_ratio
                self._overloads[c.circuit] += c.overload_events
            for b in report.bays:
                self._bay_now[b.bay] = (b.current_a, b.setpoint_a, b.state)
                if b.energy_wh is not None:
                    self._take_energy(b.bay, b.energy_wh)
                seen = self._faults.get(b.bay)
                if seen is not None or b.faults:
                    if seen is None:
                        seen = self._faults[b.bay] = {}
                    for f in seen:
                        seen[f] = f in b.faults
                    for f in b.faults:
                        seen[f] = True
            for d in report.devices:
                self._device_up[d.device] = d.up
                for e in d.errors:
                    self._device_errors[(d.device, e)] += 1
            self._alarms = report.alarms
            if report.tick_duration_s is not None:
                self._tick.observe(report.tick_duration_s)
            if report.sessions_active is not None:
                self._sessions_active = report.sessions_active
            if report.readings_set_aside is not None:
                self._set_aside = report.readings_set_aside
            if report.clock_synced is not None:
                self._clock_synced = report.clock_synced
            for s in report.session_ends:
                self._sessions_total[s.reason] += 1
                self._session_energy.observe(s.energy_wh * _WH)
            for t in report.taps:
                self._taps[t] += 1

    def _take_energy(self, bay: str, wh: float) -> None:
        # The exported counter starts at 0 when the daemon first reads the bay and adds the
        # device counter's increments. A counter that steps back (a wrapped u32, a replaced
        # device) re-bases without adding: the export never decreases.
        last = self._energy_last_wh.get(bay)
        if last is None:
            self._energy_j[bay] = 0.0
        elif wh > last:
            self._energy_j[bay] += (wh - last) * _WH
        self._energy_last_wh[bay] = wh

    # ---- the scrape thread's side ----

    def describe(self) -> Iterator[Metric]:
        for m in METRICS:
            yield self._family(m)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            current, planned = dict(self._current), dict(self._planned)
            limit, thermal, overloads = (
                dict(self._limit),
                dict(self._thermal),
                dict(self._overloads),
            )
            bay_now, energy = dict(self._bay_now), dict(self._energy_j)
            faults = {bay: dict(v) for bay, v in self._faults.items()}
            device_up, device_errors = dict(self._device_up), dict(self._device_errors)
            alarms = self._alarms
            tick = self._tick.snapshot()
            sessions_active = self._sessions_active
            set_aside, clock_synced = self._set_aside, self._clock_synced
            sessions_total, taps = dict(self._sessions_total), dict(self._taps)
            session_energy = self._session_energy.snapshot()

        s = self.shed_name
        # Any: the three family types differ in add_metric's signature; the table fixes which.
        fam: dict[str, Any] = {m.name: self._family(m) for m in METRICS}

        def per_phase(name: str, values: dict[str, tuple[float, ...]]) -> None:
            f = fam[name]
            for cid, vals in values.items():
                for ph, v in zip(self.phases[cid], vals, strict=True):
                    f.add_metric([s, cid, str(ph)], v)

        per_phase("chargectl_circuit_current_amperes", current)
        per_phase("chargectl_circuit_limit_amperes", limit)
        per_phase("chargectl_circuit_planned_amperes", planned)
        _add(fam["chargectl_breaker_thermal_ratio"], s, thermal.items())
        _add(fam["chargectl_overload_events_total"], s, overloads.items())

        f_cur, f_set = fam["chargectl_bay_current_amperes"], fam["chargectl_bay_setpoint_amperes"]
        f_state = fam["chargectl_bay_state"]
        for bay, (cur, sp, state) in bay_now.items():
            f_cur.add_metric([s, bay], cur)
            f_set.add_metric([s, bay], sp)
            for st in BAY_STATES:
                f_state.add_metric([s, bay, st], 1.0 if st == state else 0.0)
        _add(fam["chargectl_bay_energy_joules_total"], s, energy.items())
        f = fam["chargectl_bay_fault"]
        for bay, per_fault in faults.items():
            for fault, active in per_fault.items():
                f.add_metric([s, bay, fault], 1.0 if active else 0.0)

        _add(
            fam["chargectl_device_up"], s, ((d, 1.0 if up else 0.0) for d, up in device_up.items())
        )
        f = fam["chargectl_device_errors_total"]
        for (dev, err), n in device_errors.items():
            f.add_metric([s, dev, err], n)
        _add(fam["chargectl_alarm"], s, ((k, 1.0 if k in alarms else 0.0) for k in ALARM_KINDS))

        b = self.build
        fam["chargectl_build_info"].add_metric([s, b.version, b.python, b.numba], 1.0)
        fam["chargectl_sessions_active"].add_metric([s], sessions_active)
        fam["chargectl_energy_readings_set_aside_total"].add_metric([s], set_aside)
        fam["chargectl_wall_clock_synced"].add_metric([s], 1.0 if clock_synced else 0.0)
        _add(fam["chargectl_sessions_total"], s, sessions_total.items())
        _add(fam["chargectl_card_taps_total"], s, taps.items())
        fam["chargectl_tick_duration_seconds"].add_metric([s], *tick)
        fam["chargectl_session_energy_joules"].add_metric([s], *session_energy)
        yield from fam.values()

    @staticmethod
    def _family(m: MetricSpec) -> Metric:
        labels = ["shed", *m.labels]
        if m.kind == "gauge":
            return GaugeMetricFamily(m.name, m.help, labels=labels, unit=m.unit)
        if m.kind == "counter":
            return CounterMetricFamily(m.name, m.help, labels=labels, unit=m.unit)
        return HistogramMetricFamily(m.name, m.help, labels=labels, unit=m.unit)

    # ---- exposition ----

    def render(self) -> bytes:
        """The text exposition, as a scrape would see it."""
        return generate_latest(self.registry)

    def serve(self, host: str, port: int) -> tuple[WSGIServer, threading.Thread]:
        """Serve the registry over HTTP from a thread of its own. Port 0 picks a free port
        (`server.server_port` tells which). Stop with `stop(server, thread)`."""
        return serve(self.registry, host, port)


def _add(family: Any, shed: str, items: Iterable[tuple[str, float]]) -> None:
    for label, value in items:
        family.add_metric([shed, label], value)


# ---- from the control core's arrays ----------------------------------------------------------

# The port and wallbox fault codes of chargectl.control.observe, by fault label.
_FAULT_NAMES: dict[int, str] = {
    FAULT_OVER_POWER: "over_power",
    FAULT_OVER_TEMP: "over_temp",
    FAULT_WELDED: "welded",
    FAULT_SHORT: "short_circuit",
    FAULT_WALLBOX: "evse_fault",
}
# chargectl.drivers.errors class names, by error label. DeviceDown is missing on purpose: it
# means "not asked" (the unit is in backoff), not a failed request; `device_up` shows it.
ERROR_KINDS: dict[str, str] = {
    "DeviceTimeout": "timeout",
    "ExceptionReply": "exception_reply",
    "BadValue": "bad_value",
    "BadField": "bad_field",
    "ConnectionLost": "connection_lost",
}
_NOT_A_REQUEST = frozenset({"DeviceDown"})


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
            if code not in _FAULT_NAMES:
                raise MetricsError(f"bay {bay.id!r}: unknown fault code {code}")
            faults = frozenset((_FAULT_NAMES[code],))
        if welded[j]:
            faults = faults | {"welded"}
        bays.append(
            BayReport(
                bay.id,
                bay_current[j],
                setpoint[j],
                decision.bay_state[j],  # type: ignore[arg-type]  # checked in BayReport
                energy.get(bay.id),
                faults,
            )
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
    )


def serve(registry: CollectorRegistry, host: str, port: int) -> tuple[WSGIServer, threading.Thread]:
    """`start_http_server` on the given registry: scrapes never touch the event loop."""
    return start_http_server(port, addr=host, registry=registry)


def stop(server: WSGIServer, thread: threading.Thread, timeout_s: float = 5.0) -> None:
    server.shutdown()
    server.server_close()
    thread.join(timeout_s)
