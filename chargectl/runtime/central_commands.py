"""The daemon's commands from central systems, run on the loop: `circuits/limit` (an energy
manager's temporary cap), `bays/start` (an app's start, as a tap), `cards/upsert` and
`cards/block` (the central card list).

They join the staff commands in `Daemon.commands()`, so MQTT and the local HTTP API serve
them alike. The payload's shape (fields and their JSON types) is checked before a command
runs (`chargectl.outputs.mqtt_topics.check_fields`); each command checks the values and
answers (code, body): 200 with what it did, or a 4xx with an `error`, having changed nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from chargectl.control.external_limits import LimitRefused, UnknownCircuit
from chargectl.outputs.api import Command

if TYPE_CHECKING:
    from chargectl.runtime.daemon import Daemon

Answer = tuple[int, dict[str, Any]]


class CentralCommands:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def table(self) -> dict[str, Command]:
        return {
            "circuits/limit": self.limit_circuit,
        }

    async def limit_circuit(self, body: Mapping[str, Any]) -> Answer:
        d = self.daemon
        external = d.controller.core.external
        circuit = body.get("circuit")
        try:
            cap = external.set(circuit, body.get("limit_a"), body.get("ttl_s"), d.clock.now())
        except UnknownCircuit as exc:
            return 404, {"error": str(exc)}
        except LimitRefused as exc:
            return 400, {"error": str(exc)}
        if cap is None:
            d.events.add(f"circuit {circuit}: the cap from above cleared")
            return 200, {"circuit": circuit, "cap_a": None}
        d.events.add(
            f"circuit {circuit}: capped from above at {cap.limit_a:g} A for "
            f"{float(body['ttl_s']):g} s"
        )
        return 200, {"circuit": circuit, "cap_a": cap.limit_a, "ttl_s": float(body["ttl_s"])}
