"""Command messages: every way a payload can be wrong gets an answer that says how."""

from __future__ import annotations

import pytest

from chargectl.outputs.mqtt_topics import COMMANDS, CommandError, answer, parse_command, refusal

KNOWN = list(COMMANDS)


def refused(path: str, payload: bytes, **kw: bool) -> CommandError:
    with pytest.raises(CommandError) as info:
        parse_command(path, payload, KNOWN, **kw)
    return info.value


def test_a_good_command_keeps_its_body_and_id() -> None:
    req = parse_command("sessions/stop", b'{"bay": "pile-a1/3", "id": "op-7"}', KNOWN)
    assert (req.command, req.body, req.id) == ("sessions/stop", {"bay": "pile-a1/3"}, "op-7")


def test_an_empty_object_is_a_command_without_fields() -> None:
    req = parse_command("alarm/clear", b"{}", KNOWN)
    assert (req.body, req.id) == ({}, None)


@pytest.mark.parametrize("payload", [b"", b"  ", b"\n"])
def test_an_empty_message_is_not_a_command(payload: bytes) -> None:
    # An empty publish is how a client deletes a retained message: it must never clear an
    # alarm (the review cleared a latched smoke alarm so).
    assert "empty message is not a command" in str(refused("alarm/clear", payload))


@pytest.mark.parametrize(
    ("path", "payload", "message", "command_id"),
    [
        ("sessions/stop", b"\xff\xfe", "payload is not UTF-8 text (byte 0)", None),
        ("sessions/stop", b"stop p/1", "payload is not JSON: Expecting value at column 1", None),
        ("sessions/stop", b'["pile-a1/3"]', "payload must be a JSON object, got a list", None),
        ("sessions/stop", b'"pile-a1/3"', "must be a JSON object, got a string 'pile-a1/3'", None),
        ("sessions/stop", b'{"id": [1]}', "'id' must be a string or a number, got a list", None),
        ("sessions/stop", b'{"id": true}', "'id' must be a string or a number, got a bool", None),
        ("sessions/stop", b'{"id": 4}', "missing field 'bay' (a string)", 4),
        ("sessions/stop", b'{"id": "x", "bay": 3}', "'bay' must be a string, got a number 3", "x"),
        ("bays/clear-fault", b'{"bay": null}', "field 'bay' must be a string, got null", None),
        ("sessions/stop", b'{"bay": "p/1", "bya": 1}', "unknown field 'bya'; known: id, bay", None),
        ("alarm/clear", b'{"force": true}', "unknown field 'force'; known: id", None),
        ("sessions/stp", b'{"id": 9}', "unknown command 'sessions/stp'; known: alarm/clear, ", 9),
    ],
)  # fmt: skip
def test_a_bad_payload_is_refused_with_the_reason(
    path: str, payload: bytes, message: str, command_id: object
) -> None:
    err = refused(path, payload)
    assert message in str(err)
    assert err.command_id == command_id


def test_a_retained_command_is_refused() -> None:
    # Else the broker would hand it over again at every reconnect.
    err = refused("alarm/clear", b'{"id": 1}', retained=True)
    assert "retained" in str(err)
    assert err.command_id == 1
    assert "retained" in str(refused("alarm/clear", b"", retained=True))


def test_a_command_of_the_daemon_outside_the_table_is_passed_through() -> None:
    req = parse_command("bays/priority", b'{"bay": "x", "level": 2}', [*KNOWN, "bays/priority"])
    assert req.body == {"bay": "x", "level": 2}


def test_answers_carry_the_id_the_command_and_ok_or_the_error() -> None:
    req = parse_command("sessions/stop", b'{"bay": "pile-a1/3", "id": 12}', KNOWN)
    assert answer(req, 200, {"stopped": True}) == {
        "id": 12,
        "command": "sessions/stop",
        "ok": True,
        "result": {"stopped": True},
    }
    assert answer(req, 404, {"error": "unknown bay 'pile-a1/3'"}) == {
        "id": 12,
        "command": "sessions/stop",
        "ok": False,
        "error": "unknown bay 'pile-a1/3'",
    }
    err = refused("sessions/stop", b'{"id": "a"}')
    assert refusal("sessions/stop", err) == {
        "id": "a",
        "command": "sessions/stop",
        "ok": False,
        "error": "missing field 'bay' (a string)",
    }
