"""The checks of text the daemon passes on or opens: names and ids (logs, CSV exports, metric
labels, MQTT topics), file paths, and the hosts it connects to or listens on."""

from __future__ import annotations

import ipaddress
import re
import unicodedata

from chargectl.config.problems import Context, join
from chargectl.config.schema import RtuBus, TcpBus

_HOST_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def check_text(ctx: Context) -> None:
    """Control and bidi characters in names, ids and paths are never meant."""
    shed = ctx.shed
    texts: list[tuple[str, str | None]] = [("shed.name", shed.shed.name)]
    for section in ("circuits", "buses", "devices"):
        for i, item in enumerate(getattr(shed, section)):
            texts.append((join(ctx.path(item, f"{section}[{i}]"), "id"), item.id))
    for path, text in texts:
        if text is not None and odd_char(text):
            ctx.report(path, f"must not contain control or bidi characters, got {text!r}")
    paths: list[tuple[str, str | None]] = [
        ("ledger", shed.ledger),
        ("mqtt.ca_file", shed.mqtt.ca_file),
        ("mqtt.password_file", shed.mqtt.password_file),
        ("api.token_file", getattr(shed.api, "token_file", None)),
    ]
    for i, b in enumerate(shed.buses):
        if isinstance(b, RtuBus):
            paths.append((join(ctx.path(b, f"buses[{i}]"), "rtu.port"), b.port))
    paths += [(f"templates[{i}]", d) for i, d in enumerate(shed.templates)]
    for path, text in paths:
        if text is not None and odd_char(text):
            ctx.report(path, f"a file path without control characters, got {text!r}")
    if not shed.ledger.strip():
        ctx.report("ledger", "must not be empty")
    elif shed.ledger.endswith("/"):
        ctx.report("ledger", f"names a file, not a folder, got {shed.ledger!r}")


def check_hosts(ctx: Context) -> None:
    """Every host is one the daemon can use at start without a surprise: a TCP line's and
    the broker's a host name or an IP address; the addresses the daemon listens on an IP
    address of this machine or `localhost` (a name would need DNS before it can start)."""
    shed = ctx.shed
    hosts: list[tuple[str, str | None]] = [("mqtt.host", shed.mqtt.host)]
    for i, b in enumerate(shed.buses):
        if isinstance(b, TcpBus):
            hosts.append((join(ctx.path(b, f"buses[{i}]"), "tcp.host"), b.host))
    for path, host in hosts:
        if host is not None and host.strip() and not is_host(host):
            ctx.report(path, f"must be a host name or an IP address, got {host!r}")
    # The metrics server binds the address's own family; the API's HTTP server IPv4 only.
    binds = [("metrics.host", shed.metrics.host, (4, 6)), ("api.host", shed.api.host, (4,))]
    if shed.residents is not None:
        binds.append(("residents.host", shed.residents.host, (4, 6)))
    for path, host, families in binds:
        if host.strip() and not is_bind_host(host, families):
            what = "an IPv4 address" if families == (4,) else "an IP address"
            ctx.report(path, f"must be {what} of this machine or localhost, got {host!r}")


def odd_char(text: str) -> bool:
    """A control character (NUL, newline, ESC, ...) or a format character (bidi overrides)."""
    return any(unicodedata.category(c) in ("Cc", "Cf") for c in text)


def is_ip(host: str, families: tuple[int, ...] = (4, 6)) -> bool:
    try:
        return ipaddress.ip_address(host).version in families
    except ValueError:
        return False


def is_host(host: str) -> bool:
    """An IP address, or a DNS name in its ASCII form (RFC 1123 labels)."""
    if is_ip(host):
        return True
    name = host[:-1] if host.endswith(".") else host
    return 0 < len(name) <= 253 and all(_HOST_LABEL.fullmatch(p) for p in name.split("."))


def is_bind_host(host: str, families: tuple[int, ...]) -> bool:
    return host == "localhost" or is_ip(host, families)
