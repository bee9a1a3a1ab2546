"""`chargectl check CONFIG... [--strict] [--templates DIR]...`: load each shed config and print
every problem it has.

Problems go to stderr as `FILE:LINE: PATH: MESSAGE` (warnings with `warning: ` before the
message), one line each, in file order; a file that loads gets a one-line summary on stdout.
Exit 0 when every file loads (warnings allowed unless --strict), 2 otherwise. `--templates DIR`
(repeatable) adds a directory of device templates to each config's own (`templates:`); every
template in them is checked too, a malformed one reported as `FILE:LINE: PATH: MESSAGE`.
"""

from __future__ import annotations

import argparse
import sys

from chargectl.cli import add_templates_argument, template_dirs
from chargectl.config.load import ConfigError, load_checked
from chargectl.drivers.registry import find


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="+", metavar="CONFIG", help="shed config file (YAML)")
    parser.add_argument(
        "--strict", action="store_true", help="count warnings as errors (exit 2 if any)"
    )
    add_templates_argument(parser)


def run(args: argparse.Namespace) -> int:
    status = 0
    extra = template_dirs(args)
    for path in args.config:
        try:
            checked = load_checked(path, extra)
        except ConfigError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            errors, warnings = len(exc.errors), len(exc.problems) - len(exc.errors)
            print(
                f"{path}: {_count(errors, 'error')}, {_count(warnings, 'warning')}", file=sys.stderr
            )
            status = 2
            continue
        for warning in checked.warnings:
            print(warning, file=sys.stderr)
        if args.strict and checked.warnings:
            status = 2
        shed = checked.shed
        # A pile's socket is a bay, and so is a wallbox.
        known = find(shed.template_dirs())
        roles = [known.role(d.kind) for d in shed.devices]
        bays = sum(
            d.ports if r == "pile" else r == "evse"
            for d, r in zip(shed.devices, roles, strict=True)
        )
        print(
            f"{path}: ok: {_count(len(shed.circuits), 'circuit')}, "
            f"{_count(len(shed.buses), 'bus', 'buses')}, {_count(len(shed.devices), 'device')}, "
            f"{_count(bays, 'bay')}, {_count(len(checked.warnings), 'warning')}"
        )
    return status


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"
