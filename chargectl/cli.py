"""The `chargectl` command: a table of subcommands, each in its own module.

A subcommand module under `chargectl.commands` exposes `add_arguments(parser)` and
`run(args) -> int`. It is imported only when it is used, so `chargectl check` does not pay
for numba or pymodbus. Exit codes: 0 ok, 1 runtime failure, 2 bad input (config, arguments,
files), as the issues ask. Every command module is imported to build the parser, so keep a
module's top-level imports light: numba, pymodbus and the like are imported inside `run`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from chargectl.config.load import ConfigError

# name -> (module under chargectl.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "check": ("check", "validate a shed config; print every problem with file, line and path"),
    "plan": ("plan", "allocate current for a problem file (JSON) and print the result"),
    "sim": ("sim", "run the hardware simulator for a shed config"),
    "run": ("run", "run the controller daemon"),
    "demo": ("demo", "simulator and controller together on loopback, with a live view"),
    "status": ("status", "one screen of what the running daemon sees"),
    "cards": ("cards", "register, block and list cards"),
    "sessions": ("sessions", "list, export and stop charging sessions"),
    "bays": ("bays", "clear a bay's fault or fire-risk hold (through the running daemon)"),
    "energy": ("energy", "energy per card for a month, as CSV"),
    "replay": (
        "replay",
        "a scenario's day: the simulated shed and the controller, virtual time",
    ),
    "capacity": (
        "capacity",
        "how many sockets a supply carries: replays over counts, seeds",
    ),
    "warm": ("warm", "compile the numba kernels into their cache, before the first start"),
    "fleet": ("fleet", "an edge box's bridge to the central broker; the central Prometheus"),
}


class UsageError(Exception):
    """Bad input from the person at the command line: printed, exit 2."""


# Dates on the command line: the ledger's times are Unix times (nothing before 1970), and a
# range's end is the day after the last one asked for, which must still be a date.
FIRST_YEAR, LAST_YEAR = 1970, 9998


def check_year(option: str, text: str) -> None:
    """Refuse a date argument (`YYYY-MM` or `YYYY-MM-DD`) whose year is out of range."""
    year = text.strip()[:4]
    if year.isascii() and year.isdigit() and not FIRST_YEAR <= int(year) <= LAST_YEAR:
        raise UsageError(f"{option} {text!r}: the year must be in {FIRST_YEAR}..{LAST_YEAR}")


def add_templates_argument(parser: argparse.ArgumentParser) -> None:
    """`--templates DIR`, repeatable (`check`, `run`, `demo`): device templates besides the
    shipped ones and the config's own `templates:`."""
    parser.add_argument(
        "--templates",
        action="append",
        default=[],
        metavar="DIR",
        help="a directory of device templates (<kind>.yaml) besides the shipped ones and the "
        "config's own",
    )


def template_dirs(args: argparse.Namespace) -> list[str]:
    """The `--templates` directories; UsageError for one that is not a directory."""
    for d in args.templates:
        if not Path(d).is_dir():
            raise UsageError(f"--templates {d}: not a directory")
    return list(args.templates)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chargectl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        try:
            mod = importlib.import_module(f"chargectl.commands.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"chargectl.commands.{module}":
                raise
            p.set_defaults(_missing=True)
            continue
        mod.add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "_missing", False):
        print(f"chargectl {args.command}: not available in this build", file=sys.stderr)
        return 2
    odd = _odd_path(args)
    if odd is not None:  # a path no file has; refused here, before it is printed in a message
        print(f"chargectl {args.command}: path {odd!r} has control characters", file=sys.stderr)
        return 2
    mod = importlib.import_module(f"chargectl.commands.{args._module}")
    try:
        return int(mod.run(args))
    except UsageError as exc:
        print(f"chargectl {args.command}: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


# The arguments of every command that name a file: config, problem, CSV or templates folder.
_PATH_ARGS = ("config", "config_file", "problem", "file", "templates")


def _odd_path(args: argparse.Namespace) -> str | None:
    for name in _PATH_ARGS:
        value = getattr(args, name, None)
        for path in value if isinstance(value, list) else [value]:
            # Control characters (C0, DEL, C1 such as NEL), line and paragraph separators
            # and bidi controls: none is printable, and each would break the one-line message.
            if isinstance(path, str) and not all(c.isprintable() or c == " " for c in path):
                return path
    return None


if __name__ == "__main__":
    sys.exit(main())
