"""What a shed says on the central MQTT broker, and what it answers to: tables and payloads.

Pure: plain data in, plain data (JSON-able dicts) out; no I/O, no clock. `chargectl.mqtt`
does the talking. The topic layout follows deploy/mosquitto/chargectl.acl: a shed publishes
under `chargectl/<shed>/` and reads only `chargectl/<shed>/cmd/`.

Adding a topic or a command is one row in `TOPICS` or `COMMANDS` (and a line in docs/mqtt.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chargectl.control.layout import Layout
from chargectl.control.observe import BAY_STATES, Decision
from chargectl.sessions.manager import EndedSession, TapResult

ROOT = "chargectl"
ONLINE = b"online"
OFFLINE = b"offline"


@dataclass(frozen=True, slots=True)
class Topic:
    key: str
    suffix: str  # after chargectl/<shed>/
    qos: int
    retain: bool
    payload: str  # for docs/mqtt.md and people reading this table


TOPICS: dict[str, Topic] = {
    t.key: t
    for t in (
        # The Will says "offline" when the link dies; a clean stop says it too.
        Topic("status", "status", 1, True, "`online` or `offline` (plain text)"),
        # QoS 0: a lost summary is replaced by the next one within the interval.
        Topic("state", "state", 0, True, "state summary (JSON), every `state_interval_s`"),
        Topic("tap", "events/tap", 1, False, "a card tap and what it did"),
        Topic("session_end", "events/session_end", 1, False, "a session settled: reason, kWh"),
        Topic("overload", "events/overload", 1, False, "a circuit overload began or ended"),
        Topic("alarm", "events/alarm", 1, False, "the shed alarm latched or was cleared"),
        Topic("device", "events/device", 1, False, "a device stopped or resumed answering"),
        Topic("result", "cmd/result", 1, False, "the answer to a command"),
    )
}
COMMAND_FILTER = "cmd/#"  # subscribed with QoS 1
RESULT_SUFFIX = TOPICS["result"].suffix


def topic(shed: str, suffix: str) -> str:
    return f"{ROOT}/{shed}/{suffix}"


# -- commands ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandSpec:
    path: str  # the topic after chargectl/<shed>/cmd/, and the daemon's command name
    fields: tuple[str, ...]  # required string fields of the JSON object
    does: str


COMMANDS: dict[str, CommandSpec] = {
    c.path: c
    for c in (
        CommandSpec("sessions/stop", ("bay",), "staff stop of the session at a bay"),
        CommandSpec("alarm/clear", (), "clear the latched shed alarm (smoke, e-stop)"),
        CommandSpec("bays/clear-fault", ("bay",), "reset a bay's latched fault or welded flag"),
    )
}
assert RESULT_SUFFIX.removeprefix("cmd/") not in COMMANDS  # the answer is never a command

CommandId = str | int | float | None


class CommandError(ValueError):
    """A command that cannot be carried out as sent; the message says why, for the sender."""

    def __init__(self, message: str, command_id: CommandId = None) -> None:
        super().__init__(message)
        self.command_id = command_id


@dataclass(frozen=True, slots=True)
class Request:
    command: str
    body: dict[str, Any]  # what the daemon's command coroutine gets (without "id")
    id: CommandId


def parse_command(
    path: str, payload: bytes, known: Sequence[str], *, retained: bool = False
) -> Request:
    """A command message -> a `Request`, or `CommandError` naming what is wrong with it.

    Only a non-empty message that was not retained is a command: an empty message is how a
    client deletes a retained one, and a retained one would run again at every reconnect. The
    optional "id" (a string or a number) is echoed in the answer.
    """
    retained_error = "retained commands are refused: publish with retain=false"
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CommandError(f"payload is not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        if retained:
            raise CommandError(retained_error)
        raise CommandError(
            "an empty message is not a command (it is how a retained message is deleted): "
            "send a JSON object, {} at the least"
        )
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"payload is not JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(body, dict):
        raise CommandError(f"payload must be a JSON object, got {_kind(body)}")
    command_id = body.pop("id", None)
    if isinstance(command_id, bool) or not isinstance(command_id, str | int | float | None):
        raise CommandError(f"'id' must be a string or a number, got {_kind(command_id)}")
    if retained:
        # A retained command would run again at every reconnect, hours later.
        raise CommandError(retained_error, command_id)
    if path not in known:
        names = ", ".join(sorted(known)) or "none"
        raise CommandError(f"unknown command {path!r}; known: {names}", command_id)
    spec = COMMANDS.get(path)
    if spec is not None:
        for name in spec.fields:
            if name not in body:
                raise CommandError(f"missing field {name!r} (a string)", command_id)
            if not isinstance(body[name], str):
                raise CommandError(
                    f"field {name!r} must be a string, got {_kind(body[name])}", command_id
                )
        extra = sorted(set(body) - set(spec.fields))
        if extra:
            allowed = ", ".join(["id", *spec.fields])
            raise CommandError(f"unknown field {extra[0]!r}; known: {allowed}", command_id)
    return Request(path, body, command_id)


def answer(request: Request, code: int, body: Mapping[str, Any]) -> dict[str, Any]:
    """The result of a command the daemon ran: its (HTTP-like) code and body."""
    out: dict[str, Any] = {"id": request.id, "command": request.command, "ok": code == 200}
    if code == 200:
        out["result"] = dict(body)
    else:
        out["error"] = str(body.get("error", f"failed with code {code}"))
    return out


def refusal(path: str, error: CommandError) -> dict[str, Any]:
    return {"id": error.command_id, "command": path, "ok": False, "error": str(error)}


def _kind(value: object) -> str:
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    names |= {list: "a list", dict: "an object"}
    kind = names.get(type(value), type(value).__name__)
    return f"{kind} {value!r}" if isinstance(value, bool | int | float | str) else kind


# -- publications -----------------------------------------------------------------------------


def _phases(layout: Layout, c: int) -> list[int]:
    return [p for p in range(3) if layout.circuit_phases[c, p]]


def _amps(row: Any, idx: Sequence[int]) -> list[float]:
    return [round(float(row[i]), 2) for i in idx]


def state_summary(
    shed: str,
    layout: Layout,
    decision: Decision,
    *,
    wall: float,
    devices_down: Sequence[str],
    dropped: int,
) -> dict[str, Any]:
    """The retained state: circuits against their limits, bays by state, alarm, devices down."""
    circuits = []
    for c, cid in enumerate(layout.circuit_ids):
        idx = _phases(layout, c)
        circuits.append(
            {
                "id": cid,
                "phases": [p + 1 for p in idx],
                "current_a": _amps(decision.circuit_current_a[c], idx),
                "limit_a": _amps(layout.limit_a[c], idx),  # as configured
                "plan_limit_a": _amps(decision.limit_a[c], idx),  # after thermal derating
                "planned_a": _amps(decision.planned_a[c], idx),
                "overloaded": bool(decision.overloaded[c]),
                "thermal_ratio": round(float(decision.thermal_ratio[c]), 3),
            }
        )
    bays = dict.fromkeys(BAY_STATES, 0)
    for s in decision.bay_state:
        bays[s] = bays.get(s, 0) + 1
    return {
        "shed": shed,
        "wall": wall,
        "alarm": decision.alarm,
        "circuits": circuits,
        "bays": bays,
        "devices_down": sorted(devices_down),
        "events_dropped": dropped,
    }


def tap_event(tap: TapResult, wall: float) -> dict[str, Any]:
    return {
        "wall": wall,
        "bay": tap.bay,
        "card": tap.uid,
        "result": str(tap.outcome),
        "session": tap.session,
    }


def session_end_event(s: EndedSession, wall: float) -> dict[str, Any]:
    return {
        "wall": wall,
        "bay": s.bay,
        "session": s.id,
        "card": s.card,
        "reason": str(s.reason),
        "energy_kwh": round(s.energy_wh / 1000, 3),
        "started": s.start,
    }


def overload_event(
    layout: Layout, decision: Decision, c: int, active: bool, wall: float
) -> dict[str, Any]:
    idx = _phases(layout, c)
    return {
        "wall": wall,
        "circuit": layout.circuit_ids[c],
        "active": active,
        "current_a": _amps(decision.circuit_current_a[c], idx),
        "limit_a": _amps(layout.limit_a[c], idx),
    }


def alarm_event(alarm: str | None, was: str | None, wall: float) -> dict[str, Any]:
    return {"wall": wall, "active": alarm is not None, "alarm": alarm or was}


def device_event(device: str, up: bool, wall: float) -> dict[str, Any]:
    return {"wall": wall, "device": device, "up": up}
