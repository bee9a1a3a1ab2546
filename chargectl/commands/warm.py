"""`chargectl warm [--only controller|simulator]`: build numba's cache before the first start.

A cold numba cache costs the daemon about 15 s of compiling before its first write (more on
a small ARM box); a warm one about 0.2 s. This command compiles every kernel the daemon needs
(`controller`: the allocation kernel) and the simulator needs (`simulator`: the physics and
pile kernels) into the cache, or loads them from it if it is already good, and says which.
It runs where the product is installed (the Makefile's venv rule) and as the systemd units'
`ExecStartPre=`, so that after an upgrade, or with an emptied cache, the service compiles
before its main process starts rather than inside it.

The cache is where the daemon will look for it: `NUMBA_CACHE_DIR` if set (the units set it
to their `CacheDirectory=`), else numba's default (the package's `__pycache__` if writable,
else `~/.cache/numba`). numba keys it by the source file's path and contents, the Python
version and the CPU, so warm with the same install, interpreter and machine as the daemon.

numba quietly falls back to another place, or refuses to import a kernel, when its cache
directory is not writable; here that is one line naming the directory, and exit 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

# group -> (what it is, the kernel modules, whose dispatchers must all be compiled)
GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "controller": ("the allocation kernel", ("chargectl.alloc.kernel",)),
    "simulator": (
        "the simulator's physics and pile kernels",
        ("chargectl.sim.physics.kernels", "chargectl.sim.devices.pile_kernel"),
    ),
}

# A shed just big enough that one simulated second runs every simulator kernel with the
# array types the simulator uses: a charger gets power (its inrush), a breaker steps, the
# state of charge moves (once a second), a pile records its ports.
_SIM_SHED = """\
shed: {name: warm, phases: 1, voltage_v: 230}
circuits:
  - {id: main, limit_a: 16, breaker: {rating_a: 16, curve: C}}
buses:
  - {id: line, tcp: {host: 127.0.0.1, port: 5020}}
devices:
  - {id: pile, kind: pile, bus: line, unit: 1, circuit: main, phase: 1, ports: 2}
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--only",
        choices=tuple(GROUPS),
        help="only the kernels of the controller (chargectl run) or of the simulator "
        "(chargectl sim); default: both",
    )


class WarmError(Exception):
    """The cache cannot be built: printed as one line, exit 1."""


@dataclass(frozen=True)
class Warmed:
    group: str
    compiled: int  # functions compiled and written to the cache
    loaded: int  # kernels loaded from it (each with the functions it calls)
    seconds: float
    cache_paths: tuple[str, ...]


def run(args: argparse.Namespace) -> int:
    if os.environ.get("NUMBA_DISABLE_JIT", "0").strip() not in ("", "0"):
        print("chargectl warm: NUMBA_DISABLE_JIT is set: the kernels run as Python, nothing to do")
        return 0
    cache_dir = os.environ.get("NUMBA_CACHE_DIR", "").strip()
    groups = [args.only] if args.only else list(GROUPS)
    try:
        if cache_dir:
            check_writable(Path(cache_dir))
            print(f"numba cache: {os.path.abspath(cache_dir)} (NUMBA_CACHE_DIR)", flush=True)
        else:
            print("numba cache: numba's default (set NUMBA_CACHE_DIR to choose)", flush=True)
        for group in groups:
            w = warm_group(group)
            _check_place(w, cache_dir)
            print(describe(w), flush=True)
    except WarmError as exc:
        print(f"chargectl warm: {exc}", file=sys.stderr)
        return 1
    return 0


def check_writable(path: Path) -> None:
    """numba's own test: the directory can be made and a file written in it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError as exc:
        raise WarmError(
            f"cannot write numba's cache at {path} (NUMBA_CACHE_DIR): "
            f"{exc.strerror or exc}; give the service a writable cache directory"
        ) from None


def warm_group(group: str) -> Warmed:
    """Compile or load the group's kernels; count what numba did for each function."""
    _, module_names = GROUPS[group]
    t0 = time.perf_counter()
    try:
        modules = [_import(name) for name in module_names]
        _EXERCISE[group]()
    except OSError as exc:  # numba writes the cache as it compiles
        where = exc.filename or "numba's cache"
        raise WarmError(f"{group}: cannot write {where}: {exc.strerror or exc}") from None
    seconds = time.perf_counter() - t0
    compiled = loaded = 0
    paths: set[str] = set()
    for mod in modules:
        for disp in dispatchers(mod):
            # From the cache numba loads a kernel with the functions it calls linked in:
            # those count neither a hit nor a miss of their own.
            stats = disp.stats
            if stats.cache_misses:
                compiled += 1
            elif stats.cache_hits:
                loaded += 1
            else:
                continue
            paths.add(str(stats.cache_path))
    return Warmed(group, compiled, loaded, seconds, tuple(sorted(paths)))


def describe(w: Warmed) -> str:
    what = GROUPS[w.group][0]
    parts = []
    if w.compiled:
        parts.append(f"compiled {w.compiled} functions into the cache")
    if w.loaded or not w.compiled:
        kernels = "kernel" if w.loaded == 1 else "kernels"
        parts.append(f"loaded {w.loaded} {kernels} from {'it' if parts else 'the cache'}")
    verb = " and ".join(parts)
    line = f"{w.group}: {what}: {verb} in {w.seconds:.2f} s"
    return line + "".join(f"\n  {p}" for p in w.cache_paths)


def _check_place(w: Warmed, cache_dir: str) -> None:
    if not cache_dir:
        return
    root = os.path.realpath(cache_dir)
    for p in w.cache_paths:
        if os.path.commonpath([root, os.path.realpath(p)]) != root:
            raise WarmError(f"{w.group}: numba put its cache in {p}, not in {cache_dir}")


def _import(name: str) -> ModuleType:
    import importlib

    try:
        return importlib.import_module(name)
    except RuntimeError as exc:
        if "cannot cache function" not in str(exc):
            raise
        raise WarmError(
            "numba finds no writable place for its cache (the package's __pycache__ and "
            "~/.cache/numba are read-only here): set NUMBA_CACHE_DIR to a writable directory"
        ) from None


def dispatchers(mod: ModuleType) -> list[Any]:
    """The numba functions a kernel module defines (not those it imports)."""
    from numba.core.dispatcher import Dispatcher

    return [
        value
        for _, value in sorted(vars(mod).items())
        if isinstance(value, Dispatcher) and value.py_func.__module__ == mod.__name__
    ]


def _exercise_controller() -> None:
    # The daemon's own call, so the cache holds exactly the signature it asks for.
    from chargectl.alloc.allocator import warm

    warm()


def _exercise_simulator() -> None:
    from chargectl.config.load import parse_shed
    from chargectl.sim.devices.pile import PileModel
    from chargectl.sim.world import World

    world = World(parse_shed(_SIM_SHED, Path("<chargectl warm>")).shed)
    world.plug_charger("pile/1", "li48", 0.2)
    pile = world.models["pile"]
    # The pile's role face (what a relay write of any template reaches), not its registers.
    if not (isinstance(pile, PileModel) and pile.valid("relay", 1, 1)):
        raise RuntimeError("simulator warm-up: the pile cannot close its relay")
    pile.apply("relay", 1, 1)
    world.advance(1.5)


_EXERCISE: dict[str, Callable[[], None]] = {
    "controller": _exercise_controller,
    "simulator": _exercise_simulator,
}
