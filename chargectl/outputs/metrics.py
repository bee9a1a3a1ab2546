"""The controller's Prometheus metrics: the table's values kept as plain data, a scrape
endpoint off the event loop.

The metrics are the rows of `chargectl.outputs.metric_table.METRICS` (how to add one is said
there); this module keeps no list of its own. `ShedMetrics` keeps the latest samples of every
row in plain Python state; the controller hands it one `TickReport` per tick (plain data, no
prometheus types; chargectl.outputs.metric_reports) and never waits on a scrape. A scrape runs
in the HTTP server's own thread, copies the state under a lock and builds the exposition
there, so serialising thousands of series never stalls the control loop.

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
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from chargectl.config.schema import Shed
from chargectl.outputs.metric_reports import (
    BayReport,
    BuildInfo,
    CircuitReport,
    DeviceReport,
    MetricsError,
    SessionEnd,
    TickReport,
    tick_report,
)
from chargectl.outputs.metric_table import (
    ALARM_KINDS,
    BAY_FAULTS,
    BAY_STATES,
    DEVICE_ERRORS,
    END_REASONS,
    ERROR_KINDS,
    METRICS,
    SPECS,
    TAP_RESULTS,
    WH_J,
    Labels,
    MetricSpec,
    all_series_names,
)
from chargectl.topology import Topology, topology_of

__all__ = [
    "ALARM_KINDS",
    "BAY_FAULTS",
    "BAY_STATES",
    "DEVICE_ERRORS",
    "END_REASONS",
    "ERROR_KINDS",
    "METRICS",
    "SPECS",
    "TAP_RESULTS",
    "BayReport",
    "BuildInfo",
    "CircuitReport",
    "DeviceReport",
    "MetricSpec",
    "MetricsError",
    "SessionEnd",
    "ShedMetrics",
    "TickReport",
    "all_series_names",
    "serve",
    "stop",
    "tick_report",
]


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


class ShedMetrics:
    """The metrics of one shed, in a private registry (`.registry`).

    `update()` is called from the control loop; `collect()` from the scrape thread. Both take
    one lock; a scrape holds it only to copy the state.
    """

    def __init__(
        self, shed: Shed, build: BuildInfo | None = None, topology: Topology | None = None
    ) -> None:
        topo = topology if topology is not None else topology_of(shed)
        self.shed_name = shed.shed.name
        self.build = build if build is not None else BuildInfo.installed()
        self.phases: dict[str, tuple[int, ...]] = {
            c.id: topo.phases_of(c.id) for c in shed.circuits
        }
        self.phase_labels: dict[str, Labels] = {
            c: tuple(str(p) for p in ph) for c, ph in self.phases.items()
        }
        self.limits: dict[str, tuple[float, ...]] = {
            c.id: (c.limit_a,) * len(self.phases[c.id]) for c in shed.circuits
        }
        self.bays = frozenset(topo.bay_ids)
        self.devices = tuple(d.id for d in shed.devices)
        self._device_set = frozenset(self.devices)
        self._lock = threading.Lock()
        self._energy_last_wh: dict[str, float] = {}
        # metric -> labels (besides shed) -> value; histograms: labels -> _Histogram
        self._series: dict[str, dict[Labels, float]] = {}
        self._histograms: dict[str, dict[Labels, _Histogram]] = {}
        for m in METRICS:
            if m.kind == "histogram":
                self._histograms[m.name] = {(): _Histogram(m.buckets)}
            else:
                self._series[m.name] = dict(m.initial(self)) if m.initial else {}

        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    # ---- what the table's rows ask (metric_table.Shed) ----

    def series(self, name: str) -> Mapping[Labels, float]:
        return self._series[name]

    def energy_step_j(self, bay: str, wh: float) -> float:
        """The exported counter starts at 0 when the daemon first reads the bay and adds the
        device counter's increments. A counter that steps back (a wrapped u32, a replaced
        device) re-bases without adding: the export never decreases."""
        last = self._energy_last_wh.get(bay)
        self._energy_last_wh[bay] = wh
        return (wh - last) * WH_J if last is not None and wh > last else 0.0

    # ---- the control loop's side ----

    def update(self, report: TickReport) -> None:
        """Take one tick's report. Raises MetricsError (and changes nothing) when it names a
        circuit, bay or device the shed does not have, or a circuit with the wrong phase count."""
        self._check(report)
        with self._lock:
            for m in METRICS:
                if m.value is None:
                    continue
                samples = m.value(report, self)
                if m.kind == "histogram":
                    hists = self._histograms[m.name]
                    for labels, v in samples:
                        hists[labels].observe(v)
                elif m.kind == "gauge" or m.running_total:
                    self._series[m.name].update(samples)
                else:
                    store = self._series[m.name]
                    for labels, v in samples:
                        store[labels] = store.get(labels, 0.0) + v

    def _check(self, report: TickReport) -> None:
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
            if b.bay not in self.bays:
                raise MetricsError(f"bay {b.bay!r}: not in shed {self.shed_name!r}")
        for d in report.devices:
            if d.device not in self._device_set:
                raise MetricsError(f"device {d.device!r}: not in shed {self.shed_name!r}")

    # ---- the scrape thread's side ----

    def describe(self) -> Iterator[Metric]:
        for m in METRICS:
            yield self._family(m)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            series = {name: list(store.items()) for name, store in self._series.items()}
            hists = {
                name: [(labels, h.snapshot()) for labels, h in store.items()]
                for name, store in self._histograms.items()
            }
        s = self.shed_name
        for m in METRICS:
            family = self._family(m)
            if isinstance(family, HistogramMetricFamily):
                for labels, (buckets, total) in hists[m.name]:
                    family.add_metric([s, *labels], buckets, total)
            elif m.one_hot:
                for labels, index in series[m.name]:
                    for k, one in enumerate(m.values):
                        family.add_metric([s, *labels, one], 1.0 if k == index else 0.0)
            else:
                add = family.add_metric
                for labels, v in series[m.name]:
                    add([s, *labels], v)
            yield family

    @staticmethod
    def _family(m: MetricSpec) -> GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily:
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


def serve(registry: CollectorRegistry, host: str, port: int) -> tuple[WSGIServer, threading.Thread]:
    """`start_http_server` on the given registry: scrapes never touch the event loop."""
    return start_http_server(port, addr=host, registry=registry)


def stop(server: WSGIServer, thread: threading.Thread, timeout_s: float = 5.0) -> None:
    server.shutdown()
    server.server_close()
    thread.join(timeout_s)
