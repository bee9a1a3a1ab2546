"""deploy/systemd: the units parse, verify with systemd-analyze and keep their hardening."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
INSTALLED = "/opt/chargectl/.venv/bin/chargectl"


def directives(unit: Path) -> dict[str, dict[str, list[str]]]:
    """section -> key -> values (systemd keys may repeat)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out.setdefault(section, {})
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{unit.name}: not a key=value line: {raw!r}"
        out[section].setdefault(key.strip(), []).append(value.strip())
    return out


def one(d: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    (value,) = d[section][key]
    return value


def test_daemon_unit_is_notify_watchdog_restart_always() -> None:
    d = directives(UNITS / "chargectl.service")
    assert one(d, "Service", "Type") == "notify"
    assert one(d, "Service", "ExecStart") == f"{INSTALLED} run /etc/chargectl/shed.yaml"
    assert one(d, "Service", "Restart") == "always"
    watchdog = int(one(d, "Service", "WatchdogSec"))
    # longer than a tick, at most a little more than the devices' own 10 s watchdog
    assert 5 <= watchdog <= 30
    assert one(d, "Service", "NotifyAccess") == "main"
    assert one(d, "Unit", "StartLimitIntervalSec") == "0"
    assert one(d, "Install", "WantedBy") == "multi-user.target"


def test_daemon_unit_hardening_leaves_what_the_daemon_needs() -> None:
    d = directives(UNITS / "chargectl.service")
    s = d["Service"]
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
        "DevicePolicy": "closed",
    }.items():
        assert s[key] == [value], key
    # numba writes and runs machine code; RS485 adapters are devices
    assert "MemoryDenyWriteExecute" not in s
    assert "PrivateDevices" not in s
    assert "char-ttyUSB rw" in s["DeviceAllow"]
    assert "dialout" in one(d, "Service", "SupplementaryGroups")
    assert one(d, "Service", "StateDirectory") == "chargectl"
    assert one(d, "Service", "User") == "chargectl"


def test_sim_unit_runs_the_simulator_before_the_daemon() -> None:
    d = directives(UNITS / "chargectl-sim.service")
    assert one(d, "Service", "ExecStart") == f"{INSTALLED} sim /etc/chargectl/shed.yaml"
    assert "chargectl.service" in one(d, "Unit", "Before")


@pytest.mark.parametrize("name", ["chargectl.service", "chargectl-sim.service"])
def test_units_read_as_ini(name: str) -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / name).read_text())
    assert {"Unit", "Service", "Install"} <= set(parser.sections())


def verify_copy(tmp_path: Path, name: str) -> Path:
    """The unit with ExecStart pointing at this checkout's chargectl, which exists here
    (systemd-analyze refuses a command that is not executable)."""
    here = Path(sys.executable).parent / "chargectl"
    assert here.exists(), here
    text = (UNITS / name).read_text().replace(INSTALLED, str(here))
    out = tmp_path / name
    out.write_text(text)
    return out


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        # The parse tests above still run; verification needs systemd's tools.
        pytest.skip("systemd-analyze not installed")
    units = [verify_copy(tmp_path, n) for n in ("chargectl.service", "chargectl-sim.service")]
    res = subprocess.run(
        [tool, "verify", *map(str, units)], capture_output=True, text=True, timeout=60, check=False
    )
    ours = [
        line for line in res.stderr.splitlines() if str(tmp_path) in line or "chargectl" in line
    ]
    assert res.returncode == 0, res.stderr
    # unknown keys and bad values are only warnings to systemd: none allowed here
    assert ours == [], res.stderr


def test_systemd_analyze_verify_catches_a_bad_key(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed")
    unit = verify_copy(tmp_path, "chargectl.service")
    unit.write_text(unit.read_text().replace("Restart=always", "Restart=always\nRestartt=always"))
    res = subprocess.run(
        [tool, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert "Restartt" in res.stderr


@pytest.mark.parametrize("name", ["chargectl.service", "chargectl-sim.service"])
def test_exposure_stays_low(tmp_path: Path, name: str) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed")
    unit = verify_copy(tmp_path, name)
    # --threshold is the exposure level times ten; 2.5 is well inside systemd's "OK" band.
    res = subprocess.run(
        [tool, "security", "--offline=yes", "--threshold=25", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr


def test_the_wait_for_a_synchronized_clock_is_bounded() -> None:
    """chargectl waits for time sync, and systemd-time-wait-sync waits without a limit: the
    drop-in bounds it, so a shed whose network is down is still controlled."""
    daemon = directives(UNITS / "chargectl.service")
    assert "systemd-time-wait-sync.service" in " ".join(daemon["Unit"]["Wants"])
    assert "systemd-time-wait-sync.service" in " ".join(daemon["Unit"]["After"])
    assert "Requires" not in daemon["Unit"]  # a failed wait must not keep the daemon off
    dropin = directives(UNITS / "systemd-time-wait-sync.service.d" / "chargectl.conf")
    assert 0 < int(one(dropin, "Service", "TimeoutStartSec")) <= 120


# What the pre-start step of each unit warms: `chargectl warm --only GROUP`.
PRESTART = {"chargectl.service": "controller", "chargectl-sim.service": "simulator"}


@pytest.mark.parametrize("name", sorted(PRESTART))
def test_units_warm_numba_into_a_persistent_writable_cache_before_starting(name: str) -> None:
    """ProtectSystem=strict makes the package's own __pycache__ read-only, and the sim's
    DynamicUser has no home: without a CacheDirectory= numba has nowhere to write (the
    simulator would not even import its kernels), and with one outside it every start would
    compile again."""
    s = directives(UNITS / name)["Service"]
    assert s["ExecStartPre"] == [f"{INSTALLED} warm --only {PRESTART[name]}"]
    (cache_dir,) = s["CacheDirectory"]
    env = dict(e.split("=", 1) for e in s["Environment"])
    # systemd makes /var/cache/<CacheDirectory> writable by the unit's user, and keeps it.
    assert Path(env["NUMBA_CACHE_DIR"]).is_relative_to(Path("/var/cache") / cache_dir)
    assert int(s.get("TimeoutStartSec", ["90"])[0]) >= 90  # a cold compile fits in the start


def test_the_sim_units_pre_start_fills_its_cache(tmp_path: Path) -> None:
    """The sim unit's ExecStartPre= with the unit's environment (its cache directory moved
    under tmp_path): numba's files land there, and the step exits 0."""
    s = directives(UNITS / "chargectl-sim.service")["Service"]
    (cache_dir,) = s["CacheDirectory"]
    root = tmp_path / "var-cache"
    env = dict(os.environ)
    env.pop("NUMBA_DISABLE_JIT", None)
    for e in s["Environment"]:
        key, value = e.split("=", 1)
        env[key] = value.replace("/var/cache/", f"{root}/")
    here = str(Path(sys.executable).parent / "chargectl")
    (cmd,) = s["ExecStartPre"]
    res = subprocess.run(
        cmd.replace(INSTALLED, here).split(),
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert "simulator: " in res.stdout and "compiled 6 functions" in res.stdout
    assert len(list((root / cache_dir).rglob("*.nbi"))) == 6
