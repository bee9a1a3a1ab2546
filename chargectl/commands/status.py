"""`chargectl status CONFIG`: one screen of what the running daemon sees (its local API)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from chargectl.commands.staff import CONFIG_HELP, add_config_argument

    parser.add_argument("config_file", nargs="?", metavar="CONFIG", help=CONFIG_HELP)
    add_config_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the raw snapshot as JSON")


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    import urllib.error
    import urllib.request

    from chargectl.commands.run import config_path_of
    from chargectl.commands.staff import config_path
    from chargectl.config.load import load_shed
    from chargectl.outputs.api import client_headers
    from chargectl.outputs.view import render_status

    shed = load_shed(config_path_of(args, config_path))
    url = f"http://{shed.api.host}:{shed.api.port}/status"
    try:
        request = urllib.request.Request(url, headers=client_headers(shed))
        with urllib.request.urlopen(request, timeout=5) as reply:
            snapshot = json.loads(reply.read())
    except (urllib.error.URLError, OSError) as exc:
        print(f"chargectl status: no daemon answers at {url} ({exc})", file=sys.stderr)
        return 1
    if not snapshot:
        print(f"chargectl status: the daemon at {url} has not finished its first tick yet")
        return 1
    if args.json:
        print(json.dumps(snapshot, indent=2))
    else:
        print(render_status(snapshot))
    return 0
