"""`chargectl fleet bridge CONFIG --central HOST[:PORT] --password-file FILE`: the edge box's
mosquitto config, bridged to the central broker, on stdout. `chargectl fleet prometheus
SHED=HOST[:PORT]...`: the central Prometheus's config, every edge box's Prometheus federated.
See docs/fleet.md; the configs are made by `chargectl.outputs.fleet`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from chargectl.cli import UsageError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    b = sub.add_parser("bridge", help="the edge box's mosquitto config, bridged to the centre")
    b.add_argument("config", metavar="CONFIG", help="the shed config (its name, its mqtt link)")
    b.add_argument("--central", required=True, metavar="HOST[:PORT]", help="the central broker")
    b.add_argument(
        "--password-file",
        required=True,
        metavar="FILE",
        help="the shed user's password at the central broker (one line)",
    )
    b.add_argument(
        "--ca",
        metavar="FILE",
        help="TLS to the central broker (port 8883), its certificate checked against this CA; "
        "without it plain MQTT (port 1883), inside a VPN only (docs/fleet.md)",
    )
    p = sub.add_parser("prometheus", help="the central Prometheus's config, federating the sheds")
    p.add_argument(
        "edges",
        nargs="+",
        metavar="SHED=HOST[:PORT]",
        help="a shed's name and its edge box's Prometheus (port 9090 unless given)",
    )
    p.add_argument("--interval", type=int, default=30, metavar="S", help="scrape every S s")


def run(args: argparse.Namespace) -> int:
    from chargectl.outputs.fleet import FleetError

    try:
        text = _bridge(args) if args.action == "bridge" else _prometheus(args)
    except FleetError as exc:
        raise UsageError(str(exc)) from None
    sys.stdout.write(text)
    return 0


def _bridge(args: argparse.Namespace) -> str:
    from chargectl.config.load import load_shed
    from chargectl.outputs.fleet import Central, bridge_config, parse_address

    shed = load_shed(args.config)
    m = shed.mqtt
    # The daemon reports to the edge broker; the bridge, not the daemon, talks to the centre.
    if m.host not in LOOPBACK or m.tls:
        raise UsageError(
            f"{args.config}: mqtt must name the edge broker on this box (host 127.0.0.1, "
            f"no tls), got host {m.host!r}, tls {m.tls}"
        )
    local_port = m.port or 1883
    host, port = parse_address(args.central, 1883 if args.ca is None else 8883, "--central")
    try:
        password = Path(args.password_file).read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--password-file {args.password_file}: {exc}") from None
    central = Central(host, port, args.ca)
    return bridge_config(shed.shed.name, central, password, local_port=local_port)


def _prometheus(args: argparse.Namespace) -> str:
    from chargectl.outputs.fleet import Edge, FleetError, parse_address, prometheus_config

    edges = []
    for item in args.edges:
        name, sep, address = item.partition("=")
        if not sep:
            raise FleetError(f"{item!r}: expected SHED=HOST[:PORT]")
        host, port = parse_address(address, 9090, f"{item!r}")
        edges.append(Edge(name, host, port))
    return prometheus_config(edges, interval_s=args.interval)
