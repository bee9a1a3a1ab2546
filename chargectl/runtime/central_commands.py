"""The daemon's commands from central systems, run on the loop: `circuits/limit` (an energy
manager's temporary cap), `bays/start` (an app's start, as a tap), `cards/upsert` and
`cards/block` (the central card list).

They join the staff commands in `Daemon.commands()`, so MQTT and the local HTTP API serve
them alike. The payload's shape (fields and their JSON types) is checked before a command
runs (`chargectl.outputs.mqtt_topics.check_fields`); each command checks the values and
answers (code, body): 200 with what it did, or a 4xx with an `error`, having changed nothing.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chargectl.control.external_limits import LimitRefused, UnknownCircuit
from chargectl.outputs.api import Command
from chargectl.sessions import card_sync, ledger
from chargectl.sessions.card_sync import CardChange
from chargectl.sessions.cards import CardBook, parse_uid
from chargectl.sessions.errors import InvalidInput, InvalidUid, LedgerError
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
            "cards/upsert": self.upsert_card,
            "cards/block": self.block_card,
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
            return 400, {"error": _clip(f"card: {exc}")}
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

    async def upsert_card(self, body: Mapping[str, Any]) -> Answer:
        try:
            card, version = card_sync.upsert_from(body)
        except InvalidInput as exc:
            return 400, {"error": _clip(str(exc))}
        wall = self.daemon.clock.wall()
        return await self._card_change(
            lambda conn: card_sync.apply_upsert(conn, card, version, wall), "upserted"
        )

    async def block_card(self, body: Mapping[str, Any]) -> Answer:
        try:
            uid, version = card_sync.block_from(body)
        except InvalidInput as exc:
            return 400, {"error": _clip(str(exc))}
        wall = self.daemon.clock.wall()
        return await self._card_change(
            lambda conn: card_sync.apply_block(conn, uid, version, wall), "blocked"
        )

    async def _card_change(
        self, change: Callable[[sqlite3.Connection], CardChange], what: str
    ) -> Answer:
        """Write a versioned card change in a thread of its own (a connection of its own, as
        the staff command line's: the loop never waits on the disk), adopt the card book read
        right after it, and end a running session of a card that is now blocked."""
        d = self.daemon
        try:
            done, book = await asyncio.to_thread(_write_cards, d.writer.path, change)
        except (LedgerError, sqlite3.Error) as exc:
            return 503, {"error": _clip(f"the ledger did not take it: {exc}")}
        out: dict[str, Any] = {"uid": done.uid, "applied": done.applied, "version": done.version}
        if not done.applied:
            return 200, out | {"status": done.status}
        d.writer.adopt_cards(book)
        stopped: list[str] = []
        if done.status == "blocked":
            # A blocked card charges no further (a lost or stolen card): its session ends now,
            # as a staff stop, rather than running on unseen until it is full.
            now, wall = d.clock.now(), d.clock.wall()
            for bay in d.link.manager.bays:
                s = d.link.manager.session_at(bay)
                if s is not None and s.card == done.uid and d.link.staff_stop(bay, now, wall):
                    stopped.append(bay)
        d.events.add(
            f"card {done.uid} {what} from the central list (version {done.version})"
            + (f": its session stopped at {', '.join(stopped)}" if stopped else "")
        )
        return 200, out | {"status": done.status, "stopped": stopped}


def _write_cards(
    path: Path, change: Callable[[sqlite3.Connection], CardChange]
) -> tuple[CardChange, CardBook]:
    conn = ledger.connect(path)
    try:
        done = change(conn)
        return done, ledger.load_cards(conn)
    finally:
        conn.close()


def _clip(text: str, at: int = 240) -> str:
    """What a sender sent, quoted back no longer than this."""
    return text if len(text) <= at else text[:at] + "..."
