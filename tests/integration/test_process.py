"""The daemon's process against signals at any moment and a second daemon on its config
(issue 9): `chargectl sim` and `chargectl run` as separate processes, the simulator's control
API the only view of what reached the devices."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from tests.integration.helpers import DaemonProcess, SimProcess, wait_until
from tests.integration.test_failsafe_kill import (
    WATCHDOG_S,
    assert_safe_failsafe,
    charge,
    pile,
    shed_config,
)


def writes(sim: SimProcess) -> int:
    return int(sim.api("/devices/pile-a")["snapshot"]["writes_total"])


def test_sighup_ends_in_the_failsafe_state_like_sigterm(tmp_path: Path) -> None:
    cfg = shed_config(tmp_path)
    sim = SimProcess(cfg, tmp_path / "sim.log")
    daemon = DaemonProcess(cfg, tmp_path / "daemon.log")
    try:
        daemon.wait_log("first write at")
        mask = charge(sim)
        sent = time.monotonic()
        daemon.proc.send_signal(signal.SIGHUP)
        assert daemon.proc.wait(10) == 0
        # The daemon's own shutdown, not the pile's watchdog, left the contacts at the mask:
        # it ended before the watchdog could have run out.
        assert time.monotonic() - sent < WATCHDOG_S
        assert pile(sim)["contact_closed"] == [bool((mask >> k) & 1) for k in range(12)]
        wait_until(lambda: pile(sim)["failsafe"], WATCHDOG_S + 3, "fail-safe")
        assert_safe_failsafe(sim, mask)
        assert "Traceback" not in daemon.log.read_text()
    finally:
        daemon.close()
        assert sim.stop() == 0


def test_a_stop_during_a_cold_compile_ends_at_once_and_writes_nothing(tmp_path: Path) -> None:
    cfg = shed_config(tmp_path)
    sim = SimProcess(cfg, tmp_path / "sim.log")
    cold: dict[str, Any] = {"NUMBA_CACHE_DIR": str(tmp_path / "empty-numba-cache")}
    daemon = DaemonProcess(cfg, tmp_path / "daemon.log", env=cold)
    try:
        # The signal handlers are in place before the kernel loads; a cold compile takes 10 s
        # or more here, so the stop below lands in it.
        daemon.wait_log("loading the allocation kernel")
        time.sleep(0.5)
        assert daemon.proc.poll() is None
        assert "first write at" not in daemon.log.read_text(), "the compile was not cold"
        sent = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(10) == 0
        # At once: well before the compile would have ended (what the time allows on a busy
        # 2-core box; the stop does not wait for the compile's thread).
        assert time.monotonic() - sent < 5.0
        assert writes(sim) == 0  # no set-up write went out after the signal
        assert "nothing was written" in daemon.log.read_text()
        assert "Traceback" not in daemon.log.read_text()
    finally:
        daemon.close()
        assert sim.stop() == 0


def test_a_second_daemon_on_the_same_config_is_refused(tmp_path: Path) -> None:
    cfg = shed_config(tmp_path)
    sim = SimProcess(cfg, tmp_path / "sim.log")
    first = DaemonProcess(cfg, tmp_path / "first.log")
    second: DaemonProcess | None = None
    try:
        first.wait_log("first write at")
        second = DaemonProcess(cfg, tmp_path / "second.log")
        assert second.proc.wait(30) == 2
        text = second.log.read_text()
        assert f"another chargectl daemon runs on this config (pid {first.proc.pid}" in text
        assert "Traceback" not in text
        assert first.proc.poll() is None  # the first runs on, undisturbed
        first.proc.send_signal(signal.SIGTERM)
        assert first.proc.wait(10) == 0
        # Its lock went with it: a new daemon may start.
        third = DaemonProcess(cfg, tmp_path / "third.log")
        try:
            third.wait_log("first write at")
        finally:
            third.proc.send_signal(signal.SIGTERM)
            assert third.proc.wait(10) == 0
            third.close()
    finally:
        first.close()
        if second is not None:
            second.close()
        assert sim.stop() == 0
