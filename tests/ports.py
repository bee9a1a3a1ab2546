"""A port for a test's server to listen on."""

from __future__ import annotations

import random
import socket

# Ports the tests' servers listen on are drawn below the kernel's ephemeral range
# (/proc/sys/net/ipv4/ip_local_port_range, 32768.. by default): a port bound to 0 and let go
# comes from that range, where any test's outgoing connection may take it as its source port
# before our server binds it ("Address already in use", seen with two workers).
LISTEN_PORTS = (20000, 32767)


# Ports handed out in this process: one config asks for several before any server binds, so
# a port free now may be handed out twice (seen once: a daemon could not bind its HTTP server).
_given: set[int] = set()


def free_port() -> int:
    """A port free to listen on now, outside the ephemeral range, at random (two workers),
    never one this process handed out before."""
    rng = random.SystemRandom()
    if len(_given) > (LISTEN_PORTS[1] - LISTEN_PORTS[0]) // 2:
        _given.clear()  # long since bound and let go
    for _ in range(200):
        port = rng.randint(*LISTEN_PORTS)
        if port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            _given.add(port)
            return port
    raise RuntimeError(f"no free port in {LISTEN_PORTS}")
