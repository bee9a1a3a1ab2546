"""`chargectl demo`: simulator and controller together on loopback, with a live view."""

from __future__ import annotations

import argparse
from pathlib import Path

from chargectl.cli import add_templates_argument

CAMPUS = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "campus.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", default=str(CAMPUS), help="the shed to simulate (default: the campus example)"
    )
    parser.add_argument(
        "--every", type=float, default=3.0, help="seconds between residents' actions (default 3)"
    )
    parser.add_argument(
        "--rush", type=int, default=100, help="residents arriving in the first half minute"
    )
    parser.add_argument(
        "--duration", type=float, default=None, help="end after this many seconds (default: Ctrl-C)"
    )
    parser.add_argument(
        "--state-dir", default=None, help="where the demo ledger goes (default: a temp folder)"
    )
    add_templates_argument(parser)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import signal
    import sys

    from chargectl.cli import UsageError, template_dirs
    from chargectl.config.load import load_shed
    from chargectl.runtime.demo import run_demo

    if args.every <= 0:
        raise UsageError(f"--every must be > 0, got {args.every}")
    if args.rush < 0:
        raise UsageError(f"--rush must be >= 0, got {args.rush}")
    if args.duration is not None and args.duration <= 0:
        raise UsageError(f"--duration must be > 0, got {args.duration}")
    # On a terminal the view is the output; otherwise the log lines are.
    level = logging.WARNING if sys.stdout.isatty() else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    shed = load_shed(args.config, template_dirs(args))
    state = Path(args.state_dir) if args.state_dir else None
    if state is not None:
        state.mkdir(parents=True, exist_ok=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_demo(
            shed,
            stop,
            every_s=args.every,
            rush=args.rush,
            duration_s=args.duration,
            state_dir=state,
        )

    asyncio.run(main())
    return 0
