"""The metrics table, the update API and a real scrape over HTTP on loopback."""

from __future__ import annotations

import re
import threading
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from chargectl.config.schema import Shed
from chargectl.outputs import metrics as metrics_module
from chargectl.outputs.metrics import (
    ALARM_KINDS,
    BAY_STATES,
    DEVICE_ERRORS,
    END_REASONS,
    METRICS,
    TAP_RESULTS,
    BayReport,
    CircuitReport,
    DeviceReport,
    MetricsError,
    MetricSpec,
    SessionEnd,
    ShedMetrics,
    TickReport,
    all_series_names,
    stop,
)
from tests.deploy.sheds import BUILD, make_shed, samples, value

NAME = re.compile(r"^chargectl_[a-z][a-z0-9_]*$")


def full_report(step: int = 0) -> TickReport:
    """A report that touches every metric of the table."""
    return TickReport(
        circuits=(
            CircuitReport("main", (10.0 + step, 11.0, 12.0), (20.0, 21.0, 22.0), 0.4, None, 1),
            CircuitReport("row-a", (5.0, 6.0, 7.0), (8.0, 9.0, 10.0), 0.2, (38.0, 38.0, 38.0)),
            CircuitReport("lights", (0.5,), (1.0,), 0.01),
        ),
        bays=(
            BayReport("pile-a/1", 1.9, 2.5, "charging", energy_wh=1000.0 + step),
            BayReport("pile-a/2", 0.0, 0.0, "waiting", energy_wh=50.0),
            BayReport("pile-a/3", 0.4, 0.0, "fault", faults=frozenset({"welded"})),
            BayReport("pile-b/1", 0.0, 0.0, "idle"),
            BayReport("pile-b/2", 0.0, 0.0, "disabled"),
            BayReport("wb-1", 9.5, 10.0, "charging", energy_wh=20_000.0 + 10 * step),
        ),
        devices=(
            DeviceReport("pile-a", True),
            DeviceReport("pile-b", False, ("timeout", "timeout")),
            DeviceReport("wb-1", True),
            DeviceReport("meter-main", True, ("bad_value",)),
        ),
        alarms=frozenset({"smoke"}),
        tick_duration_s=0.012,
        sessions_active=3,
        session_ends=(SessionEnd("full", 420.0),),
        taps=("started", "busy"),
    )


def scrape_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.status == 200
        return str(resp.read().decode())


@pytest.fixture
def served(metrics: ShedMetrics) -> Iterator[tuple[ShedMetrics, int]]:
    server, thread = metrics.serve("127.0.0.1", 0)
    try:
        yield metrics, server.server_port
    finally:
        stop(server, thread)
    assert not thread.is_alive()


# ---- the table ----


def test_table_names_units_and_labels_follow_prometheus_conventions() -> None:
    names = [m.name for m in METRICS]
    assert len(names) == len(set(names))
    for m in METRICS:
        assert NAME.match(m.name), m.name
        assert "shed" not in m.labels, m.name
        assert all(re.match(r"^[a-z][a-z0-9_]*$", label) for label in m.labels)
        if m.kind == "counter":
            assert m.name.endswith("_total"), m.name
        else:
            assert not m.name.endswith("_total"), m.name
        if m.unit:
            assert f"_{m.unit}" in m.name, m.name
        if m.kind == "histogram":
            assert m.buckets == tuple(sorted(m.buckets)) and len(m.buckets) >= 5
        else:
            assert m.buckets == ()
        # A fixed value set belongs to the last label; a one-hot row needs one.
        assert len(set(m.values)) == len(m.values), m.name
        assert not m.values or m.labels, m.name
        assert not m.one_hot or m.values, m.name


def test_table_holds_every_metric_the_issues_ask_for() -> None:
    asked = {
        "chargectl_circuit_current_amperes": ("circuit", "phase"),
        "chargectl_circuit_limit_amperes": ("circuit", "phase"),
        "chargectl_circuit_planned_amperes": ("circuit", "phase"),
        "chargectl_breaker_thermal_ratio": ("circuit",),
        "chargectl_bay_current_amperes": ("bay",),
        "chargectl_bay_setpoint_amperes": ("bay",),
        "chargectl_bay_state": ("bay", "state"),
        "chargectl_bay_energy_joules_total": ("bay",),
        "chargectl_device_up": ("device",),
        "chargectl_device_errors_total": ("device", "error"),
        "chargectl_overload_events_total": ("circuit",),
        "chargectl_tick_duration_seconds": (),
        "chargectl_build_info": ("version", "python", "numba"),
        "chargectl_sessions_active": (),
        "chargectl_sessions_total": ("reason",),
        "chargectl_card_taps_total": ("result",),
        "chargectl_session_energy_joules": (),
    }
    table = {m.name: m for m in METRICS}
    for name, labels in asked.items():
        assert name in table, name
        assert table[name].labels == labels, name
    assert table["chargectl_tick_duration_seconds"].kind == "histogram"
    assert table["chargectl_session_energy_joules"].kind == "histogram"
    # The tick histogram resolves the 1-100 ms range the tick targets live in.
    tick = table["chargectl_tick_duration_seconds"].buckets
    assert sum(1 for b in tick if 0.001 <= b <= 0.1) >= 6


# ---- a real scrape ----


def test_every_table_metric_is_scraped_with_its_label_set(served: tuple[ShedMetrics, int]) -> None:
    metrics, port = served
    metrics.update(full_report())
    text = scrape_text(port)
    got = samples(text)
    names = {s.name for s in got}
    for m in METRICS:
        for series in m.series_names():
            assert series in names, f"{series} missing from the scrape"
    table = {n: m for m in METRICS for n in m.series_names()}
    for s in got:
        assert s.name in table, f"{s.name}: not in the table"
        spec = table[s.name]
        expected = {"shed", *spec.labels} | ({"le"} if s.name.endswith("_bucket") else set())
        assert set(s.labels) == expected, s
        assert s.labels["shed"] == "campus"
    assert not any(s.name.endswith("_created") for s in got)
    assert names <= all_series_names()


def test_scraped_values_are_the_reported_ones(served: tuple[ShedMetrics, int]) -> None:
    metrics, port = served
    metrics.update(full_report())
    t = scrape_text(port)
    assert value(t, "chargectl_circuit_current_amperes", circuit="main", phase="1") == 10.0
    assert value(t, "chargectl_circuit_planned_amperes", circuit="main", phase="3") == 22.0
    # main kept its configured limit; row-a reported a lowered one
    assert value(t, "chargectl_circuit_limit_amperes", circuit="main", phase="2") == 63.0
    assert value(t, "chargectl_circuit_limit_amperes", circuit="row-a", phase="2") == 38.0
    assert value(t, "chargectl_breaker_thermal_ratio", circuit="main") == 0.4
    assert value(t, "chargectl_bay_current_amperes", bay="wb-1") == 9.5
    assert value(t, "chargectl_bay_setpoint_amperes", bay="pile-a/1") == 2.5
    assert value(t, "chargectl_device_up", device="pile-b") == 0.0
    assert value(t, "chargectl_device_errors_total", device="pile-b", error="timeout") == 2.0
    assert value(t, "chargectl_device_errors_total", device="pile-a", error="timeout") == 0.0
    assert value(t, "chargectl_overload_events_total", circuit="main") == 1.0
    assert value(t, "chargectl_alarm", kind="smoke") == 1.0
    assert value(t, "chargectl_alarm", kind="estop") == 0.0
    assert value(t, "chargectl_bay_fault", bay="pile-a/3", fault="welded") == 1.0
    assert value(t, "chargectl_sessions_active") == 3.0
    assert value(t, "chargectl_sessions_total", reason="full") == 1.0
    assert value(t, "chargectl_sessions_total", reason="user_stop") == 0.0
    assert value(t, "chargectl_card_taps_total", result="busy") == 1.0
    assert value(t, "chargectl_session_energy_joules_sum") == 420.0 * 3600
    assert value(t, "chargectl_build_info", version="0.1.0", python="3.11.7", numba="0.68.1") == 1
    # the single-phase branch has exactly its own phase
    phases = {
        s.labels["phase"]
        for s in samples(t)
        if s.name == "chargectl_circuit_limit_amperes" and s.labels["circuit"] == "lights"
    }
    assert phases == {"2"}


def test_bay_state_is_one_hot_over_the_fixed_set(served: tuple[ShedMetrics, int]) -> None:
    metrics, port = served
    metrics.update(full_report())
    metrics.update(TickReport(bays=(BayReport("pile-a/2", 1.0, 2.5, "charging"),)))
    by_bay: dict[str, dict[str, float]] = {}
    for s in samples(scrape_text(port)):
        if s.name == "chargectl_bay_state":
            by_bay.setdefault(s.labels["bay"], {})[s.labels["state"]] = s.value
    assert len(by_bay) == 6
    for bay, states in by_bay.items():
        assert set(states) == set(BAY_STATES), bay
        assert sorted(states.values()) == [0.0] * 5 + [1.0], bay
    assert by_bay["pile-a/2"]["charging"] == 1.0
    assert by_bay["pile-b/2"]["disabled"] == 1.0


def test_counters_never_decrease_and_energy_is_joules_of_the_wh_counter(
    served: tuple[ShedMetrics, int],
) -> None:
    metrics, port = served
    counters = [m for m in METRICS if m.kind == "counter"]
    # The bay counter reads: first sight (baseline), +2.5 Wh, a step back (device replaced),
    # then +4 Wh from the new base.
    readings = [1000.0, 1002.5, 3.0, 7.0]
    previous: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for step, wh in enumerate(readings):
        report = full_report(step)
        metrics.update(
            TickReport(
                circuits=report.circuits,
                bays=(BayReport("pile-b/1", 1.0, 2.5, "charging", energy_wh=wh),),
                devices=report.devices,
                session_ends=report.session_ends,
                taps=report.taps,
            )
        )
        for s in samples(scrape_text(port)):
            if any(s.name == c.name for c in counters):
                key = (s.name, tuple(sorted(s.labels.items())))
                assert s.value >= previous.get(key, 0.0), key
                previous[key] = s.value
    t = scrape_text(port)
    assert value(t, "chargectl_bay_energy_joules_total", bay="pile-b/1") == (2.5 + 4.0) * 3600
    assert value(t, "chargectl_overload_events_total", circuit="main") == len(readings)
    assert value(t, "chargectl_device_errors_total", device="pile-b", error="timeout") == 8
    assert value(t, "chargectl_card_taps_total", result="started") == len(readings)
    assert value(t, "chargectl_sessions_total", reason="full") == len(readings)
    assert value(t, "chargectl_session_energy_joules_count") == len(readings)


def test_a_fault_stays_a_series_and_clears_to_zero(metrics: ShedMetrics) -> None:
    welded = frozenset({"welded"})
    metrics.update(TickReport(bays=(BayReport("pile-a/3", 0.4, 0.0, "fault", faults=welded),)))
    metrics.update(TickReport(bays=(BayReport("pile-a/3", 0.0, 0.0, "idle"),)))
    t = metrics.render().decode()
    assert value(t, "chargectl_bay_fault", bay="pile-a/3", fault="welded") == 0.0
    # bays that never had a fault have no fault series
    assert not [
        s for s in samples(t) if s.name == "chargectl_bay_fault" and s.labels["bay"] != "pile-a/3"
    ]


def test_tick_histogram_buckets_are_le(metrics: ShedMetrics) -> None:
    for d in (0.001, 0.0011, 0.05, 2.0):
        metrics.update(TickReport(tick_duration_s=d))
    t = metrics.render().decode()
    bucket = "chargectl_tick_duration_seconds_bucket"
    assert value(t, bucket, le="0.001") == 1  # a value on a bound belongs to that bucket
    assert value(t, bucket, le="0.002") == 2
    assert value(t, bucket, le="0.05") == 3
    assert value(t, bucket, le="1.0") == 3
    assert value(t, bucket, le="+Inf") == 4
    assert value(t, "chargectl_tick_duration_seconds_count") == 4
    assert value(t, "chargectl_tick_duration_seconds_sum") == pytest.approx(2.0521)


def test_limits_and_zeroed_counters_show_before_the_first_tick(metrics: ShedMetrics) -> None:
    t = metrics.render().decode()
    assert value(t, "chargectl_circuit_limit_amperes", circuit="row-a", phase="3") == 40.0
    for reason in END_REASONS:
        assert value(t, "chargectl_sessions_total", reason=reason) == 0
    for result in TAP_RESULTS:
        assert value(t, "chargectl_card_taps_total", result=result) == 0
    for kind in ALARM_KINDS:
        assert value(t, "chargectl_alarm", kind=kind) == 0
    for err in DEVICE_ERRORS:
        assert value(t, "chargectl_device_errors_total", device="wb-1", error=err) == 0
    # nothing is claimed about bays and devices not yet seen
    assert not [s for s in samples(t) if s.name in ("chargectl_bay_state", "chargectl_device_up")]


# ---- bad input ----


@pytest.mark.parametrize(
    ("report", "message"),
    [
        (TickReport(bays=(BayReport("pile-z/1", 0, 0, "idle"),)), "bay 'pile-z/1'"),
        (TickReport(bays=(BayReport("pile-a/4", 0, 0, "idle"),)), "bay 'pile-a/4'"),
        (TickReport(circuits=(CircuitReport("nope", (1.0,), (1.0,), 0.0),)), "circuit 'nope'"),
        (TickReport(circuits=(CircuitReport("main", (1.0,), (1.0,), 0.0),)), "phases (1, 2, 3)"),
        (TickReport(devices=(DeviceReport("ghost", True),)), "device 'ghost'"),
    ],
)
def test_unknown_ids_raise_and_change_nothing(
    metrics: ShedMetrics, report: TickReport, message: str
) -> None:
    good = TickReport(bays=(BayReport("pile-a/1", 1.0, 2.5, "charging"),), tick_duration_s=0.01)
    bad = TickReport(
        circuits=report.circuits,
        bays=(*good.bays, *report.bays),
        devices=report.devices,
        tick_duration_s=0.01,
    )
    before = metrics.render()
    with pytest.raises(MetricsError, match=re.escape(message)):
        metrics.update(bad)
    assert metrics.render() == before


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: BayReport("pile-a/1", 0, 0, "sleeping"), "state: unknown value 'sleeping'"),  # type: ignore[arg-type]
        (lambda: BayReport("pile-a/1", 0, 0, "idle", energy_wh=-1.0), "energy_wh"),
        (lambda: BayReport("pile-a/1", 0, 0, "idle", energy_wh=float("nan")), "energy_wh"),
        (lambda: BayReport("pile-a/1", 0, 0, "idle", faults=frozenset({"hot"})), "'hot'"),
        (lambda: CircuitReport("main", (1, 2, 3), (1, 2), 0.1), "differ in length"),
        (lambda: CircuitReport("main", (1,), (1,), float("nan")), "thermal_ratio"),
        (lambda: CircuitReport("main", (1,), (1,), 0.1, overload_events=-1), ">= 0"),
        (lambda: DeviceReport("pile-a", False, ("gremlins",)), "'gremlins'"),
        (lambda: SessionEnd("bored", 1.0), "'bored'"),
        (lambda: SessionEnd("full", -5.0), "energy_wh"),
        (lambda: TickReport(taps=("maybe",)), "'maybe'"),
        (lambda: TickReport(alarms=frozenset({"fire"})), "'fire'"),
        (lambda: TickReport(tick_duration_s=-0.1), "tick_duration_s"),
        (lambda: TickReport(sessions_active=-1), "sessions_active"),
    ],
)
def test_bad_values_are_refused_with_what_and_where(build: object, message: str) -> None:
    assert callable(build)
    with pytest.raises(MetricsError, match=re.escape(message)):
        build()


# ---- isolation and threads ----


def test_registries_are_private_per_shed() -> None:
    a = ShedMetrics(make_shed("north"), build=BUILD)
    b = ShedMetrics(make_shed("south"), build=BUILD)
    a.update(TickReport(sessions_active=4))
    assert value(a.render().decode(), "chargectl_sessions_active") == 4
    assert value(b.render().decode(), "chargectl_sessions_active") == 0
    assert not [n for n in REGISTRY._names_to_collectors if n.startswith("chargectl_")]


def test_scrapes_during_updates_see_whole_ticks(shed: Shed) -> None:
    metrics = ShedMetrics(shed, build=BUILD)
    server, thread = metrics.serve("127.0.0.1", 0)
    done = threading.Event()
    failures: list[BaseException] = []

    def tick_loop() -> None:
        i = 0
        try:
            while not done.is_set():
                state = BAY_STATES[i % len(BAY_STATES)]
                bays = tuple(
                    BayReport(b, 1.0, 2.0, state, energy_wh=float(i))
                    for b in ("pile-a/1", "pile-a/2", "pile-a/3", "pile-b/1", "pile-b/2", "wb-1")
                )
                metrics.update(TickReport(bays=bays, tick_duration_s=0.01))
                i += 1
        except BaseException as exc:  # surfaced by the assertion below
            failures.append(exc)

    worker = threading.Thread(target=tick_loop)
    worker.start()
    try:
        for _ in range(20):
            states: dict[str, str] = {}
            for s in samples(scrape_text(server.server_port)):
                if s.name == "chargectl_bay_state" and s.value == 1.0:
                    states[s.labels["bay"]] = s.labels["state"]
            # every bay was written in the same update: a scrape never shows half a tick
            assert len(set(states.values())) <= 1, states
    finally:
        done.set()
        worker.join(5)
        stop(server, thread)
    assert not failures


def test_a_new_metric_is_one_row(monkeypatch: pytest.MonkeyPatch, shed: Shed) -> None:
    # The registry, the state and the scrape come from the table alone.
    row = MetricSpec(
        "chargectl_test_taps_per_tick",
        "gauge",
        "Taps in the latest tick.",
        value=lambda r, s: (((), float(len(r.taps))),),
    )
    monkeypatch.setattr(metrics_module, "METRICS", (*METRICS, row))
    metrics = ShedMetrics(shed, build=BUILD)
    metrics.update(TickReport(taps=("started", "busy", "busy")))
    t = metrics.render().decode()
    assert value(t, "chargectl_test_taps_per_tick") == 3
    assert "# HELP chargectl_test_taps_per_tick Taps in the latest tick." in t
