"""The metrics table: one row per metric, and the fixed sets its label values come from.

A row says what a scrape shows (name, type, help, labels besides `shed`, unit, buckets), how
the row's value comes from one tick's `TickReport` (`value`), what it shows before the first
tick (`initial`), and, for a label with a fixed set of values, that set (`values`, the last
label's). `ShedMetrics` builds its registry, its state and every scrape from this table alone.

Adding a metric is one row here plus the line that sets its value: a `value` reading a
`TickReport` field (for a new field: the field in `metric_reports.TickReport` and the line in
`tick_report` that fills it). A gauge row's samples replace the ones with the same labels, a
counter row's are increments (`running_total`: the report carries the total), a histogram
row's are observations. Extending a label's fixed set needs a way to produce the new value:
tests/outputs/test_label_values.py produces every declared value against the simulator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Literal, Protocol, cast

from chargectl.control import observe
from chargectl.control.observe import (
    FAULT_OVER_POWER,
    FAULT_OVER_TEMP,
    FAULT_SHORT,
    FAULT_WALLBOX,
    FAULT_WELDED,
)
from chargectl.firewatch.watch import LIVE_FINDINGS
from chargectl.sessions.machine import Reason
from chargectl.sessions.manager import TapOutcome

if TYPE_CHECKING:
    from chargectl.outputs.metric_reports import BuildInfo, TickReport

Kind = Literal["gauge", "counter", "histogram"]
Labels = tuple[str, ...]
Sample = tuple[Labels, float]

# ---- the fixed label value sets: each value is one something in the shed can produce ----

# The control core's bay states (chargectl.control.observe; core._states sets them).
BayState = Literal["idle", "waiting", "charging", "paused", "fault", "disabled"]
BAY_STATES = cast(tuple[BayState, ...], observe.BAY_STATES)
# The sessions layer's end reasons and tap outcomes (chargectl.sessions).
END_REASONS: tuple[str, ...] = tuple(str(r) for r in Reason)
TAP_RESULTS: tuple[str, ...] = tuple(str(o) for o in TapOutcome)
# The fault codes the Modbus edge puts in Observation.bay_fault, by label. A pile port reports
# 1..4 (hardware/pile.md, port_state bits 8..15); a wallbox's over-temperature, residual-current
# trip, welded contactor or cp state E/F are one code (its bay may take no current); a welded
# relay the core detects (current through an open relay) is `welded` too.
FAULT_LABELS: dict[int, str] = {
    FAULT_OVER_POWER: "over_power",
    FAULT_OVER_TEMP: "over_temp",
    FAULT_WELDED: "welded",
    FAULT_SHORT: "short_circuit",
    FAULT_WALLBOX: "evse_fault",
}
BAY_FAULTS: tuple[str, ...] = tuple(FAULT_LABELS.values())
ALARM_KINDS: tuple[str, ...] = (
    "smoke",  # a pile's smoke input (latched until staff clear it)
    "estop",  # a pile's emergency stop input (latched)
    "welded",  # a relay or contactor welded somewhere in the shed
    "pile_overtemp",  # a pile cabinet at or above its limit
    "supply_fault",  # a pile sees its supply voltage out of range
)
# chargectl.drivers.errors class names, by error label. bad_value: a reply that could not be a
# reading (the device counts as down); bad_field: one non-critical field of a reading was bad
# (ignored, the device stays up). DeviceDown is missing on purpose: it means "not asked" (the
# unit is in backoff), not a failed request; `chargectl_device_up` shows it.
ERROR_KINDS: dict[str, str] = {
    "DeviceTimeout": "timeout",
    "ExceptionReply": "exception_reply",
    "BadValue": "bad_value",
    "BadField": "bad_field",
    "ConnectionLost": "connection_lost",
}
DEVICE_ERRORS: tuple[str, ...] = tuple(ERROR_KINDS.values())

WH_J = 3600.0  # joules per watt-hour

# The tick target is p99 <= 30 ms at 1 s or 0.25 s ticks: resolution where that is decided.
TICK_BUCKETS_S: tuple[float, ...] = (
    *(0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1),
    *(0.25, 0.5, 1.0),
)
# An e-bike session is tens to a few hundred Wh, a car's up to tens of kWh.
SESSION_ENERGY_BUCKETS_J: tuple[float, ...] = tuple(
    wh * WH_J for wh in (10, 25, 50, 100, 200, 300, 500, 750, 1000, 2000, 5000, 10000, 20000, 50000)
)


class Shed(Protocol):
    """What a row's functions may ask of the shed's metrics (ShedMetrics)."""

    @property
    def build(self) -> BuildInfo: ...
    @property
    def limits(self) -> Mapping[str, tuple[float, ...]]: ...  # circuit -> limit per phase
    @property
    def phase_labels(self) -> Mapping[str, Labels]: ...  # circuit -> its phases as labels
    @property
    def devices(self) -> tuple[str, ...]: ...

    def series(self, name: str) -> Mapping[Labels, float]: ...
    def energy_step_j(self, bay: str, wh: float) -> float: ...


Value = Callable[["TickReport", Shed], Iterable[Sample]]
Initial = Callable[[Shed], Iterable[Sample]]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric: its name as scraped (counters with `_total`), kind, help, labels besides
    `shed`, unit suffix, histogram buckets, the fixed value set of its last label, and how
    its samples come from a tick report and before the first one."""

    name: str
    kind: Kind
    help: str
    labels: Labels = ()
    unit: str = ""
    buckets: tuple[float, ...] = ()
    values: tuple[str, ...] = ()
    value: Value | None = None
    initial: Initial | None = None
    running_total: bool = False  # a counter the report gives as a total, not an increment
    # One sample per entity whose value is the index of its one active value in `values`; a
    # scrape shows a series per value, 1 for that one and 0 for the others.
    one_hot: bool = False

    def series_names(self) -> tuple[str, ...]:
        """The sample names a scrape shows for this metric."""
        if self.kind == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)


# ---- how rows read a report ----


def per_phase(attr: str) -> Value:
    """A circuit field with one value per phase (None: left as it was)."""

    def read(r: TickReport, s: Shed) -> Iterable[Sample]:
        for c in r.circuits:
            vals = getattr(c, attr)
            if vals is not None:
                for ph, v in zip(s.phase_labels[c.circuit], vals, strict=True):
                    yield (c.circuit, ph), v

    return read


def per_circuit(attr: str) -> Value:
    get = attrgetter(attr)
    return lambda r, s: [((c.circuit,), get(c)) for c in r.circuits]


def per_bay(attr: str) -> Value:
    get = attrgetter(attr)
    return lambda r, s: [((b.bay,), get(b)) for b in r.bays]


def scalar(attr: str) -> Value:
    """A report field that is None when the tick did not say."""

    def read(r: TickReport, s: Shed) -> Iterable[Sample]:
        v = getattr(r, attr)
        return () if v is None else (((), float(v)),)

    return read


def each(values: tuple[str, ...], active: Callable[[TickReport], Iterable[str]]) -> Value:
    """One sample per value: 1 while it is active, else 0."""

    def read(r: TickReport, s: Shed) -> Iterable[Sample]:
        on = frozenset(active(r))
        return [((v,), 1.0 if v in on else 0.0) for v in values]

    return read


def counted(items: Callable[[TickReport], Iterable[str]]) -> Value:
    """An increment of 1 per item (a tap, an ended session) under its label value."""
    return lambda r, s: (((x,), 1.0) for x in items(r))


def start_at(value: float) -> Initial:
    return lambda s: (((), value),)


def zero_each(values: tuple[str, ...]) -> Initial:
    return lambda s: (((v,), 0.0) for v in values)


_STATE_INDEX = {st: float(i) for i, st in enumerate(BAY_STATES)}


def _bay_state(r: TickReport, s: Shed) -> Iterable[Sample]:
    return [((b.bay,), _STATE_INDEX[b.state]) for b in r.bays]


def _bay_energy(r: TickReport, s: Shed) -> Iterable[Sample]:
    return [
        ((b.bay,), s.energy_step_j(b.bay, b.energy_wh)) for b in r.bays if b.energy_wh is not None
    ]


def _bay_faults(r: TickReport, s: Shed) -> Iterable[Sample]:
    # A fault once seen on a bay stays a series: 0 while clear. Bays never faulted have none.
    seen: dict[str, list[str]] = {}
    for bay, fault in s.series("chargectl_bay_fault"):
        seen.setdefault(bay, []).append(fault)
    out: list[Sample] = []
    for b in r.bays:
        if b.faults or b.bay in seen:
            for f in {*seen.get(b.bay, ()), *b.faults}:
                out.append(((b.bay, f), 1.0 if f in b.faults else 0.0))
    return out


def _device_errors(r: TickReport, s: Shed) -> Iterable[Sample]:
    return [((d.device, e), 1.0) for d in r.devices for e in d.errors]


def _limits(s: Shed) -> Iterable[Sample]:
    for cid, limits in s.limits.items():
        yield from (((cid, ph), v) for ph, v in zip(s.phase_labels[cid], limits, strict=True))


def _build(s: Shed) -> Iterable[Sample]:
    return (((s.build.version, s.build.python, s.build.numba), 1.0),)


M = MetricSpec
CIRCUIT_PHASE = ("circuit", "phase")
METRICS: tuple[MetricSpec, ...] = (
    M(
        "chargectl_circuit_current_amperes",
        "gauge",
        "Measured current of a circuit on one phase (meter, or the bays under it without one).",
        CIRCUIT_PHASE,
        "amperes",
        value=per_phase("current_a"),
    ),
    M(
        "chargectl_circuit_limit_amperes",
        "gauge",
        "The most the controller may plan on a circuit's phase (its limit, lowered while the "
        "breaker is hot or under a cap set over MQTT).",
        CIRCUIT_PHASE,
        "amperes",
        value=per_phase("limit_a"),
        initial=_limits,
    ),
    M(
        "chargectl_circuit_planned_amperes",
        "gauge",
        "Current the latest plan allows on a circuit's phase, unmanaged load included.",
        CIRCUIT_PHASE,
        "amperes",
        value=per_phase("planned_a"),
    ),
    M(
        "chargectl_breaker_thermal_ratio",
        "gauge",
        "Breaker thermal state over its trip point (1 = trips).",
        ("circuit",),
        value=per_circuit("thermal_ratio"),
    ),
    M(
        "chargectl_bay_current_amperes",
        "gauge",
        "Measured current of a bay (a socket, or a wallbox's highest phase).",
        ("bay",),
        "amperes",
        value=per_bay("current_a"),
    ),
    M(
        "chargectl_bay_setpoint_amperes",
        "gauge",
        "Current the controller allows a bay (0 = off or paused).",
        ("bay",),
        "amperes",
        value=per_bay("setpoint_a"),
    ),
    M(
        "chargectl_bay_state",
        "gauge",
        "A bay's state, one-hot over " + ", ".join(BAY_STATES) + ".",
        ("bay", "state"),
        values=BAY_STATES,
        value=_bay_state,
        one_hot=True,
    ),
    M(
        "chargectl_bay_energy_joules_total",
        "counter",
        "Energy delivered by a bay since the daemon started, from the bay's own counter.",
        ("bay",),
        "joules",
        value=_bay_energy,
    ),
    M(
        "chargectl_bay_fault",
        "gauge",
        "1 while a bay has a fault; a series appears the first time a fault is seen.",
        ("bay", "fault"),
        values=BAY_FAULTS,
        value=_bay_faults,
    ),
    M(
        "chargectl_device_up",
        "gauge",
        "1 when the device answered its latest poll, else 0.",
        ("device",),
        value=lambda r, s: (((d.device,), 1.0 if d.up else 0.0) for d in r.devices),
    ),
    M(
        "chargectl_device_errors_total",
        "counter",
        "Failed device requests, by error kind.",
        ("device", "error"),
        values=DEVICE_ERRORS,
        value=_device_errors,
        initial=lambda s: (((d, e), 0.0) for d in s.devices for e in DEVICE_ERRORS),
    ),
    M(
        "chargectl_overload_events_total",
        "counter",
        "Times a circuit's measured current exceeded its limit and bays were shed.",
        ("circuit",),
        value=per_circuit("overload_events"),
        initial=lambda s: (((c,), 0.0) for c in s.limits),
    ),
    M(
        "chargectl_alarm",
        "gauge",
        "1 while a shed-wide alarm is active (" + ", ".join(ALARM_KINDS) + ").",
        ("kind",),
        values=ALARM_KINDS,
        value=each(ALARM_KINDS, lambda r: r.alarms),
        initial=zero_each(ALARM_KINDS),
    ),
    M(
        "chargectl_tick_duration_seconds",
        "histogram",
        "Time one control tick took, poll to last write.",
        unit="seconds",
        buckets=TICK_BUCKETS_S,
        value=scalar("tick_duration_s"),
    ),
    M(
        "chargectl_build_info",
        "gauge",
        "Always 1; the labels say what runs.",
        ("version", "python", "numba"),
        initial=_build,
    ),
    M(
        "chargectl_sessions_active",
        "gauge",
        "Charging sessions open (charging or waiting).",
        value=scalar("sessions_active"),
        initial=start_at(0.0),
    ),
    M(
        "chargectl_sessions_total",
        "counter",
        "Charging sessions ended, by reason.",
        ("reason",),
        values=END_REASONS,
        value=counted(lambda r: (e.reason for e in r.session_ends)),
        initial=zero_each(END_REASONS),
    ),
    M(
        "chargectl_energy_readings_set_aside_total",
        "counter",
        "Energy counter readings a bay's power could not explain: set aside, never billed.",
        value=scalar("readings_set_aside"),
        initial=start_at(0.0),
        running_total=True,
    ),
    M(
        "chargectl_wall_clock_synced",
        "gauge",
        "1 while the wall clock is synchronized; 0: new sessions get provisional times.",
        value=scalar("clock_synced"),
        initial=start_at(1.0),
    ),
    M(
        "chargectl_card_taps_total",
        "counter",
        "Card taps, by result.",
        ("result",),
        values=TAP_RESULTS,
        value=counted(lambda r: r.taps),
        initial=zero_each(TAP_RESULTS),
    ),
    M(
        # Open label values (no `values`): the kinds and severities are chargectl.firewatch's
        # Kind and Severity enums, but most (no taper after 7 h of constant current, energy
        # beyond any pack, two pile cuts in a day) need hours of charging that the per-value
        # simulator test cannot produce. Every pair the live watch can report starts at 0.
        "chargectl_firewatch_findings_total",
        "counter",
        "Fire-risk findings (each kind and severity once per session), by kind and severity.",
        ("kind", "severity"),
        value=lambda r, s: ((f, 1.0) for f in r.findings),
        initial=lambda s: (((str(k), str(v)), 0.0) for k, v in LIVE_FINDINGS),
    ),
    M(
        "chargectl_session_energy_joules",
        "histogram",
        "Energy of ended sessions.",
        unit="joules",
        buckets=SESSION_ENERGY_BUCKETS_J,
        value=lambda r, s: (((), e.energy_wh * WH_J) for e in r.session_ends),
    ),
)

SPECS: dict[str, MetricSpec] = {m.name: m for m in METRICS}


def all_series_names() -> frozenset[str]:
    """Every sample name the table can produce (for checking dashboards and rules)."""
    return frozenset(n for m in METRICS for n in m.series_names())
