"""What the issue-4 integration tests share on top of tests/rig.py.

- `open_sessions`: a pile holds only its latest tap, so taps go in waves of one bay per
  device, each wave seen by the daemon before the next (as people queue at a pile).
- `TruthTrace`: every simulator step's true circuit currents, recorded from inside the step
  (so a 0.1 s inrush or a shed between two polls cannot hide between samples).
- `scrape`: the daemon's Prometheus endpoint over HTTP, parsed into {(name, labels): value}.
- `SimProcess` / `DaemonProcess`: `chargectl sim` and `chargectl run` as subprocesses, with
  the simulator's control API as the only window on the truth.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from tests.rig import REPO, Rig, bay_card

CHARGECTL = str(Path(sys.executable).with_name("chargectl"))
Labels = tuple[tuple[str, str], ...]


async def open_sessions(
    rig: Rig, bays: Iterable[str], uid: str | None = None, within: float = 10.0
) -> None:
    """Tap a card at every bay (charging or waiting afterwards), one bay per device a wave:
    each bay's own card (`tests.rig.bay_card`), or `uid` everywhere."""
    queues: dict[str, list[str]] = {}
    for bay in bays:
        queues.setdefault(bay.split("/")[0], []).append(bay)
    while any(queues.values()):
        wave = [q.pop(0) for q in queues.values() if q]
        for bay in wave:
            rig.tap(bay, uid or bay_card(bay))
        await rig.wait_for(partial(_opened, rig, wave), within, f"sessions at {wave}")


def _opened(rig: Rig, bays: list[str]) -> bool:
    return all(rig.bay(b)["state"] in ("charging", "waiting") for b in bays)


@dataclass
class TruthTrace:
    """Per simulator step: the time, the true current through every breaker [C, 3], and the
    part of it that is inrush: sockets in their first step after their contacts closed."""

    circuit_ids: tuple[str, ...]
    times: list[float] = field(default_factory=list)
    amps: list[np.ndarray] = field(default_factory=list)
    inrush: list[np.ndarray] = field(default_factory=list)

    def since(self, t0: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = np.array(self.times)
        keep = t >= t0
        return t[keep], np.array(self.amps)[keep], np.array(self.inrush)[keep]

    def circuit(self, cid: str, t0: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(times, amps[n, 3]) of one circuit from `t0` on."""
        t, a, _ = self.since(t0)
        return t, a[:, self.circuit_ids.index(cid), :]

    def circuit_without_inrush(self, cid: str, t0: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(times, amps[n, 3]) less the current of sockets in their inrush step."""
        t, a, r = self.since(t0)
        c = self.circuit_ids.index(cid)
        return t, a[:, c, :] - r[:, c, :]


@contextmanager
def trace_truth(rig: Rig) -> Iterator[TruthTrace]:
    """Record every world step while the block runs (a wrapper around `World.step`)."""
    world = rig.sim.world
    topo = world.topo
    trace = TruthTrace(tuple(topo.circuit_ids))
    inner = world.step
    n_c = len(topo.circuit_ids)
    key = topo.socket_circuit * 3 + topo.socket_phase
    under = topo.subtree.astype(np.float64)  # [ancestor, circuit]
    before = world.closed.copy()

    def step(dt: float) -> Any:
        trips = inner(dt)
        newly = world.closed & ~before
        before[:] = world.closed
        own = np.bincount(key, world.chargers.amps * newly, minlength=n_c * 3).reshape(n_c, 3)
        trace.times.append(world.now)
        trace.amps.append(world.circuit_amps.copy())
        trace.inrush.append(under @ own)
        return trips

    world.step = step
    try:
        yield trace
    finally:
        world.step = inner


def window_mean(times: np.ndarray, amps: np.ndarray, window_s: float) -> np.ndarray:
    """Trailing mean over `window_s` of per-step samples (the steps are equally spaced)."""
    if len(times) < 2:
        return amps
    dt = float(np.median(np.diff(times)))
    n = max(1, round(window_s / dt))
    kernel = np.ones(n) / n
    cols = amps.reshape(len(amps), -1)
    out = np.column_stack([np.convolve(cols[:, k], kernel, "valid") for k in range(cols.shape[1])])
    return out.reshape((-1, *amps.shape[1:]))


def limits(rig: Rig) -> dict[str, float]:
    return {c.id: c.limit_a for c in rig.shed.circuits}


# -- the daemon's metrics --------------------------------------------------------------------
def parse_metrics(text: str) -> dict[tuple[str, Labels], float]:
    out: dict[tuple[str, Labels], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


async def scrape(rig: Rig) -> dict[tuple[str, Labels], float]:
    port = rig.daemon.metrics_port
    assert port, "the daemon serves no metrics"
    url = f"http://{rig.shed.metrics.host}:{port}/metrics"

    def get() -> str:
        with urllib.request.urlopen(url, timeout=5) as r:
            return str(r.read().decode())

    return parse_metrics(await asyncio.to_thread(get))


def metric(samples: dict[tuple[str, Labels], float], name: str, **labels: str) -> float:
    """The one sample of `name` whose labels include `labels`."""
    hits = [
        v
        for (n, lab), v in samples.items()
        if n == name and all(dict(lab).get(k) == w for k, w in labels.items())
    ]
    if len(hits) != 1:
        raise KeyError(f"{name}{labels}: {len(hits)} samples")
    return hits[0]


# -- subprocesses -----------------------------------------------------------------------------
def http_json(url: str, body: Any = None, timeout: float = 5.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        raise AssertionError(f"{url}: {e.code} {e.read()!r}") from None


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    env.pop("NUMBA_DISABLE_JIT", None)
    return env


class SimProcess:
    """`chargectl sim CONFIG` in a subprocess; `api(path, body)` talks to its control API."""

    def __init__(self, config: Path, log: Path) -> None:
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            [CHARGECTL, "sim", str(config), "--no-view"],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=_env(),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"chargectl sim did not start: {log.read_text()}")
        self.ready = json.loads(line)
        self.url = str(self.ready["control_api"])

    def api(self, path: str, body: Any = None) -> Any:
        return http_json(self.url + path, body)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(20)
        self._log.close()
        return rc


class DaemonProcess:
    """`chargectl run CONFIG` in a subprocess, its log in a file."""

    def __init__(self, config: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            [CHARGECTL, "run", str(config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=_env() | (env or {}),
        )

    def wait_log(self, text: str, within: float = 60.0) -> str:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            content = self.log.read_text()
            if text in content:
                return content
            if self.proc.poll() is not None:
                raise AssertionError(f"chargectl run exited {self.proc.returncode}:\n{content}")
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} in the daemon's log within {within} s")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def wait_until(pred: Any, within: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {within} s waiting for {what}")
