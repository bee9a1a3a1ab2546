"""The simulator and the daemon as real processes (`chargectl sim`, `chargectl run`), for tests
that kill the daemon with SIGKILL. Plain blocking code: the test drives both over HTTP.

Each process logs to a file in the test's folder; `tail()` shows the end of it in a failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from chargectl.config.schema import Shed
from chargectl.sim.devices.registers import wh_counter
from tests.sessions_e2e.shed import CHARGECTL


def _http(url: str, body: Any = None, timeout: float = 5.0) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


class Proc:
    def __init__(self, name: str, args: list[str], log: Path) -> None:
        self.name = name
        self.log = log
        self._out = log.open("ab")
        self.popen = subprocess.Popen(
            [CHARGECTL, *args], stdout=subprocess.PIPE, stderr=self._out, start_new_session=True
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL: nothing runs after it (no fail-safe writes, no ledger flush)."""
        if self.alive():
            os.kill(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)

    def terminate(self, within: float = 20.0) -> int:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(within)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} did not stop on SIGTERM\n{self.tail()}") from None

    def close(self) -> None:
        if self.alive():
            self.kill()
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self._out.close()

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


class SimProc(Proc):
    """`chargectl sim CONFIG --no-view`, its control API and the truth about the bays."""

    def __init__(self, config: Path, shed: Shed, log: Path, speed: float) -> None:
        super().__init__("sim", ["sim", str(config), "--no-view", "--speed", str(speed)], log)
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline()  # the ready line, once everything listens
        if not line:
            raise AssertionError(f"the simulator did not start\n{self.tail()}")
        self.ready = json.loads(line)
        self.url = str(self.ready["control_api"])
        self.shed = shed

    def action(self, **action: Any) -> None:
        code, body = _http(f"{self.url}/action", action)
        assert code == 200, (action, code, body)

    def tap(self, bay: str, uid: str) -> None:
        self.action(do="tap", bay=bay, uid=uid)

    def device(self, device: str) -> dict[str, Any]:
        code, body = _http(f"{self.url}/devices/{device}")
        assert code == 200, (device, code, body)
        return dict(body)

    def counters(self) -> dict[str, int]:
        """Every bay's energy register (whole Wh, as a controller reads it)."""
        out: dict[str, int] = {}
        for d in self.shed.devices:
            if d.kind == "pile":
                energy = self.device(d.id)["snapshot"]["energy_wh"]
                for p, wh in enumerate(energy, start=1):
                    out[f"{d.id}/{p}"] = wh_counter(float(wh))
            elif d.kind == "evse":
                out[d.id] = wh_counter(float(self.device(d.id)["snapshot"]["energy_wh"]))
        return out


class DaemonProc(Proc):
    """`chargectl run CONFIG`; up once its API shows a tick."""

    def __init__(self, config: Path, shed: Shed, log: Path) -> None:
        super().__init__("daemon", ["run", str(config), "--log-level", "WARNING"], log)
        self.url = f"http://{shed.api.host}:{shed.api.port}"

    def wait_up(self, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"the daemon exited ({self.popen.returncode})\n{self.tail()}")
            try:
                code, body = _http(f"{self.url}/status", timeout=1.0)
                if code == 200 and body.get("tick", 0) > 0:
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise AssertionError(f"the daemon did not tick within {within} s\n{self.tail()}")
