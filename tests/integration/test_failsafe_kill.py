"""The daemon's process dies or is stopped: `chargectl sim` and `chargectl run` as separate
processes, the simulator's control API the only view of the truth.

SIGKILL: nobody writes any more; within the watchdog time every pile falls to fail-safe, with
exactly the sockets of its mask on, a mask that is safe with nobody watching, and no breaker
trips. SIGTERM: the daemon exits 0 and leaves every device as its fail-safe would.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from chargectl.config.load import load_shed
from tests.integration.helpers import DaemonProcess, SimProcess, wait_until
from tests.rig import add_cards, bay_card, bay_cards, write_config

WATCHDOG_S = 3
LIMIT_A = 30.0
WORST_A = 4.0  # the small shed's unmanaged_worst_a
PORT_LIMIT_A = 2000 / 220
BAYS = [f"pile-a/{p}" for p in range(1, 6)]


def shed_config(tmp_path: Path) -> Path:
    cfg = write_config(
        tmp_path,
        "small",
        overrides={
            "control": {"tick_s": 0.25, "watchdog_s": WATCHDOG_S},
            "sim": {"chargers": [{"bay": b, "profile": "li72", "soc": 0.3} for b in BAYS]},
        },
    )
    shed = load_shed(cfg)
    add_cards(shed, bay_cards(shed))
    return cfg


def pile(sim: SimProcess) -> dict[str, Any]:
    return dict(sim.api("/devices/pile-a")["snapshot"])


def mask_bits(mask: int, ports: int = 12) -> list[bool]:
    return [bool((mask >> k) & 1) for k in range(ports)]


def charge(sim: SimProcess) -> int:
    """Sessions on every bay (one tap at a time: the pile holds only its latest tap); returns
    the fail-safe mask the daemon settles on."""
    for bay in BAYS:
        sim.api("/action", {"do": "tap", "bay": bay, "uid": bay_card(bay)})
        wait_until(lambda b=bay: sim.api(f"/bays/{b}")["closed"], 10, f"{bay} closed")
    wait_until(lambda: pile(sim)["failsafe_mask"] != 0, 5, "a fail-safe mask")
    time.sleep(1.0)  # a few ticks: the mask follows the charging sockets
    mask = int(pile(sim)["failsafe_mask"])
    assert not pile(sim)["failsafe"]
    return mask


def assert_safe_failsafe(sim: SimProcess, mask: int) -> None:
    snap = pile(sim)
    assert snap["failsafe"]
    assert snap["contact_closed"] == mask_bits(mask)
    assert snap["relay_cmd"] == [int(b) for b in mask_bits(mask)]
    # Safe with nobody watching: every socket left on at the pile's cut-off, plus the worst
    # unmanaged load, fits the limit.
    assert bin(mask).count("1") * PORT_LIMIT_A + WORST_A <= LIMIT_A
    truth = sim.api("/truth?bays=0")
    assert truth["trips"] == []
    assert max(truth["circuits"]["main"]["amps"]) <= LIMIT_A


def test_sigkill_leaves_the_piles_to_fall_to_a_safe_failsafe(tmp_path: Path) -> None:
    cfg = shed_config(tmp_path)
    sim = SimProcess(cfg, tmp_path / "sim.log")
    daemon = DaemonProcess(cfg, tmp_path / "daemon.log")
    try:
        daemon.wait_log("first write at")
        mask = charge(sim)
        assert 0 < bin(mask).count("1") < len(BAYS)  # the budget keeps some, not all

        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait(5)
        killed_at = sim.api("/health")["time"]
        wait_until(lambda: pile(sim)["failsafe"], WATCHDOG_S + 3, "fail-safe")
        fell_at = sim.api("/health")["time"]
        assert fell_at - killed_at <= WATCHDOG_S + 0.5
        assert_safe_failsafe(sim, mask)
        time.sleep(1.0)  # and it stays so
        assert_safe_failsafe(sim, mask)
    finally:
        daemon.close()
        assert sim.stop() == 0


def test_sigterm_exits_0_and_leaves_the_failsafe_state(tmp_path: Path) -> None:
    cfg = shed_config(tmp_path)
    sim = SimProcess(cfg, tmp_path / "sim.log")
    daemon = DaemonProcess(cfg, tmp_path / "daemon.log")
    try:
        daemon.wait_log("first write at")
        mask = charge(sim)

        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(10) == 0
        # At once, before any watchdog: the relays are as the fail-safe will hold them.
        assert pile(sim)["contact_closed"] == mask_bits(mask)
        wait_until(lambda: pile(sim)["failsafe"], WATCHDOG_S + 3, "fail-safe")
        assert_safe_failsafe(sim, mask)
        assert "Traceback" not in daemon.log.read_text()
    finally:
        daemon.close()
        assert sim.stop() == 0
