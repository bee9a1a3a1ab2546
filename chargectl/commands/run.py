"""`chargectl run CONFIG [--templates DIR]...`: the controller daemon. `--templates DIR`
(repeatable) adds device templates to the config's own, as `chargectl check` takes them."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from chargectl.cli import add_templates_argument
    from chargectl.commands.staff import CONFIG_HELP, add_config_argument

    # The config as every command takes it: CONFIG, -c CONFIG, $CHARGECTL_CONFIG or the default.
    parser.add_argument("config_file", nargs="?", metavar="CONFIG", help=CONFIG_HELP)
    add_config_argument(parser)
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    add_templates_argument(parser)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import signal
    import sys

    from chargectl.cli import template_dirs
    from chargectl.commands.staff import config_path
    from chargectl.config.load import load_shed
    from chargectl.runtime.daemon import AlreadyRunning, Daemon, Options
    from chargectl.sessions.errors import InvalidInput, LedgerError

    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    shed = load_shed(config_path_of(args, config_path), template_dirs(args))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # Any of these, at any moment (the kernel's compile and the set-up included), ends in
        # the fail-safe state: a SIGHUP's default would kill the daemon without it.
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, stop.set)
        await Daemon(shed, Options()).run(stop)

    try:
        asyncio.run(main())
    except AlreadyRunning as exc:
        print(f"chargectl run: {exc}", file=sys.stderr)
        return 2
    except LedgerError as exc:
        # One line naming the file: its content (corrupt, newer, a bad row) is bad input, exit
        # 2; a disk or folder that cannot serve it (missing, read-only, full), exit 1.
        print(f"chargectl run: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, InvalidInput) else 1
    return 0


def config_path_of(args: argparse.Namespace, resolve: Callable[[argparse.Namespace], str]) -> str:
    """A positional CONFIG wins; else -c, $CHARGECTL_CONFIG, the default (`resolve`)."""
    return str(args.config_file) if args.config_file else resolve(args)
