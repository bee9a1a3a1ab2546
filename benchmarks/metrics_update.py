"""Cost of the metrics on the control loop, for a campus-sized shed (10 piles x 20 sockets,
2 wallboxes, 3 three-phase circuits), printed as JSON lines.

- tick_report: turning one tick of the control core's arrays into a TickReport;
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

from chargectl.config.schema import Breaker, Circuit, Device, Shed, ShedInfo, TcpBus
from chargectl.control.layout import Layout, build_layout
from chargectl.control.observe import Decision, Observation
from chargectl.outputs.metrics import (
    BAY_STATES,
    BuildInfo,
    ShedMetrics,
    TickReport,
    stop,
    tick_report,
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


def tick_arrays(layout: Layout, rng: np.random.Generator) -> tuple[Observation, Decision]:
    """One tick of the control core's arrays, as ControlCore.step returns them."""
    b, c = layout.n_bays, layout.n_circuits
    obs = Observation.empty(layout)
    obs.bay_up[:] = True
    obs.bay_current_a[:] = rng.uniform(0, 2.5, b)
    decision = Decision(
        relay_on=obs.bay_current_a > 0.5,
        setpoint_a=np.where(obs.bay_current_a > 0.5, 2.5, 0.0),
        circuit_current_a=rng.uniform(0, 40, (c, 3)),
        limit_a=layout.limit_a.copy(),
        planned_a=rng.uniform(0, 40, (c, 3)),
        binding=np.zeros((c, 3), dtype=np.bool_),
        infeasible=np.zeros((c, 3), dtype=np.bool_),
        overloaded=np.zeros(c, dtype=np.bool_),
        new_overloads=np.zeros(c, dtype=np.bool_),
        thermal_ratio=np.full(c, 0.3),
        unmanaged_a=np.zeros((c, 3)),
        bay_state=tuple(BAY_STATES[i] for i in rng.integers(0, len(BAY_STATES), b)),
        failsafe_mask={},
        welded=np.zeros(b, dtype=np.bool_),
        alarm=None,
    )
    return obs, decision


def build_report(
    layout: Layout,
    device_up: dict[str, bool],
    arrays: tuple[Observation, Decision],
    tick: int,
    energy: np.ndarray,
) -> TickReport:
    obs, decision = arrays
    energy += 0.05
    # The slow blocks (energy) come every 10th tick, as the daemon reads them.
    counters = {b.id: float(energy[j]) for j, b in enumerate(layout.bays)} if tick % 10 == 0 else {}
    return tick_report(
        layout,
        obs,
        decision,
        duration_s=0.012,
        device_up=device_up,
        energy_wh=counters,
        sessions_active=150,
    )


def percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def main() -> None:
    shed = campus()
    metrics = ShedMetrics(shed, BuildInfo("bench", "3", "0"))
    layout = build_layout(shed)
    device_up = {d.id: True for d in shed.devices}
    rng = np.random.default_rng(1)
    energy = np.zeros(layout.n_bays)
    # A handful of distinct ticks, cycled: making arrays is not what is measured.
    ticks = [tick_arrays(layout, rng) for _ in range(16)]

    t_build, t_update = [], []
    for tick in range(ROUNDS):
        t0 = time.perf_counter()
        report = build_report(layout, device_up, ticks[tick % 16], tick, energy)
        t1 = time.perf_counter()
        metrics.update(report)
        t2 = time.perf_counter()
        t_build.append(t1 - t0)
        t_update.append(t2 - t1)
    for name, xs in (("tick_report", t_build), ("update", t_update)):
        emit(
            bench="metrics_update",
            part=name,
            bays=layout.n_bays,
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
            metrics.update(build_report(layout, device_up, ticks[tick % 16], tick, energy))
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
