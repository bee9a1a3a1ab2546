"""A fleet of sheds on one central broker and one central Prometheus (docs/fleet.md): the edge
box's mosquitto config, bridged to the central broker, and the central Prometheus's config.

Pure: names and addresses in, config text out; no I/O. `chargectl fleet` prints them.

The edge box runs its own mosquitto; the daemon reports to it on loopback, so the link between
them never breaks, and the bridge carries the shed's topics to the central broker over a
persistent session (clean session off on both ends, QoS 1): what the shed publishes while the
central broker is out of reach waits in the edge broker's queue (on disk at each autosave) and
goes out when the link returns. Inbound, card commands are queued at the central broker the
same way (a card blocked centrally while the link is down is blocked at the shed once it
returns; the list's versions make a late or repeated change harmless); every other
command is bridged at QoS 0, which a broker does not keep for a client that is away: a stop or an
alarm clear that arrived hours late would act on whatever is at the bay, or latched, by then
(docs/mqtt.md: commands are not kept for an offline shed).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import yaml

from chargectl.config.check_text import is_host
from chargectl.outputs.mqtt_topics import COMMANDS, ROOT, TOPICS

# Command families (the first level after cmd/) queued for a shed while its link is down:
# lists that must converge, whenever they arrive.
QUEUED_COMMANDS = ("cards",)
# The edge broker keeps this many QoS 1 messages for the bridge while the central broker is
# away (mosquitto's default is 1000): a few days of a large shed's events.
EDGE_QUEUE = 100_000
# A name that is one topic level, one word in a mosquitto config line and part of a client id.
_NAME = re.compile(r"[A-Za-z0-9_-]+")


class FleetError(ValueError):
    """A fleet setting that cannot go into a config: the message says which and why."""


@dataclass(frozen=True, slots=True)
class Central:
    """The central broker as the edge box's bridge reaches it."""

    host: str
    port: int = 1883
    # The CA to check the broker's certificate against (TLS); None: plain MQTT inside a VPN.
    # Debian 12's mosquitto 2.0.11 can spin on a TLS bridge after failed reconnects
    # (docs/fleet.md): prefer the VPN with it.
    ca_file: str | None = None


@dataclass(frozen=True, slots=True)
class Edge:
    """One edge box as the central Prometheus reaches its Prometheus."""

    shed: str
    host: str
    port: int = 9090


def published(suffixes: Iterable[str] | None = None) -> list[str]:
    """What the bridge carries out, after chargectl/<shed>/: each topic of `TOPICS`, a family
    of several (events/...) as one filter, and of cmd/ only the answers. Not `#`: the bridge's
    own notification topic (below) must not go out from the edge broker too, or the "0" it
    publishes locally when the link drops would follow the "1" once it is back."""
    if suffixes is None:
        suffixes = [t.suffix for t in TOPICS.values()]
    out: dict[str, None] = {}
    for suffix in suffixes:
        first, sep, _ = suffix.partition("/")
        out[suffix if not sep or first == "cmd" else f"{first}/#"] = None
    return list(out)


def command_families(commands: Iterable[str] = COMMANDS) -> tuple[list[str], list[str]]:
    """(queued, not queued): the command families under cmd/, each once, in order."""
    families = dict.fromkeys(path.split("/", 1)[0] for path in commands)
    queued = list(QUEUED_COMMANDS)
    return queued, [f for f in families if f not in queued]


def bridge_config(
    shed: str,
    central: Central,
    password: str,
    *,
    local_port: int = 1883,
    data_dir: str = "/var/lib/mosquitto/",
    restart_s: tuple[int, int] = (5, 60),
    commands: Iterable[str] = COMMANDS,
) -> str:
    """The edge box's mosquitto config: a loopback listener for the daemon, persistence, and
    the bridge to `central` that logs in as the shed's user (deploy/mosquitto/chargectl.acl)."""
    check_name(shed, "shed name")
    _check_address(central.host, central.port, "central broker")
    _check_port(local_port, "local port")
    if not password or any(c.isspace() for c in password) or "#" in password:
        raise FleetError("the bridge password must be one word without '#' (mosquitto's syntax)")
    low, high = restart_s
    if not 1 <= low <= high:
        raise FleetError(f"restart_s must be 1 <= low <= high, got {restart_s}")
    base = f"{ROOT}/{shed}"
    queued, direct = command_families(commands)
    lines = [
        f"# The edge broker of shed {shed!r}, bridged to the central broker (docs/fleet.md).",
        "# Made by `chargectl fleet bridge`; install as /etc/mosquitto/conf.d/chargectl-edge.conf",
        "# (root:mosquitto, mode 0640: it holds the bridge's password).",
        "",
        "# The daemon on this box (mqtt.host 127.0.0.1, no user): loopback only, like its API.",
        f"listener {local_port} 127.0.0.1",
        "allow_anonymous true",
        "set_tcp_nodelay true",
        "",
        "# What waits for the bridge survives a restart of this broker (saved every minute).",
        "persistence true",
        f"persistence_location {data_dir}",
        "autosave_interval 60",
        f"max_queued_messages {EDGE_QUEUE}",
        "",
        f"connection {ROOT}-{shed}",
        f"address {central.host}:{central.port}",
        "bridge_protocol_version mqttv311",
        "# The bridge's own flag at the central broker: what it forwards is never sent back.",
        "try_private true",
        f"remote_clientid {ROOT}-bridge-{shed}",
        f"local_clientid {ROOT}-bridge-{shed}-local",
        f"remote_username {shed}",
        f"remote_password {password}",
        "# Persistent sessions at both ends: QoS 1 messages wait while the link is down.",
        "cleansession false",
        "local_cleansession false",
        "start_type automatic",
        f"restart_timeout {low} {high}",
        "keepalive_interval 60",
        "# 1 while the bridge is connected, 0 (its Will, retained) once the link is lost.",
        "notifications true",
        f"notification_topic {base}/bridge",
    ]
    if central.ca_file is not None:
        lines += [f"bridge_cafile {central.ca_file}", "bridge_tls_version tlsv1.2"]
    lines += [
        "",
        "# Out: what the shed publishes (status, state, events, command answers), and its",
        "# Home Assistant discovery configs under the default prefix.",
        *(f"topic {base}/{suffix} out 1" for suffix in published()),
        f"topic homeassistant/+/{shed}/# out 1",
        "# In: card lists, queued at the central broker while the link is down.",
        *(f"topic {base}/cmd/{f}/# in 1" for f in queued),
        "# In: every other command at QoS 0, never kept for the shed while it is away.",
        *(f"topic {base}/cmd/{f}/# in 0" for f in direct),
    ]
    return "\n".join(lines) + "\n"


def prometheus_config(edges: Sequence[Edge], *, interval_s: int = 30) -> str:
    """The central Prometheus: each edge box's Prometheus federated (its `chargectl` job),
    the edge's series keeping their labels (`honor_labels`), and `shed` on every series: the
    daemon's own, or the target's for `up` and the scrape's series."""
    if not edges:
        raise FleetError("no edge boxes: name at least one SHED=HOST:PORT")
    seen: set[str] = set()
    targets = []
    for e in edges:
        check_name(e.shed, "shed name")
        _check_address(e.host, e.port, f"edge box of {e.shed}")
        if e.shed in seen:
            raise FleetError(f"shed {e.shed!r} is named twice")
        seen.add(e.shed)
        targets.append({"targets": [f"{e.host}:{e.port}"], "labels": {"shed": e.shed}})
    if not 5 <= interval_s <= 600:
        raise FleetError(f"the scrape interval must be 5..600 s, got {interval_s}")
    config = {
        "global": {
            "scrape_interval": f"{interval_s}s",
            "evaluation_interval": f"{interval_s}s",
            "external_labels": {"site": "central"},
        },
        "scrape_configs": [
            {
                "job_name": "chargectl-fleet",
                "metrics_path": "/federate",
                "params": {"match[]": ['{job="chargectl"}']},
                "honor_labels": True,
                "scrape_interval": f"{interval_s}s",
                "scrape_timeout": f"{max(1, interval_s * 2 // 3)}s",
                "static_configs": targets,
            }
        ],
    }
    head = (
        "# The central Prometheus of a fleet of sheds (docs/fleet.md), made by\n"
        "# `chargectl fleet prometheus`: every edge box's Prometheus federated.\n"
    )
    return head + yaml.safe_dump(config, sort_keys=False)


def check_name(name: str, what: str) -> None:
    if not _NAME.fullmatch(name):
        raise FleetError(f"{what} must be letters, digits, '_' and '-' only, got {name!r}")


def _check_port(port: int, what: str) -> None:
    if not 1 <= port <= 65535:
        raise FleetError(f"{what} must be 1..65535, got {port}")


def _check_address(host: str, port: int, what: str) -> None:
    if not is_host(host):
        raise FleetError(f"{what}: must be a host name or an IP address, got {host!r}")
    _check_port(port, f"{what}: port")


def parse_address(text: str, default_port: int, what: str) -> tuple[str, int]:
    """`HOST` or `HOST:PORT` -> (host, port), or `FleetError` saying what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, str(default_port)
    if not port.isascii() or not port.isdigit():
        raise FleetError(f"{what}: the port must be a number, got {text!r}")
    _check_address(host, int(port), what)
    return host, int(port)
