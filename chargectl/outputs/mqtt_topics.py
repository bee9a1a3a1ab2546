"""What a shed says on the central MQTT broker, and what it answers to: tables and payloads.

Pure: plain data in, plain data (JSON-able dicts) out; no I/O, no clock. `chargectl.outputs.mqtt`
does the talking. The topic layout follows deploy/mosquitto/chargectl.acl: a shed publishes
under `chargectl/<shed>/` and reads only `chargectl/<shed>/cmd/`.

Adding a topic or a command is one row in `TOPICS` or `COMMANDS` (and a line in docs/mqtt.md).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chargectl.control.layout import Layout
from chargectl.control.observe import BAY_STATES, Decision
from chargectl.firewatch.detectors import Finding, Severity
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
        Topic("finding", "events/finding", 1, False, "a fire-risk sign at a bay's session"),
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
    numbers: tuple[str, ...] = ()  # required number fields (finite, not booleans)
    # Fields it may carry or leave out; the daemon's command checks their values.
    optional: tuple[str, ...] = ()

    @property
    def known(self) -> tuple[str, ...]:
        """Every field it takes besides "id", in the order docs/mqtt.md lists them."""
        return (*self.fields, *self.numbers, *self.optional)


COMMANDS: dict[str, CommandSpec] = {
    c.path: c
    for c in (
        CommandSpec("sessions/stop", ("bay",), "staff stop of the session at a bay"),
        CommandSpec("alarm/clear", (), "clear the latched shed alarm (smoke, e-stop)"),
        CommandSpec(
            "bays/clear-fault",
            ("bay",),
            "reset a bay's latched fault or welded flag, or its hold after a critical fire-risk "
            "finding",
        ),
        CommandSpec(
            "circuits/limit",
            ("circuit",),
            "cap a circuit's limit at `limit_a` A per phase for `ttl_s` s (at most a day); only "
            "ever lower: above the configured limit is refused, equal to it clears the cap",
            numbers=("limit_a", "ttl_s"),
        ),
        CommandSpec(
            "bays/start",
            ("bay", "card"),
            "an app's start of `card` (UID hex) at a bay, judged exactly as a tap of it there; "
            "never stops a session",
        ),
        CommandSpec(
            "cards/upsert",
            ("uid", "name"),
            "register or replace a card from the central list (fields as the card CSV), unless "
            "the box holds it at this `version` or newer",
            numbers=("version",),
            optional=("daily_kwh", "expires", "status"),
        ),
        CommandSpec(
            "cards/block",
            ("uid",),
            "block a card from the central list unless the box holds it at this `version` or "
            "newer; its running session is stopped",
            numbers=("version",),
        ),
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


MAX_COMMAND_BYTES = 16 * 1024  # a command is a few dozen bytes; the broker allows 64 KiB
_ECHO = 120  # characters of a sender's own text quoted back in an error


def parse_command(
    path: str, payload: bytes, known: Sequence[str], *, retained: bool = False
) -> Request:
    """A command message -> a `Request`, or `CommandError` naming what is wrong with it.

    Only a non-empty message that was not retained is a command: an empty message is how a
    client deletes a retained one, and a retained one would run again at every reconnect. The
    optional "id" (a string or a finite number) is echoed in the answer. Never raises anything
    but `CommandError`, whatever the payload (the fuzz tests feed it every kind of garbage).
    """
    retained_error = "retained commands are refused: publish with retain=false"
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandError(f"payload too large: {len(payload)} bytes, at most {MAX_COMMAND_BYTES}")
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
    body = decode_json_object(text, "payload")
    command_id = body.pop("id", None)
    if isinstance(command_id, bool) or not isinstance(command_id, str | int | float | None):
        raise CommandError(f"'id' must be a string or a number, got {_kind(command_id)}")
    if retained:
        # A retained command would run again at every reconnect, hours later.
        raise CommandError(retained_error, command_id)
    if path not in known:
        names = ", ".join(sorted(known)) or "none"
        raise CommandError(f"unknown command {_clip(path)!r}; known: {names}", command_id)
    try:
        check_fields(path, body)
    except CommandError as exc:
        raise CommandError(str(exc), command_id) from None
    return Request(path, body, command_id)


def decode_json_object(text: str, what: str) -> dict[str, Any]:
    """`text` as a JSON object, or `CommandError`. NaN and Infinity (which Python's json reads,
    and an answer encoded with allow_nan=False could not echo) are refused, as are numbers too
    large for a float, nesting too deep for the parser and integers too long to convert."""
    try:
        body = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{what} is not JSON: {exc.msg} at column {exc.colno}") from None
    except _NotFinite as exc:
        raise CommandError(f"{what} holds {exc}: only finite numbers are JSON") from None
    except RecursionError:
        raise CommandError(f"{what} is nested too deeply") from None
    except ValueError as exc:  # an integer of more than 4300 digits
        raise CommandError(f"{what} is not usable JSON: {_clip(str(exc))}") from None
    if not isinstance(body, dict):
        raise CommandError(f"{what} must be a JSON object, got {_kind(body)}")
    return body


def check_fields(path: str, body: Mapping[str, Any]) -> None:
    """The fields of `COMMANDS[path]`: its strings, its numbers, and no others
    (`CommandError`). The values of its optional fields are the daemon's command's to check."""
    spec = COMMANDS.get(path)
    if spec is None:
        return
    for name in spec.fields:
        if name not in body:
            raise CommandError(f"missing field {name!r} (a string)")
        if not isinstance(body[name], str):
            raise CommandError(f"field {name!r} must be a string, got {_kind(body[name])}")
    for name in spec.numbers:
        if name not in body:
            raise CommandError(f"missing field {name!r} (a number)")
        value = body[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CommandError(f"field {name!r} must be a number, got {_kind(value)}")
    extra = sorted(set(body) - set(spec.known))
    if extra:
        allowed = ", ".join(["id", *spec.known])
        raise CommandError(f"unknown field {_clip(extra[0])!r}; known: {allowed}")


class _NotFinite(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _NotFinite(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(f"{_clip(text)} (beyond a float)")
    return value


def _clip(text: str) -> str:
    return text if len(text) <= _ECHO else text[:_ECHO] + "..."


def answer(request: Request, code: int, body: Mapping[str, Any]) -> dict[str, Any]:
    """The result of a command the daemon ran: its (HTTP-like) code and body."""
    out: dict[str, Any] = {"id": request.id, "command": request.command, "ok": code == 200}
    if code == 200:
        out["result"] = dict(body)
    else:
        out["error"] = str(body.get("error", f"failed with code {code}"))
    return out


def refusal(path: str, error: CommandError) -> dict[str, Any]:
    return {"id": error.command_id, "command": _clip(path), "ok": False, "error": str(error)}


def busy(request: Request, waiting: int) -> dict[str, Any]:
    """A command not run: `waiting` commands wait for the daemon already. Send it again."""
    return {
        "id": request.id,
        "command": request.command,
        "ok": False,
        "busy": True,
        "error": f"busy: {waiting} commands are waiting; not run, send it again later",
    }


def _kind(value: object) -> str:
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    names |= {list: "a list", dict: "an object"}
    kind = names.get(type(value), type(value).__name__)
    if isinstance(value, bool | int | float | str):
        return f"{kind} {_clip(repr(value))}"
    return kind


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
    commands_busy: int = 0,
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
                # a cap set from above (circuits/limit) in force, amperes per phase, or null
                "cap_a": _cap_a(decision, cid),
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
        "commands_busy": commands_busy,
    }


def _cap_a(decision: Decision, circuit: str) -> float | None:
    cap = decision.external_caps.get(circuit)
    return None if cap is None else round(cap.limit_a, 2)


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


def finding_event(f: Finding, wall: float) -> dict[str, Any]:
    """A fire-risk finding; a critical one has cut its bay (held until staff clear it)."""
    return {
        "wall": wall,
        "bay": f.bay,
        "session": int(f.session_id) if f.session_id.isdigit() else f.session_id,
        "card": f.card,
        "kind": str(f.kind),
        "severity": str(f.severity),
        "since_s": round(f.since_s, 1),
        "seen": f.seen,
        "held": f.severity is Severity.CRITICAL,
    }
