"""`chargectl bays clear-fault BAY`: clear a bay's latched fault through the running daemon: a
welded relay (replaced), a pile port's fault, or the hold after a critical fire-risk finding
(the resident spoken to). The daemon's `POST /bays/clear-fault`, as MQTT's `bays/clear-fault`."""

from __future__ import annotations

import argparse
import sys

from chargectl.commands.staff import add_config_argument, post_bay_command, staff_command

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
    answer = post_bay_command(args, "bays/clear-fault", "bays", CLEAR_TIMEOUT_S)
    if answer is None:
        return 1
    bay, body = answer
    if body.get("cleared") is not True:
        print(f"chargectl bays: unexpected answer from the daemon: {body!r}", file=sys.stderr)
        return 1
    print(f"cleared {bay}: it may charge again")
    return 0
