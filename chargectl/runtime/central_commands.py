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
from chargectl.sessions.cards import parse_uid
from chargectl.sessions.errors import InvalidUid
from chargectl.sessions.taps import TapOutcome

if TYPE_CHECKING:
    from chargectl.runtime.daemon import Daemon

Answer = tuple[int, dict[str, Any]]

# Why a start was not made, after the tap outcome that says it (the tap event's `result`).
NOT_STARTED = {
    TapOutcome.UNKNOWN: "the card is not in the card list",
    TapOutcome.BLOCKED: "the card is blocked",
    TapOutcome.EXPIRED: "the card has expired",
    TapOutcome.QUOTA: "the card's daily energy limit is used up",
    TapOutcome.BUSY: "another card's session runs at the bay",
    TapOutcome.UNAVAILABLE: "the bay is in fault or the shed in emergency",
    TapOutcome.LIMIT: "the card runs as many sessions as sessions.max_per_card allows",
}


class CentralCommands:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def table(self) -> dict[str, Command]:
        return {
            "circuits/limit": self.limit_circuit,
            "bays/start": self.start_at_bay,
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

    async def start_at_bay(self, body: Mapping[str, Any]) -> Answer:
        """An app's start: the card judged exactly as a tap at the bay (the sessions' own tap
        path: card checks, session start, lamp, the tap's record, event and metric). It never
        stops a session: the card's own session at the bay is answered, left running."""
        d = self.daemon
        bay, card = body.get("bay"), body.get("card")
        if not isinstance(bay, str) or bay not in d.layout.bay_index:
            return 404, {"error": f"unknown bay {str(bay)[:120]!r}"}
        try:
            uid = parse_uid(str(card))
        except InvalidUid as exc:
            return 400, {"error": f"card: {exc}"}
        if d.controller.ticks == 0:
            return 503, {"error": "the daemon is starting: no tick has run yet"}
        running = d.link.manager.session_at(bay)
        if running is not None and running.card == uid:
            return 409, {
                "error": f"running: card {uid}'s session {running.id} runs at {bay} already "
                "(bays/start never stops one: sessions/stop does)"
            }
        result = d.link.tap(bay, uid, d.clock.now(), d.clock.wall())
        if result is None:
            return 409, {
                "error": f"repeat: card {uid} was at {bay} within sessions.tap_debounce_s: "
                "taken as the same tap, nothing done"
            }
        d.events.add(f"bays/start at {bay} for card {uid}: {result.outcome}")
        if result.outcome is not TapOutcome.STARTED:
            why = NOT_STARTED.get(result.outcome, "not started")
            return 409, {"error": f"{result.outcome}: {why}"}
        return 200, {
            "bay": bay,
            "card": uid,
            "result": str(result.outcome),
            "session": result.session,
        }
