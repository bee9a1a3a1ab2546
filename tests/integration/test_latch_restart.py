"""The latches staff must clear survive a kill of the daemon: `chargectl sim` and `chargectl
run` as separate processes, the daemon SIGKILLed and started again on the same ledger, the
simulator's control API the only view of the truth (relays, wallbox offers).

Smoke latched, daemon killed, smoke gone, daemon started again: no relay closes and no
wallbox gets an offer until staff clear the alarm; then charging resumes. A bay held out by a
critical fire-risk finding stays out across the restart until `chargectl bays clear-fault`.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from chargectl.config.load import load_shed
from tests.integration.helpers import (
    CHARGECTL,
    DaemonProcess,
    SimProcess,
    http_json,
    metric,
    parse_metrics,
    wait_until,
)
from tests.integration.test_firewatch_actions import BAY, config
from tests.rig import add_cards, bay_card, bay_cards, write_config

TICK_S = 0.25
HELD_TICKS = 8  # ticks watched after the restart, the latch holding


def start(cfg: Path, tmp_path: Path, n: int) -> DaemonProcess:
    daemon = DaemonProcess(cfg, tmp_path / f"daemon-{n}.log")
    daemon.wait_log("first write at")
    return daemon


def kill(daemon: DaemonProcess) -> None:
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait(5)
    daemon.close()


def api(cfg: Path, path: str, body: Any = None) -> Any:
    """The daemon's local API: GET without a body, a staff command (JSON) with one."""
    shed = load_shed(cfg)
    url = f"http://{shed.api.host}:{shed.api.port}{path}"
    if body is None:
        return http_json(url)
    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def _metrics_url(cfg: Path) -> str:
    shed = load_shed(cfg)
    return f"http://{shed.metrics.host}:{shed.metrics.port}/metrics"


def tap(sim: SimProcess, bay: str, uid: str | None = None) -> None:
    sim.api("/action", {"do": "tap", "bay": bay, "uid": uid or bay_card(bay)})


def nothing_on(sim: SimProcess) -> bool:
    truth = sim.api("/truth")
    return not any(b["closed"] for b in truth["bays"].values()) and all(
        w["offered_a"] == 0 for w in truth["wallboxes"].values()
    )


def watch_ticks(sim: SimProcess, ok: Any, ticks: int = HELD_TICKS) -> None:
    """`ok()` holds at every look for `ticks` of the daemon's ticks (looked at 4 times a tick)."""
    for _ in range(ticks * 4):
        assert ok()
        time.sleep(TICK_S / 4)


def test_smoke_latched_stays_latched_across_a_kill_until_staff_clear_it(tmp_path: Path) -> None:
    bays = ["pile-a1/1", "pile-b1/2", "pile-b1/3"]
    later = "pile-a3/1"  # never on before: no min_off to wait out after the clear
    chargers = [{"bay": b, "profile": "li48", "soc": 0.3} for b in [*bays, later]]
    cfg = write_config(
        tmp_path,
        "campus",
        overrides={
            "control": {"tick_s": TICK_S, "watchdog_s": 3},
            "sim": {"chargers": chargers},
        },
    )
    shed = load_shed(cfg)
    add_cards(shed, bay_cards(shed))
    sim = SimProcess(cfg, tmp_path / "sim.log")
    daemon = start(cfg, tmp_path, 1)
    try:
        for bay in [*bays, "wb-1"]:
            tap(sim, bay)
            wait_until(lambda b=bay: _state(cfg, b), 10, f"{bay} on")
        wait_until(
            lambda: sum(b["closed"] for b in sim.api("/truth")["bays"].values()) == 3,
            10,
            "3 relays closed",
        )
        wait_until(lambda: sim.api("/bays/wb-1")["offered_a"] >= 6, 10, "the car offered")

        sim.api("/action", {"do": "smoke", "device": "pile-b1"})
        wait_until(lambda: nothing_on(sim), 2, "every relay open, every wallbox paused")
        time.sleep(0.5)  # the latch reaches the ledger (the writer thread writes at once)
        kill(daemon)
        sim.api("/action", {"do": "smoke", "device": "pile-b1", "active": False})

        daemon = start(cfg, tmp_path, 2)
        log = daemon.log.read_text()
        assert "shed alarm smoke at pile-b1 still latched from " in log
        assert log.count("still latched from") == 1
        wait_until(lambda: api(cfg, "/status").get("alarm") == "smoke", 3, "the alarm shown")
        # The sessions ended at the alarm (`emergency`): residents tap again, at a socket and
        # at the wallbox. Nothing is switched on, nothing offered.
        tap(sim, "pile-a3/2")
        tap(sim, "wb-1")
        watch_ticks(sim, lambda: nothing_on(sim))
        assert api(cfg, "/status")["alarm"] == "smoke"
        with urllib.request.urlopen(_metrics_url(cfg), timeout=5) as r:
            samples = parse_metrics(r.read().decode())
        assert metric(samples, "chargectl_alarm", kind="smoke") == 1

        assert api(cfg, "/alarm/clear", {}) == {"cleared": True}
        wait_until(lambda: api(cfg, "/status")["alarm"] is None, 3, "alarm cleared")
        tap(sim, later)
        wait_until(lambda: sim.api(f"/bays/{later}")["closed"], 10, "charging again")
        assert sim.api("/truth?bays=0")["trips"] == []
        # Cleared for good: a third start restores nothing.
        kill(daemon)
        daemon = start(cfg, tmp_path, 3)
        assert "still latched" not in daemon.log.read_text()
        wait_until(lambda: "alarm" in api(cfg, "/status"), 3, "the first status")
        assert api(cfg, "/status")["alarm"] is None
    finally:
        daemon.close()
        assert sim.stop() == 0


def _state(cfg: Path, bay: str) -> bool:
    return _bay(cfg, bay).get("state") in ("charging", "waiting")


def test_a_held_out_bay_stays_out_across_a_kill_until_staff_clear_it(tmp_path: Path) -> None:
    cfg = config(tmp_path)  # the small shed, the fire-risk watch on, one charger at BAY
    shed = load_shed(cfg)
    add_cards(shed, bay_cards(shed))
    sim = SimProcess(cfg, tmp_path / "sim.log")
    daemon = start(cfg, tmp_path, 1)

    def closed() -> bool:
        return bool(sim.api(f"/bays/{BAY}")["closed"])

    try:
        tap(sim, BAY)
        wait_until(closed, 10, "the relay closed")
        sim.api("/action", {"do": "heater", "bay": BAY, "watts": 1200.0})
        wait_until(lambda: "FIRE RISK critical" in daemon.log.read_text(), 15, "a finding")
        wait_until(lambda: not closed(), 2, "the relay cut")
        time.sleep(0.5)  # the latch reaches the ledger
        kill(daemon)
        sim.api("/action", {"do": "heater", "bay": BAY, "watts": 0.0})  # the heater taken away

        daemon = start(cfg, tmp_path, 2)
        assert f"bay {BAY} held out (over_power) still latched from " in daemon.log.read_text()
        wait_until(lambda: _bay(cfg, BAY).get("state") == "fault", 3, "the bay shown in fault")
        tap(sim, BAY)  # the resident tries again: refused, the relay stays open
        watch_ticks(sim, lambda: not closed(), ticks=int(3 / TICK_S))

        done = subprocess.run(
            [CHARGECTL, "bays", "clear-fault", BAY, "-c", str(cfg)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        wait_until(lambda: _bay(cfg, BAY).get("state") != "fault", 3, "the bay free")
        # Another card (the refused one's tap is within the debounce window still).
        tap(sim, BAY, bay_card("pile-a/2"))
        wait_until(closed, 15, "charging again after the clear")
        kill(daemon)
        daemon = start(cfg, tmp_path, 3)
        assert "still latched" not in daemon.log.read_text()
    finally:
        daemon.close()
        assert sim.stop() == 0


def _bay(cfg: Path, bay: str) -> dict[str, Any]:
    for b in api(cfg, "/status").get("bays", []):
        if b["id"] == bay:
            return dict(b)
    return {}
