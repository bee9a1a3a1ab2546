"""`chargectl sessions`: list and export charging sessions, and stop one through the daemon."""

from __future__ import annotations

import argparse
import csv
import json
import sys

from chargectl.cli import UsageError, check_year
from chargectl.commands.staff import add_config_argument, staff_command

STOP_TIMEOUT_S = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser("list", help="list sessions (running ones with their energy so far)")
    p.add_argument("--active", action="store_true", help="only the running sessions")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    add_config_argument(p, top=False)
    p = sub.add_parser("export", help="CSV of the sessions that started in a date range")
    p.add_argument("--from", dest="first", required=True, metavar="YYYY-MM-DD")
    p.add_argument("--to", dest="last", required=True, metavar="YYYY-MM-DD", help="inclusive")
    add_config_argument(p, top=False)
    p = sub.add_parser("stop", help="stop the session at a bay (through the running daemon)")
    p.add_argument("bay", metavar="BAY", help="pile/port (e.g. pile-a/3) or a wallbox id")
    add_config_argument(p, top=False)


@staff_command
def run(args: argparse.Namespace) -> int:
    if args.action == "stop":
        return _stop(args)
    from chargectl.commands.staff import (
        csv_row,
        days_range,
        iso,
        kwh,
        open_ledger,
        short,
        table,
    )
    from chargectl.sessions import ledger
    from chargectl.sessions.errors import InvalidInput

    if args.action == "list":
        with open_ledger(args, create=False) as conn:
            rows = ledger.list_sessions(conn, active_only=args.active)
        if args.json:
            print(json.dumps([r.as_dict() for r in rows], indent=2))
        else:
            cells = [
                [
                    str(r.id),
                    r.card,
                    r.name or "",
                    r.bay,
                    short(r.start),
                    short(r.end),
                    r.reason or "running",
                    kwh(r.energy_wh) + ("" if r.clock_ok else " (clock not synced)"),
                ]
                for r in rows
            ]
            print(table(["ID", "CARD", "NAME", "BAY", "START", "END", "REASON", "KWH"], cells))
        return 0
    check_year("--from", args.first)
    check_year("--to", args.last)
    try:
        start, end = days_range(args.first, args.last)
    except InvalidInput:
        raise
    except (ValueError, OverflowError, OSError):  # a date the C library cannot count
        raise UsageError(f"--from {args.first!r} --to {args.last!r}: not a usable range") from None
    with open_ledger(args, create=False) as conn:
        rows = ledger.sessions_between(conn, start, end)
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["session", "card", "name", "bay", "start", "end", "reason", "kwh", "clock"])
    for r in rows:
        out.writerow(
            csv_row(
                [
                    r.id,
                    r.card,
                    r.name or "",
                    r.bay,
                    iso(r.start),
                    iso(r.end),
                    r.reason or "",
                    kwh(r.energy_wh),
                    "" if r.clock_ok else "unsynced",
                ]
            )
        )
    return 0


def _stop(args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.request

    from chargectl.commands.staff import load_config, shed_bays
    from chargectl.outputs.api import client_headers

    shed = load_config(args)
    bay = args.bay.strip()
    bays = shed_bays(shed)
    if bay not in bays:
        raise UsageError(
            f"unknown bay {bay!r} in shed {shed.shed.name} (bays look like {bays[0]})"
            if bays
            else f"shed {shed.shed.name} has no bays"
        )
    url = f"http://{shed.api.host}:{shed.api.port}/sessions/stop"
    req = urllib.request.Request(
        url,
        data=json.dumps({"bay": bay}).encode(),
        method="POST",
        headers={"Content-Type": "application/json", **client_headers(shed)},
    )
    try:
        with urllib.request.urlopen(req, timeout=STOP_TIMEOUT_S) as resp:
            body = json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        detail = _error_text(exc)
        if exc.code == 404:
            raise UsageError(f"the daemon does not know bay {bay!r}: {detail}") from None
        print(f"chargectl sessions: the daemon answered {exc.code}: {detail}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        print(
            f"chargectl sessions: the daemon is not running or not answering at {url} ({reason})",
            file=sys.stderr,
        )
        return 1
    except ValueError as exc:
        print(f"chargectl sessions: the daemon's answer is not JSON: {exc}", file=sys.stderr)
        return 1
    if not isinstance(body, dict) or not isinstance(body.get("stopped"), bool):
        print(f"chargectl sessions: unexpected answer from the daemon: {body!r}", file=sys.stderr)
        return 1
    print(f"stopped the session at {bay}" if body["stopped"] else f"no session running at {bay}")
    return 0


def _error_text(exc: object) -> str:
    try:
        body = json.loads(exc.read())  # type: ignore[attr-defined]
        return str(body.get("error", body))
    except (ValueError, AttributeError, OSError):
        return str(getattr(exc, "reason", exc))
