"""`chargectl capacity SCENARIO.yaml --sockets A:B:STEP --seeds N`: how many sockets the
scenario's supply carries (docs/replay.md)."""

from __future__ import annotations

import argparse
import json
import sys

from chargectl.cli import UsageError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="SCENARIO", help="a scenario file (sim/scenarios/*.yaml)")
    p.add_argument(
        "--sockets",
        required=True,
        metavar="A:B:STEP",
        help="socket counts to try: A, A+STEP, ... up to B (piles of the shed's kind added "
        "or removed), or one count",
    )
    p.add_argument("--seeds", type=int, default=5, metavar="N", help="seeds per count (5)")
    p.add_argument("--workers", type=int, help="local processes (default: one per core)")
    p.add_argument(
        "--dask", metavar="ADDRESS", help="run on an existing Dask cluster (tcp://host:8786)"
    )
    p.add_argument("--json", action="store_true", help="the rows and the answer as JSON")


def run(args: argparse.Namespace) -> int:
    from chargectl.replay.capacity import largest_ok, parse_range, sweep, table

    try:
        counts = parse_range(args.sockets)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not 1 <= args.seeds <= 1000:
        raise UsageError(f"--seeds {args.seeds}: must be within 1..1000")
    if args.workers is not None and not 1 <= args.workers <= 256:
        raise UsageError(f"--workers {args.workers}: must be within 1..256")
    on_done = None
    if sys.stderr.isatty():
        from rich.progress import Progress

        bar = Progress(transient=True)
        task = bar.add_task("replays", total=None)
        bar.start()

        def on_done(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

    try:
        rows = sweep(
            args.file,
            counts,
            args.seeds,
            workers=args.workers,
            dask_address=args.dask,
            on_done=on_done,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    finally:
        if on_done is not None:
            bar.stop()
    best = largest_ok(rows)
    if args.json:
        print(json.dumps({"rows": rows, "largest_ok": best}, indent=1))
    else:
        print(table(rows))
        print(
            f"largest count with served_ratio >= 0.95 (5th percentile) and 0 trips: "
            f"{best if best is not None else 'none of those tried'}"
        )
    return 0
