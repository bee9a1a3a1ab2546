"""`chargectl sessions`: list and export charging sessions, show one with its power curve
(and the fire-risk detectors' findings on it), and stop one through the daemon."""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from chargectl.cli import UsageError, check_year
from chargectl.commands.staff import add_config_argument, staff_command

if TYPE_CHECKING:
    from chargectl.firewatch.curve import Curve
    from chargectl.firewatch.detectors import Finding
    from chargectl.sessions.ledger import SessionRow

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
    p = sub.add_parser("show", help="one session and its per-minute power curve")
    p.add_argument("session", metavar="ID", help="the session's number (`sessions list`)")
    p.add_argument("--json", action="store_true", help="JSON instead of text")
    p.add_argument("--plot", metavar="FILE.png", help="draw the curve and the findings to a PNG")
    add_config_argument(p, top=False)
    p = sub.add_parser("stop", help="stop the session at a bay (through the running daemon)")
    p.add_argument("bay", metavar="BAY", help="pile/port (e.g. pile-a/3) or a wallbox id")
    add_config_argument(p, top=False)


@staff_command
def run(args: argparse.Namespace) -> int:
    if args.action == "stop":
        return _stop(args)
    if args.action == "show":
        return _show(args)
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
    from chargectl.commands.staff import post_bay_command

    answer = post_bay_command(args, "sessions/stop", "sessions", STOP_TIMEOUT_S)
    if answer is None:
        return 1
    bay, body = answer
    if not isinstance(body.get("stopped"), bool):
        print(f"chargectl sessions: unexpected answer from the daemon: {body!r}", file=sys.stderr)
        return 1
    print(f"stopped the session at {bay}" if body["stopped"] else f"no session running at {bay}")
    return 0


def _session_id(text: str) -> int:
    t = text.strip()
    if not (t.isascii() and t.isdigit()) or len(t) > 18:
        raise UsageError(f"session {text!r}: not a session number (see `sessions list`)")
    return int(t)


def _show(args: argparse.Namespace) -> int:
    from chargectl.commands.staff import iso, kwh, open_ledger, plain_text, table
    from chargectl.firewatch.detectors import check
    from chargectl.firewatch.settings import FirewatchSettings
    from chargectl.sessions import ledger
    from chargectl.sessions.curves import curve_of

    sid = _session_id(args.session)
    plot_to = None if args.plot is None else Path(args.plot)
    if plot_to is not None and not plot_to.parent.is_dir():
        raise UsageError(f"--plot {args.plot}: the folder {plot_to.parent} does not exist")
    with open_ledger(args, create=False) as conn:
        row = ledger.get_session(conn, sid)
        curve = curve_of(conn, sid)
    if row is None or curve is None:
        raise UsageError(f"no session {sid} in the ledger")
    findings = check(curve, FirewatchSettings()) if len(curve) else []
    if plot_to is not None:
        _plot(row, curve, findings, plot_to)
    if args.json:
        print(json.dumps(_as_json(row, curve, findings), indent=2))
        return 0
    print(
        f"session {row.id}  card {row.card}{f' ({plain_text(row.name)})' if row.name else ''}"
        f"  bay {row.bay}\n"
        f"start {iso(row.start)}  end {iso(row.end) or '(running)'}  "
        f"reason {row.reason or 'running'}  energy {kwh(row.energy_wh)} kWh"
        + ("" if row.clock_ok else "  (clock not synced)")
    )
    if not len(curve):
        print("no power curve kept for this session")
    else:
        cells = [
            [
                str(int(t // 60)),
                f"{w:.0f}",
                f"{p:.0f}",
                "" if math.isnan(c) else f"{c:.1f}",
            ]
            for t, w, p, c in zip(curve.t, curve.mean_w, curve.peak_w, curve.temp_c, strict=True)
        ]
        print(table(["MINUTE", "MEAN W", "PEAK W", "C"], cells))
    for f in findings:
        print(f"{f.severity} {f.kind} since minute {f.since_s / 60:.0f}: {f.seen}")
    if plot_to is not None:
        print(f"plot written to {plot_to}")
    return 0


def _as_json(row: SessionRow, curve: Curve, findings: list[Finding]) -> dict[str, object]:
    return {
        **row.as_dict(),
        "curve": [
            {
                "minute": int(t // 60),
                "mean_w": float(w),
                "peak_w": float(p),
                "temp_c": None if math.isnan(c) else float(c),
            }
            for t, w, p, c in zip(curve.t, curve.mean_w, curve.peak_w, curve.temp_c, strict=True)
        ],
        "findings": [
            {
                "kind": str(f.kind),
                "severity": str(f.severity),
                "since_s": f.since_s,
                "detected_s": f.detected_s,
                "seen": f.seen,
            }
            for f in findings
        ],
    }


def _plot(row: SessionRow, curve: Curve, findings: list[Finding], path: Path) -> None:
    """Mean and peak power, the socket temperature on a second axis, a line per finding."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    minutes = curve.t / 60.0
    ax.step(minutes, curve.peak_w, where="post", color="tab:orange", lw=0.8, label="peak W")
    ax.step(minutes, curve.mean_w, where="post", color="tab:blue", lw=1.2, label="mean W")
    ax.set_xlabel("minutes since the tap")
    ax.set_ylabel("power (W)")
    ax.grid(True, alpha=0.3)
    if np.isfinite(curve.temp_c).any():
        hot = ax.twinx()
        hot.plot(minutes, curve.temp_c, color="tab:red", lw=1.0, label="socket C")
        hot.set_ylabel("socket temperature (C)")
    for f in findings:
        colour = "red" if str(f.severity) == "critical" else "darkorange"
        ax.axvline(f.since_s / 60.0, color=colour, ls="--", lw=1.0)
        ax.annotate(
            str(f.kind),
            (f.since_s / 60.0, 1.0),
            xycoords=("data", "axes fraction"),
            rotation=90,
            va="top",
            ha="right",
            fontsize=8,
            color=colour,
        )
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(f"session {row.id} at {row.bay} ({row.reason or 'running'})")
    try:
        fig.savefig(path, format="png", dpi=100)
    except OSError as exc:
        raise UsageError(f"--plot {path}: cannot write it ({exc.strerror or exc})") from None
