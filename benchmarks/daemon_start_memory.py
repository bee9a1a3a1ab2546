"""The daemon process on the campus shed, printed as JSON lines: its first start to the first
safe write with a cold numba cache and after `chargectl warm`, and its resident memory over a
run.

`chargectl sim` and `chargectl run` are separate processes (as on an edge box with the
simulator standing in for the hardware). The daemon's own figure is its log line "first write
at X s" (from `Daemon.run`: kernel compiled or loaded, devices set up, first poll); the
process figure adds the interpreter and imports, from `Popen` to that line. Each start has a
fresh NUMBA_CACHE_DIR: "cold" an empty one (a fresh install without the warm step), "warmed"
one that `chargectl warm --only controller` filled first (the install's step, or the unit's
ExecStartPre=), whose own time is reported too. Goal (issue 10): warmed <= 2 s.

Memory: VmRSS of the daemon every 10 s for `--minutes` (default 10; 0 skips it) with 60
sessions open and both wallboxes charging.

Run: .venv/bin/python benchmarks/daemon_start_memory.py [--minutes 10]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chargectl.config.load import load_shed
from tests.integration.helpers import CHARGECTL, SimProcess, wait_until
from tests.rig import CARD, REPO, add_cards, write_config

PILES = [f"pile-{r}{n}" for r in "ab" for n in range(1, 6)]
BAYS = [f"{p}/{k}" for p in PILES for k in range(1, 7)]
FIRST_WRITE = re.compile(r"first write at ([0-9.]+) s")
GOAL_S = 2.0  # issue 10: a fresh install's first start to its first safe write


def jit_env(cache: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), NUMBA_CACHE_DIR=str(cache))
    env.pop("NUMBA_DISABLE_JIT", None)
    return env


def warm_cache(cache: Path) -> float:
    """`chargectl warm --only controller` into `cache` (what the install and the unit run)."""
    t0 = time.perf_counter()
    res = subprocess.run(
        [CHARGECTL, "warm", "--only", "controller"],
        env=jit_env(cache), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if res.returncode != 0 or "compiled" not in res.stdout:
        raise SystemExit(f"chargectl warm failed ({res.returncode}): {res.stdout}{res.stderr}")
    return round(time.perf_counter() - t0, 3)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def start_daemon(cfg: Path, cache: Path, log: Path) -> tuple[subprocess.Popen[bytes], float, float]:
    """Start `chargectl run`; returns (process, first write per its log, Popen to that line)."""
    env = jit_env(cache)
    out = log.open("w")
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [CHARGECTL, "run", str(cfg)], stdout=out, stderr=subprocess.STDOUT, env=env
    )
    while True:
        m = FIRST_WRITE.search(log.read_text())
        if m:
            return proc, float(m.group(1)), time.perf_counter() - t0
        if proc.poll() is not None:
            raise SystemExit(f"chargectl run exited {proc.returncode}: {log.read_text()}")
        if time.perf_counter() - t0 > 120:
            raise SystemExit("no first write within 120 s")
        time.sleep(0.01)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(20)


def main(minutes: float) -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cars = [{"device": "wb-1"}, {"device": "wb-2"}]
        cfg = write_config(
            tmp,
            "campus",
            overrides={
                "sim": {
                    "chargers": [{"bay": b, "profile": "li48", "soc": 0.2} for b in BAYS],
                    "cars": cars,
                }
            },
        )
        add_cards(load_shed(cfg))
        sim = SimProcess(cfg, tmp / "sim.log")
        try:
            first_start: dict[str, float] = {}
            for run in ("cold", "warmed"):
                cache = tmp / f"numba-{run}"
                cache.mkdir()
                extra: dict[str, float] = {}
                if run == "warmed":
                    extra["warm_command_s"] = warm_cache(cache)
                proc, first, process = start_daemon(cfg, cache, tmp / f"daemon-{run}.log")
                stop(proc)
                first_start[run] = round(process, 3)
                print(json.dumps({
                    "bench": "daemon_start", "shed": "campus", "numba_cache": run,
                    "first_write_s": first, "process_to_first_write_s": round(process, 3),
                    **extra,
                }), flush=True)  # fmt: skip
            print(json.dumps({
                "bench": "daemon_first_start", "shed": "campus",
                "cold_s": first_start["cold"], "warmed_s": first_start["warmed"],
                "goal_s": GOAL_S, "met": first_start["warmed"] <= GOAL_S,
            }), flush=True)  # fmt: skip
            if minutes <= 0:
                return
            proc, _, _ = start_daemon(cfg, cache, tmp / "daemon-run.log")
            start_kib = rss_kib(proc.pid)
            for k in range(6):  # one tap per pile a wave: a pile holds only its latest tap
                for p in PILES:
                    sim.api("/action", {"do": "tap", "bay": f"{p}/{k + 1}", "uid": CARD})
                time.sleep(2.5)
            for wb in ("wb-1", "wb-2"):
                sim.api("/action", {"do": "tap", "bay": wb, "uid": CARD})
            wait_until(lambda: sim.api("/truth?bays=0")["bays_charging"] >= 20, 30, "charging")
            samples = [start_kib]
            t_end = time.monotonic() + minutes * 60
            while time.monotonic() < t_end:
                time.sleep(min(10.0, max(0.0, t_end - time.monotonic())))
                samples.append(rss_kib(proc.pid))
            truth = sim.api("/truth?bays=0")
            stop(proc)
            print(json.dumps({
                "bench": "daemon_rss", "shed": "campus", "minutes": minutes,
                "bays_charging": truth["bays_charging"],
                "rss_start_mib": round(start_kib / 1024, 1),
                "rss_end_mib": round(samples[-1] / 1024, 1),
                "rss_max_mib": round(max(samples) / 1024, 1),
                "rss_growth_mib": round((samples[-1] - samples[1]) / 1024, 2),
                "breaker_trips": len(truth["trips"]),
            }), flush=True)  # fmt: skip
        finally:
            sim.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to run")
    args = parser.parse_args()
    main(args.minutes)
