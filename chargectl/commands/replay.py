"""`chargectl replay SCENARIO.yaml`: a whole day of a simulated shed, the real controller on
virtual time; the report, a picture, trace files (docs/replay.md)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from chargectl.cli import UsageError

# chargectl.replay.runner.POLICY_NAMES (not imported: it loads numba; a test keeps them equal)
POLICY_NAMES = ("chargectl", "uncontrolled", "fcfs", "stop-all", "equal-split")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="SCENARIO", help="a scenario file (sim/scenarios/*.yaml)")
    p.add_argument(
        "--policy",
        choices=POLICY_NAMES,
        default="chargectl",
        help="who controls the shed: chargectl, or a peer's policy (docs/replay-policies.md)",
    )
    p.add_argument(
        "--compare", action="store_true", help="every policy on the same seed, side by side"
    )
    p.add_argument("--seed", type=int, help="another seed than the scenario's")
    p.add_argument("--json", action="store_true", help="the report as JSON (a list with --compare)")
    p.add_argument("--plot", metavar="FILE.png", help="draw the day into a PNG file")
    p.add_argument("--trace", metavar="DIR", help="write CSV files of every tick and session")


def _out_path(option: str, value: str | None, directory: bool) -> Path | None:
    if value is None:
        return None
    path = Path(value)
    parent = path if directory else path.parent
    if directory and path.exists() and not path.is_dir():
        raise UsageError(f"{option} {value}: exists and is not a directory")
    if not directory and path.is_dir():
        raise UsageError(f"{option} {value}: is a directory")
    if not (parent if parent.exists() else parent.parent).is_dir():
        raise UsageError(f"{option} {value}: no folder {parent.parent} to write into")
    return path


def run(args: argparse.Namespace) -> int:
    plot_path = _out_path("--plot", args.plot, directory=False)
    trace_dir = _out_path("--trace", args.trace, directory=True)
    if args.seed is not None and not 0 <= args.seed < 2**63:
        raise UsageError(f"--seed {args.seed}: must be within 0..2**63-1")

    import dataclasses
    import logging

    from chargectl.replay.report import report, table
    from chargectl.replay.runner import run_replay
    from chargectl.replay.scenario import load_scenario

    scenario = load_scenario(args.file)  # ScenarioError (a ConfigError): its problems, exit 2
    if args.seed is not None:
        scenario = dataclasses.replace(scenario, seed=args.seed)
    logging.getLogger("chargectl").setLevel(logging.ERROR)  # the report says what happened
    names = list(POLICY_NAMES) if args.compare else [args.policy]
    recordings = []
    with _progress(scenario.duration_s) as advance:
        for name in names:
            recordings.append(run_replay(scenario, name, advance(name)))
    reports = [report(r) for r in recordings]
    if trace_dir is not None:
        from chargectl.replay.trace import write_trace

        for rec in recordings:
            write_trace(rec, trace_dir / rec.policy if args.compare else trace_dir)
    if plot_path is not None:
        from chargectl.replay.plot import plot

        plot(recordings, plot_path)
    if args.json:
        print(json.dumps(reports if args.compare else reports[0], indent=1))
    else:
        print(table(reports))
    return 0


@contextmanager
def _progress(total_s: float) -> Iterator[Callable[[str], Callable[[float, float], None] | None]]:
    """A progress bar per run on a terminal (rich); nothing when stderr is piped."""
    if not sys.stderr.isatty():
        yield lambda name: None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("{task.description:>12}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}% of the simulated day"),
        TimeRemainingColumn(),
        transient=False,
    )

    def advance(name: str) -> Callable[[float, float], None]:
        task = bar.add_task(name, total=total_s)

        def update(done: float, total: float) -> None:
            bar.update(task, completed=done)

        return update

    with bar:
        yield advance
