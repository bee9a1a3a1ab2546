"""What the staff commands (`chargectl cards`, `sessions`, `energy`) share.

The config path: `-c/--config CONFIG` (before or after the action), else the environment
variable CHARGECTL_CONFIG, else /etc/chargectl/shed.yaml (where the systemd unit reads it).
Bad input raises `chargectl.cli.UsageError` (exit 2); a ledger that cannot be opened or
written is a runtime failure (message, exit 1).
"""

from __future__ import annotations

import argparse
import functools
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta

from chargectl.cli import UsageError
from chargectl.config.schema import Shed
from chargectl.sessions import ledger
from chargectl.sessions.cards import BIDI_CONTROLS, parse_day
from chargectl.sessions.errors import InvalidInput, LedgerError, UnknownCard

ENV_CONFIG = "CHARGECTL_CONFIG"
DEFAULT_CONFIG = "/etc/chargectl/shed.yaml"
CONFIG_HELP = f"the shed config (default: ${ENV_CONFIG}, else {DEFAULT_CONFIG})"


def add_config_argument(parser: argparse.ArgumentParser, *, top: bool = True) -> None:
    """`--config` on the command and on each action; SUPPRESS keeps an action's absent option
    from overwriting the command's."""
    parser.add_argument(
        "-c",
        "--config",
        metavar="CONFIG",
        help=CONFIG_HELP,
        default=None if top else argparse.SUPPRESS,
    )


def config_path(args: argparse.Namespace) -> str:
    return getattr(args, "config", None) or os.environ.get(ENV_CONFIG) or DEFAULT_CONFIG


def load_config(args: argparse.Namespace) -> Shed:
    from chargectl.config.load import ConfigError, load_shed

    path = config_path(args)
    try:
        return load_shed(path)
    except ConfigError as exc:
        raise UsageError(f"config {path}:\n{exc}") from None


@contextmanager
def open_ledger(args: argparse.Namespace, *, create: bool) -> Iterator[sqlite3.Connection]:
    conn = ledger.connect(load_config(args).ledger_path(), create=create)
    try:
        yield conn
    finally:
        conn.close()


def staff_command(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Map the sessions errors to the CLI's exits: bad input 2, ledger failure 1."""

    @functools.wraps(run)
    def wrapped(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except (InvalidInput, UnknownCard) as exc:
            raise UsageError(str(exc)) from None
        except LedgerError as exc:
            print(f"chargectl {args.command}: {exc}", file=sys.stderr)
            return 1
        except sqlite3.Error as exc:
            print(f"chargectl {args.command}: ledger: {exc}", file=sys.stderr)
            return 1

    return wrapped


def shed_bays(shed: Shed) -> list[str]:
    from chargectl.topology import topology_of

    return list(topology_of(shed).bay_ids)


# ----- dates and times, in the edge box's local time -----
def day_start(day: date) -> float:
    return datetime.combine(day, time(0, 0)).timestamp()


def days_range(first: str, last: str) -> tuple[float, float]:
    """Wall-time bounds [start of first, start of the day after last)."""
    a, b = parse_day(first, "--from date"), parse_day(last, "--to date")
    if b < a:
        raise InvalidInput(f"--to {last} is before --from {first}")
    return day_start(a), day_start(b + timedelta(days=1))


def month_range(text: str) -> tuple[float, float]:
    parts = text.strip().split("-")
    if len(parts) != 2 or [len(p) for p in parts] != [4, 2] or not all(p.isdigit() for p in parts):
        raise InvalidInput(f"month {text!r} is not YYYY-MM")
    year, month = int(parts[0]), int(parts[1])
    if not 1 <= month <= 12 or year < 1:
        raise InvalidInput(f"month {text!r} is not a real month")
    nxt = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    return day_start(date(year, month, 1)), day_start(nxt)


def iso(wall: float | None) -> str:
    """Local time with its UTC offset, to the second; '' for None."""
    if wall is None:
        return ""
    return datetime.fromtimestamp(wall).astimezone().isoformat(timespec="seconds")


def short(wall: float | None) -> str:
    return "" if wall is None else datetime.fromtimestamp(wall).strftime("%Y-%m-%d %H:%M")


def kwh(wh: int) -> str:
    return f"{wh / 1000:.3f}"


# Names in the ledger from before `parse_name` refused bidi and C1 characters are cleaned on
# the way out: bidi controls and control characters (C0, DEL, C1) are removed.
# A spreadsheet takes a cell starting with one of these as a formula (or strips it first).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _plain(c: str) -> bool:
    o = ord(c)
    return not (o < 0x20 or 0x7F <= o <= 0x9F or c in BIDI_CONTROLS)


def plain_text(value: object) -> str:
    """Text with the bidi and control characters removed (for a terminal or a CSV cell)."""
    text = str(value)
    return text if all(map(_plain, text)) else "".join(filter(_plain, text))


def csv_text(value: object) -> str:
    """A CSV cell a spreadsheet shows as text: bidi and control characters removed, and a
    leading apostrophe on a cell that would start a formula."""
    text = plain_text(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_row(cells: list[object]) -> list[str]:
    """Every text cell made safe; numbers the code itself formats stay as they are."""
    return [str(c) if isinstance(c, int | float) else csv_text(c) for c in cells]


def table(header: list[str], rows: list[list[str]]) -> str:
    rows = [[plain_text(c) for c in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines)


def post_bay_command(
    args: argparse.Namespace, path: str, command: str, timeout_s: float
) -> tuple[str, dict[str, object]] | None:
    """POST `{"bay": args.bay}` to the running daemon's API `path` (`sessions/stop`,
    `bays/clear-fault`): the bay and the daemon's answer, or None once the failure is
    printed (`chargectl COMMAND: ...`, exit 1). An unknown bay is a UsageError (exit 2),
    whether the config or the daemon does not know it."""
    import json
    import urllib.error
    import urllib.request

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
    url = f"http://{shed.api.host}:{shed.api.port}/{path}"
    req = urllib.request.Request(
        url,
        data=json.dumps({"bay": bay}).encode(),
        method="POST",
        headers={"Content-Type": "application/json", **client_headers(shed)},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            body = json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        detail = error_text(exc)
        if exc.code == 404:
            raise UsageError(f"the daemon does not know bay {bay!r}: {detail}") from None
        print(f"chargectl {command}: the daemon answered {exc.code}: {detail}", file=sys.stderr)
        return None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        print(
            f"chargectl {command}: the daemon is not running or not answering at {url} ({reason})",
            file=sys.stderr,
        )
        return None
    except ValueError as exc:
        print(f"chargectl {command}: the daemon's answer is not JSON: {exc}", file=sys.stderr)
        return None
    if not isinstance(body, dict):
        print(f"chargectl {command}: unexpected answer from the daemon: {body!r}", file=sys.stderr)
        return None
    return bay, body


def error_text(exc: object) -> str:
    """The `error` of an HTTP error's JSON body, else its reason."""
    import json

    try:
        body = json.loads(exc.read())  # type: ignore[attr-defined]
        return str(body.get("error", body))
    except (ValueError, AttributeError, OSError):
        return str(getattr(exc, "reason", exc))
