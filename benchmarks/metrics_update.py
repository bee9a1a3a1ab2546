"""Cost of the metrics on the control loop, for a campus-sized shed (10 piles x 20 sockets,
2 wallboxes, 3 three-phase circuits), printed as JSON lines.

- build_report: turning per-tick arrays (what the control core produces) into a TickReport;
- update: ShedMetrics.update for that report (what the tick pays);
- render: one whole exposition (what a scrape costs the scrape thread), with its series count;
- loop_lag: while a thread scrapes as fast as it can, how late a 0.25 s asyncio tick wakes.

Run: .venv/bin/python benchmarks/metrics_update.py
"""

from __future__ import annotations

import asyncio
import json
import statistics
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from chargectl.config import Breaker, Circuit, Device, Shed, ShedInfo, TcpBus, bay_id
from chargectl.metrics import (
    BAY_STATES,
    BayReport,
    BuildInfo,
    CircuitReport,
    DeviceReport,
    ShedMetrics,
    TickReport,
    stop,
)

ROUNDS = 2000


def campus() -> Shed:
    devices = [Device("meter-main", "sdm630", "line-main", 10, None, (1, 2, 3))]
    for row in ("a", "b"):
        devices.append(Device(f"meter-{row}", "sdm630", f"line-{row}", 10, None, (1, 2, 3)))
        for k in range(1, 6):
            ph = ((k - 1) % 3) + 1
            devices.append(
                Device(f"pile-{row}{k}", "pile", f"line-{row}", k, f"row-{row}", (ph,), 20)
            )
    for k in (1, 2):
        devices.append(Device(f"wb-{k}", "evse", "line-main", 20 + k, "main", (1, 2, 3)))
    return Shed(
        source=Path("campus.yaml"),
        shed=ShedInfo("campus", 3),
        circuits=(
            Circuit("main", 63, Breaker(63), meter="meter-main"),
            Circuit("row-a", 40, Breaker(40), parent="main", meter="meter-a"),
            Circuit("row-b", 40, Breaker(40), parent="main", meter="meter-b"),
        ),
        buses=tuple(TcpBus(f"line-{x}", "127.0.0.1", 5020) for x in ("main", "a", "b")),
        devices=tuple(devices),
    )


def build_report(
    shed: Shed, bays: list[str], rng: np.random.Generator, tick: int, energy: np.ndarray
) -> TickReport:
    n = len(bays)
    current = rng.uniform(0, 2.5, n)
    setpoint = np.where(current > 0.5, 2.5, 0.0)
    state_idx = rng.integers(0, len(BAY_STATES), n)
    energy += rng.uniform(0, 0.2, n)
    circuits = tuple(
        CircuitReport(c.id, tuple(rng.uniform(0, 40, 3)), tuple(rng.uniform(0, 40, 3)), 0.3)
        for c in shed.circuits
    )
    # The slow blocks (energy) come every 10th tick, as the daemon reads them.
    with_energy = tick % 10 == 0
    bay_reports = tuple(
        BayReport(
            b,
            float(current[i]),
            float(setpoint[i]),
            BAY_STATES[state_idx[i]],
            float(energy[i]) if with_energy else None,
        )
        for i, b in enumerate(bays)
    )
    devices = tuple(DeviceReport(d.id, True) for d in shed.devices)
    return TickReport(circuits, bay_reports, devices, frozenset(), 0.012, 150)


def percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def main() -> None:
    shed = campus()
    metrics = ShedMetrics(shed, BuildInfo("bench", "3", "0"))
    bays = [
        bay_id(d.id, p) for d in shed.devices if d.kind == "pile" for p in range(1, d.ports + 1)
    ] + [d.id for d in shed.devices if d.kind == "evse"]
    rng = np.random.default_rng(1)
    energy = np.zeros(len(bays))

    t_build, t_update = [], []
    for tick in range(ROUNDS):
        t0 = time.perf_counter()
        report = build_report(shed, bays, rng, tick, energy)
        t1 = time.perf_counter()
        metrics.update(report)
        t2 = time.perf_counter()
        t_build.append(t1 - t0)
        t_update.append(t2 - t1)
    for name, xs in (("build_report", t_build), ("update", t_update)):
        emit(
            bench="metrics_update",
            part=name,
            bays=len(bays),
            rounds=ROUNDS,
            p50_ms=round(percentile(xs, 50) * 1e3, 3),
            p99_ms=round(percentile(xs, 99) * 1e3, 3),
            share_of_250ms_tick_pct=round(statistics.mean(xs) / 0.25 * 100, 3),
        )

    t_render = []
    for _ in range(50):
        t0 = time.perf_counter()
        body = metrics.render()
        t_render.append(time.perf_counter() - t0)
    series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    emit(
        bench="metrics_update",
        part="render",
        series=series,
        bytes=len(body),
        p50_ms=round(percentile(t_render, 50) * 1e3, 2),
        p99_ms=round(percentile(t_render, 99) * 1e3, 2),
    )

    server, thread = metrics.serve("127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    done = threading.Event()
    scrapes = 0

    def scraper() -> None:
        nonlocal scrapes
        while not done.is_set():
            with urllib.request.urlopen(url, timeout=5) as r:
                r.read()
            scrapes += 1

    async def ticking(seconds: float) -> list[float]:
        lags = []
        tick = 0
        deadline = time.perf_counter()
        end = deadline + seconds
        while deadline < end:
            deadline += 0.25
            await asyncio.sleep(max(0.0, deadline - time.perf_counter()))
            lags.append(time.perf_counter() - deadline)
            metrics.update(build_report(shed, bays, rng, tick, energy))
            tick += 1
        return lags

    for scraping in (False, True):
        worker = threading.Thread(target=scraper) if scraping else None
        scrapes = 0
        done.clear()
        if worker:
            worker.start()
        lags = asyncio.run(ticking(8.0))
        done.set()
        if worker:
            worker.join()
        emit(
            bench="metrics_update",
            part="loop_lag",
            scraping_continuously=scraping,
            scrapes=scrapes,
            ticks=len(lags),
            p50_ms=round(percentile(lags, 50) * 1e3, 2),
            p99_ms=round(percentile(lags, 99) * 1e3, 2),
            max_ms=round(max(lags) * 1e3, 2),
        )
    stop(server, thread)


if __name__ == "__main__":
    main()
