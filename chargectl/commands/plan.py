"""`chargectl plan PROBLEM.json|-`: solve one allocation problem and print the plan as JSON."""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("problem", help="the problem as JSON (see docs/alloc.md); - for stdin")
    parser.add_argument("--indent", type=int, default=2, help="JSON indent (0: one line)")


def run(args: argparse.Namespace) -> int:
    # Imported here: numba is heavy, and the parser imports every command module.
    from chargectl.alloc.allocator import plan
    from chargectl.alloc.jsonio import loads_problem, plan_to_json
    from chargectl.alloc.problem import ProblemError
    from chargectl.cli import UsageError

    name = "standard input" if args.problem == "-" else args.problem
    try:
        if args.problem == "-":
            text = sys.stdin.read()
        else:
            with open(args.problem, encoding="utf-8") as f:
                text = f.read()
    except OSError as exc:
        raise UsageError(f"cannot read {name}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{name}: not UTF-8 text ({exc.reason})") from None
    try:
        result = plan(loads_problem(text))
    except ProblemError as exc:
        raise UsageError(f"{name}: {exc}") from None
    indent = args.indent if args.indent > 0 else None
    print(json.dumps(plan_to_json(result), indent=indent))
    return 0
