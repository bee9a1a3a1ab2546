"""What the tests of the commands from central systems share: a shed's config with its MQTT
link on the test broker, and sending a command and reading its answer."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tests.mqtt.broker import PASSWORDS, SHED, Broker, Operator, operator
from tests.rig import Rig, write_config

TICK_S = 0.25


def mqtt_config(tmp_path: Path, broker: Broker, **overrides: Any) -> Path:
    """The small shed named `SHED`, ticking every TICK_S, linked to `broker` as its ACL user."""
    (tmp_path / "mqtt.pw").write_text(PASSWORDS[SHED] + "\n")
    base: dict[str, Any] = {
        "shed": {"name": SHED},
        "control": {"tick_s": TICK_S},
        "sim": {"chargers": []},
        "mqtt": {
            "host": "127.0.0.1",
            "port": broker.port,
            "username": SHED,
            "password_file": "mqtt.pw",
            "keepalive_s": 5,
            "state_interval_s": 0.5,
            "reconnect_max_s": 1,
        },
    }
    for key, value in overrides.items():
        base[key] = {**base.get(key, {}), **value}
    return write_config(tmp_path, "small", overrides=base)


async def command(op: Operator, path: str, body: Any, cid: object = None) -> dict[str, Any]:
    """Send `body` (a dict, with `cid` as its id, or raw text) to cmd/`path` and return the
    next answer (one command at a time: the answers come in order)."""
    if isinstance(body, dict):
        body = json.dumps(body if cid is None else {**body, "id": cid})
    await op.send(f"chargectl/{SHED}/cmd/{path}", body)
    got: dict[str, Any] = json.loads(await op.payload(f"chargectl/{SHED}/cmd/result"))
    return got


@contextlib.asynccontextmanager
async def central(port: int, user: str) -> AsyncIterator[Operator]:
    """A central system's client as the ACL's `user`, reading the shed's answers."""
    async with operator(port, f"chargectl/{SHED}/cmd/result", user) as op:
        yield op


async def subscribed(rig: Rig) -> None:
    """Until the daemon's link reads its commands (the subscription acknowledged)."""
    await rig.wait_for(lambda: rig.daemon.mqtt is not None and rig.daemon.mqtt.subscribed, 10)
