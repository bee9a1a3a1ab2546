"""`chargectl bays clear-fault BAY`: clear a bay's latched fault through the running daemon: a
welded relay (replaced), a pile port's fault, or the hold after a critical fire-risk finding
(the resident spoken to). The daemon's `POST /bays/clear-fault`, as MQTT's `bays/clear-fault`."""

from __future__ import annotations

import argparse
import json
import sys

from chargectl.cli import UsageError
from chargectl.commands.staff import add_config_argument, staff_command

CLEAR_TIMEOUT_S = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser(
        "clear-fault",
        help="clear a bay's fault, welded flag or fire-risk hold (through the running daemon)",
    )
    p.add_argument("bay", metavar="BAY", help="pile/port (e.g. pile-a/3) or a wallbox id")
    add_config_argument(p, top=False)


@staff_command
def run(args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.request

    from chargectl.commands.sessions import _error_text
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
    url = f"http://{shed.api.host}:{shed.api.port}/bays/clear-fault"
    req = urllib.request.Request(
        url,
        data=json.dumps({"bay": bay}).encode(),
        method="POST",
        headers={"Content-Type": "application/json", **client_headers(shed)},
    )
    try:
        with urllib.request.urlopen(req, timeout=CLEAR_TIMEOUT_S) as resp:
            body = json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        detail = _error_text(exc)
        if exc.code == 404:
            raise UsageError(f"the daemon does not know bay {bay!r}: {detail}") from None
        print(f"chargectl bays: the daemon answered {exc.code}: {detail}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        print(
            f"chargectl bays: the daemon is not running or not answering at {url} ({reason})",
            file=sys.stderr,
        )
        return 1
    except ValueError as exc:
        print(f"chargectl bays: the daemon's answer is not JSON: {exc}", file=sys.stderr)
        return 1
    if not isinstance(body, dict) or body.get("cleared") is not True:
        print(f"chargectl bays: unexpected answer from the daemon: {body!r}", file=sys.stderr)
        return 1
    print(f"cleared {bay}: it may charge again")
    return 0
