"""`chargectl energy --month YYYY-MM`: kWh per card as CSV, for billing.

A session counts in the month it started (local time); a running session counts with its
energy as of its last checkpoint. Text cells are made safe for a spreadsheet (no formulas, no
bidi or control characters). Sessions whose times were taken on a wall clock that never got
synchronized may sit in another month: their number is said on stderr.
"""

from __future__ import annotations

import argparse
import csv
import sys

from chargectl.commands.staff import add_config_argument, staff_command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--month", required=True, metavar="YYYY-MM")


@staff_command
def run(args: argparse.Namespace) -> int:
    from chargectl.cli import UsageError, check_year
    from chargectl.commands.staff import csv_row, kwh, month_range, open_ledger
    from chargectl.sessions import ledger
    from chargectl.sessions.errors import InvalidInput

    check_year("--month", args.month)
    try:
        start, end = month_range(args.month)
    except InvalidInput:
        raise
    except (ValueError, OverflowError, OSError):  # digits int() cannot read, a date C cannot
        raise UsageError(f"--month {args.month!r} is not YYYY-MM") from None
    with open_ledger(args, create=False) as conn:
        rows = ledger.energy_by_card(conn, start, end)
        unsynced = ledger.unsynced_sessions(conn)
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["card", "name", "sessions", "kwh"])
    for r in rows:
        out.writerow(csv_row([r.card, r.name or "", r.sessions, kwh(r.energy_wh)]))
    if unsynced:
        print(
            f"chargectl energy: {unsynced} session(s) have times from an unsynchronized clock"
            " and may count in another month (`sessions export` marks them)",
            file=sys.stderr,
        )
    return 0
