"""`chargectl warm` (issue 10, part 7): it fills an empty numba cache with every kernel the
daemon and the simulator run, a later process loads them all from it and compiles nothing,
and a cache it cannot write is one line and exit 1, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chargectl.cli import main
from chargectl.commands.warm import GROUPS, dispatchers

pytestmark = pytest.mark.timeout(300)

CHARGECTL = str(Path(sys.executable).with_name("chargectl"))
REPO = Path(__file__).resolve().parents[2]
PY_TAG = f"py{sys.version_info.major}{sys.version_info.minor}"
KERNELS = [m for _, modules in GROUPS.values() for m in modules]


def jit_env(cache: Path) -> dict[str, str]:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), PYTHONPATH=str(REPO))
    env.pop("NUMBA_DISABLE_JIT", None)  # `make test` runs some tests with the JIT off
    return env


def warm(cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHARGECTL, "warm", *args],
        env=jit_env(cache),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.fixture(scope="module")
def cold(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """`chargectl warm` on a cache directory that does not exist yet."""
    cache = tmp_path_factory.mktemp("warm") / "numba"
    return cache, warm(cache)


def own_functions() -> list[tuple[str, str, int]]:
    """(module, function, first line) of every kernel function with code of its own (not
    inlined into its callers), as numba names its cache files."""
    import importlib

    out = []
    for name in KERNELS:
        for d in dispatchers(importlib.import_module(name)):
            if d.targetoptions.get("inline") != "always":
                code = d.py_func.__code__
                out.append((name.rsplit(".", 1)[1], d.py_func.__qualname__, code.co_firstlineno))
    return out


def test_an_empty_cache_gets_every_kernel_function(
    cold: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    cache, res = cold
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    lines = res.stdout.splitlines()
    assert lines[0] == f"numba cache: {cache} (NUMBA_CACHE_DIR)"
    functions = own_functions()
    by_group = {"controller": 0, "simulator": 0}
    for mod, _, _ in functions:
        by_group["controller" if mod == "kernel" else "simulator"] += 1
    assert by_group["controller"] >= 10 and by_group["simulator"] == 6
    for group, n in by_group.items():
        assert any(
            line.startswith(f"{group}: ") and f"compiled {n} functions into the cache" in line
            for line in lines
        ), res.stdout
    # An index and its data for each function, where numba looks for them: a kernel the
    # warm-up does not run would have neither (and would compile inside the service).
    for mod, qualname, lineno in functions:
        stem = f"{mod}.{qualname}-{lineno}.{PY_TAG}"
        assert list(cache.glob(f"*/{stem}.nbi")), stem
        assert list(cache.glob(f"*/{stem}.*.nbc")), stem
    assert {p.name.split("_")[0] for p in cache.iterdir()} == {"alloc", "physics", "devices"}


# A second process: `chargectl warm` in it, then the daemon's own Allocator on a bigger shed
# than the warm-up's; numba's counters say what was compiled and what was loaded.
SECOND = """
import importlib, json, sys
from chargectl.cli import main
from chargectl.commands.warm import GROUPS, dispatchers
code = main(["warm"])
from chargectl.alloc.allocator import Allocator
from chargectl.alloc.problem import BaySpec, CircuitSpec, Topology
circuits = [CircuitSpec("main", None, (1, 2, 3))]
circuits += [CircuitSpec(f"row{i}", "main", (1 + i % 3,)) for i in range(4)]
bays = [BaySpec(f"s{k}", f"row{k % 4}", (1 + k % 4 % 3,)) for k in range(24)]
alloc = Allocator(Topology.build(circuits, bays))
alloc.inputs.limit_a[:] = 16.0
alloc.inputs.max_a[:] = 2.0
alloc.inputs.min_a[:] = 2.0
alloc.run()
stats = {}
for _, modules in GROUPS.values():
    for name in modules:
        for d in dispatchers(importlib.import_module(name)):
            s = d.stats
            stats[f"{name}.{d.py_func.__name__}"] = [len(s.cache_hits), len(s.cache_misses)]
print(json.dumps({"code": code, "stats": stats}))
"""


def test_a_second_process_loads_everything_and_compiles_nothing(
    cold: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    cache, first = cold
    assert first.returncode == 0, first.stderr
    before = {p: p.stat().st_mtime_ns for p in cache.rglob("*")}
    res = subprocess.run(
        [sys.executable, "-c", SECOND],
        env=jit_env(cache),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    *text, last = res.stdout.splitlines()
    out = json.loads(last)
    assert out["code"] == 0
    stats = out["stats"]
    assert all(misses == 0 for _, misses in stats.values()), stats
    physics = ("socket_step", "inrush_peaks", "breaker_step", "circuit_totals", "charge_step")
    entry = [
        "chargectl.alloc.kernel.allocate_kernel",
        "chargectl.sim.devices.pile_kernel.step_ports",
        *(f"chargectl.sim.physics.kernels.{k}" for k in physics),
    ]
    assert all(stats[k][0] == 1 for k in entry), stats
    assert any(line.startswith("controller: ") and "loaded 1 kernel from the cache" in line
               for line in text), res.stdout  # fmt: skip
    assert any(line.startswith("simulator: ") and "loaded 6 kernels from the cache" in line
               for line in text), res.stdout  # fmt: skip
    # Loading wrote nothing.
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*")} == before


def test_only_the_simulator(tmp_path: Path) -> None:
    cache = tmp_path / "sim-cache"
    res = warm(cache, "--only", "simulator")
    assert res.returncode == 0, res.stderr
    assert "controller" not in res.stdout
    assert {p.name.split("_")[0] for p in cache.iterdir()} == {"physics", "devices"}


@pytest.mark.parametrize("below", ["file", "file/sub"])
def test_a_cache_dir_that_cannot_be_written_is_one_line_exit_1(
    tmp_path: Path, below: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("not a directory\n")
    bad = tmp_path / below
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(bad))
    monkeypatch.delenv("NUMBA_DISABLE_JIT", raising=False)
    assert main(["warm"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"chargectl warm: cannot write numba's cache at {bad} (NUMBA_CACHE_DIR): "
        "Not a directory; give the service a writable cache directory"
        if below == "file/sub"
        else f"chargectl warm: cannot write numba's cache at {bad} (NUMBA_CACHE_DIR): "
        "File exists; give the service a writable cache directory"
    ]


def test_an_unwritable_cache_dir_from_the_command_line_has_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    res = warm(tmp_path / "file" / "numba")
    assert res.returncode == 1
    assert res.stdout == ""
    assert "Traceback" not in res.stderr
    assert res.stderr.startswith("chargectl warm: cannot write numba's cache at ")


def test_with_the_jit_off_there_is_nothing_to_do(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("NUMBA_DISABLE_JIT", "1")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "never"))
    assert main(["warm"]) == 0
    assert "NUMBA_DISABLE_JIT is set" in capsys.readouterr().out
    assert not (tmp_path / "never").exists()


def test_only_takes_a_known_group(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["warm", "--only", "daemon"])
    assert exc.value.code == 2
    assert "invalid choice: 'daemon'" in capsys.readouterr().err
