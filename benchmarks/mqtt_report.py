"""What the MQTT link costs the tick, and how fast it empties its outbox into a real broker.

Prints JSON lines:
- `report_quiet`: `MqttReporter.report` on the campus shed (202 bays, 3 circuits) on a tick
  with nothing to tell (the usual tick): p50/p99 µs.
- `report_state`: the same on a tick that builds the state summary (every 10 s by default).
- `report_events`: a busy tick: 10 taps, 5 settled sessions, an overload, a device down.
- `link_drain`: N events (QoS 1) queued, then drained by the link into a local mosquitto:
  messages per second and the time to connect and drain.

    .venv/bin/python benchmarks/mqtt_report.py [--ticks 5000] [--events 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from chargectl.config.load import load_shed
from chargectl.config.schema import MqttSettings
from chargectl.control.layout import Layout, build_layout
from chargectl.control.observe import Decision, Demand, Observation
from chargectl.outputs.mqtt import MqttLink, MqttReporter, Outbox, Outgoing
from chargectl.runtime.clock import RealClock
from chargectl.runtime.contracts import Poll, TickOutcome
from chargectl.runtime.events import EventTracker, SessionNews, TickEvents
from chargectl.sessions.machine import Reason
from chargectl.sessions.manager import EndedSession, TapOutcome, TapResult

ROOT = Path(__file__).resolve().parent.parent
CARD = "04A1B2C3"


def decision(layout: Layout, overloaded: bool) -> Decision:
    b, c = layout.n_bays, layout.n_circuits
    cur = np.where(layout.circuit_phases, 20.0, 0.0)
    states = ("idle", "charging", "waiting", "paused")
    return Decision(
        relay_on=np.zeros(b, dtype=np.bool_),
        setpoint_a=np.zeros(b),
        circuit_current_a=cur,
        limit_a=layout.limit_a.copy(),
        planned_a=cur.copy(),
        binding=np.zeros((c, 3), dtype=np.bool_),
        infeasible=np.zeros((c, 3), dtype=np.bool_),
        overloaded=np.full(c, overloaded),
        new_overloads=np.full(c, overloaded),
        thermal_ratio=np.full(c, 0.3),
        unmanaged_a=np.zeros((c, 3)),
        bay_state=tuple(states[j % 4] for j in range(b)),
        failsafe_mask={},
        welded=np.zeros(b, dtype=np.bool_),
        alarm=None,
    )


def tick(layout: Layout, now: float, d: Decision, events: TickEvents) -> TickOutcome:
    poll = Poll(Observation.empty(layout))
    return TickOutcome(now, 1.7e9 + now, 0.001, poll, d, Demand.none(layout), {}, events)


def stats(name: str, samples: list[float], **extra: object) -> None:
    us = sorted(s * 1e6 for s in samples)
    p99 = us[min(len(us) - 1, int(len(us) * 0.99))]
    line = {"bench": name, "n": len(us), "p50_us": round(statistics.median(us), 1)}
    print(json.dumps(line | {"p99_us": round(p99, 1)} | extra))


def bench_report(ticks: int) -> None:
    layout = build_layout(load_shed(ROOT / "deploy" / "examples" / "campus.yaml"))
    devices = {d: True for d in ("pile-a1", "pile-a2", "pile-b1", "meter-main", "wb-1")}
    taps: list[TapResult] = []
    settled: list[EndedSession] = []
    box = Outbox(1_000_000)
    rep = MqttReporter("campus", layout, box, state_interval_s=10.0)
    tracker = EventTracker(layout.topology)
    obs = Observation.empty(layout)

    def report(now: float, d: Decision) -> None:
        # What the loop does for this reporter: the tick's events, then the report.
        news = SessionNews(tuple(taps), {}, tuple(settled), None)
        rep.report(tick(layout, now, d, tracker.tick(obs, d, devices, news)))

    quiet, state, busy = [], [], []
    calm, hot = decision(layout, False), decision(layout, True)
    report(0.0, calm)
    for n in range(1, ticks + 1):
        now = float(n)
        if n % 10 == 0:
            t0 = time.perf_counter()
            report(now, calm)
            state.append(time.perf_counter() - t0)
        elif n % 10 == 5:
            taps[:] = [
                TapResult(f"pile-a1/{i + 1}", CARD, TapOutcome.STARTED, i) for i in range(10)
            ]
            settled[:] = [
                EndedSession(i, CARD, f"pile-a2/{i}", 0.0, Reason.FULL, 900) for i in range(5)
            ]
            devices["pile-b1"] = False
            t0 = time.perf_counter()
            report(now, hot)
            busy.append(time.perf_counter() - t0)
            taps.clear()
            settled.clear()
            devices["pile-b1"] = True
            report(now + 0.5, calm)  # the endings, off the clock
        else:
            t0 = time.perf_counter()
            report(now, calm)
            quiet.append(time.perf_counter() - t0)
    stats("report_quiet", quiet, bays=layout.n_bays)
    stats("report_state", state, bays=layout.n_bays)
    stats("report_events", busy, events_per_tick=10 + 5 + layout.n_circuits + 1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def local_broker() -> Iterator[int | None]:
    """A throwaway anonymous mosquitto on a free loopback port (None: not installed)."""
    mosquitto = shutil.which("mosquitto", path="/usr/sbin:/usr/bin:/usr/local/sbin")
    if mosquitto is None:
        yield None
        return
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        conf = Path(tmp) / "m.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n")
        proc = subprocess.Popen([mosquitto, "-c", str(conf)], stderr=subprocess.DEVNULL)
        try:
            for _ in range(200):
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    break
                except OSError:
                    time.sleep(0.02)
            yield port
        finally:
            proc.terminate()
            proc.wait(10)


async def bench_link(port: int, n: int) -> None:
    box = Outbox(n)
    settings = MqttSettings(host="127.0.0.1", port=port)
    link = MqttLink(settings, "bench", box, commands={}, clock=RealClock(), base_dir=ROOT)
    for i in range(n):
        box.put(Outgoing("chargectl/bench/events/tap", {"i": i, "bay": "p/1"}, 1, False))
    stop = asyncio.Event()
    t0 = time.perf_counter()
    task = asyncio.create_task(link.run(stop))
    while link.published < n:  # noqa: ASYNC110 (the link has no event for this)
        await asyncio.sleep(0.001)
    dt = time.perf_counter() - t0
    stop.set()
    await asyncio.wait_for(task, 15)
    line = {"bench": "link_drain", "events": n, "qos": 1, "seconds": round(dt, 3)}
    print(json.dumps(line | {"per_s": round(n / dt)}))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ticks", type=int, default=5000)
    ap.add_argument("--events", type=int, default=2000)
    args = ap.parse_args()
    bench_report(args.ticks)
    with local_broker() as port:
        if port is None:
            print(json.dumps({"bench": "link_drain", "skipped": "mosquitto not installed"}))
        else:
            asyncio.run(bench_link(port, args.events))
    return 0


if __name__ == "__main__":
    sys.exit(main())
