"""Hostile and flooding command traffic through a real mosquitto: every message answered or
refused, the link never dropped, nothing run that was not a command, a burst never lost."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from chargectl.outputs.api import Command
from chargectl.outputs.mqtt import COMMAND_QUEUE
from tests.mqtt.broker import SHED, Broker, Operator, operator
from tests.mqtt.test_link import RESULT, STATUS, Daemonish, running, settings, until

pytestmark = pytest.mark.timeout(90)
CMD = f"chargectl/{SHED}/cmd"


async def answers(op: Operator, n: int, within: float = 20.0) -> list[dict[str, Any]]:
    return [json.loads(await op.payload(RESULT, within)) for _ in range(n)]


HOSTILE: list[tuple[str, bytes, str]] = [
    ("sessions/stop", b'{"bay": "pile-a1/3", "id": NaN}', "NaN: only finite numbers"),
    ("sessions/stop", b'{"bay": "pile-a1/3", "id": Infinity}', "Infinity"),
    ("sessions/stop", b'{"bay": "pile-a1/3", "id": -Infinity}', "-Infinity"),
    ("sessions/stop", b'{"bay": "pile-a1/3", "id": 1e999}', "beyond a float"),
    ("alarm/clear", b'{"x": [1, NaN]}', "NaN"),
    ("alarm/clear", b"[" * 10_000, "nested too deeply"),
    ("alarm/clear", b'{"a":' * 2_000 + b"1" + b"}" * 2_000, "nested too deeply"),
    ("alarm/clear", b"[" * 200_000, "payload too large"),
    ("alarm/clear", b'{"id": "' + b"x" * 1_000_000 + b'"}', "payload too large"),
    ("alarm/clear", b'{"id": ' + b"7" * 5_000 + b"}", "not usable JSON"),
    ("alarm/clear", b"\xff" * 100, "not UTF-8"),
    ("alarm/clear", b'{"id": "\xed\xa0\x80"}', "not UTF-8"),  # a UTF-8-encoded surrogate
    ("alarm/clear", b"null", "got null"),
    ("alarm/clear", b"12", "got a number 12"),
    ("alarm/clear", b'"clear"', "got a string 'clear'"),
    ("alarm/clear", b"\x00", "not JSON"),
    ("sessions/stop", b'{"bay": "pile-a1/3", "id": {"nested": 1}}', "'id' must be"),
    ("sessions/stop", b'{"bay": "pile-a1/3", "bay2": 1}', "unknown field 'bay2'"),
    ("x" * 300, b"{}", "unknown command 'xxxx"),
]


async def test_hostile_payloads_are_refused_and_the_link_stays(
    broker: Broker, tmp_path: Path
) -> None:
    daemon = Daemonish()
    async with (
        operator(broker.port) as op,
        running(settings(tmp_path, broker.port), tmp_path, daemon=daemon) as link,
    ):
        await op.next(STATUS)
        await until(lambda: link.subscribed)
        for path, payload, error in HOSTILE:
            await op.send(f"{CMD}/{path}", payload)
            got = json.loads(await op.payload(RESULT))
            assert got["ok"] is False and error in got["error"], (path, payload[:40], got)
            assert len(json.dumps(got)) < 1000  # nothing of a huge payload is echoed
        await op.send(f"{CMD}/sessions/stop", b'{"bay": "pile-a1/3", "id": 1e308}')
        got = json.loads(await op.payload(RESULT))
        assert (got["ok"], got["id"]) == (True, 1e308)  # a finite number is still an id
        assert link.connects == 1 and link.failures == 0
        assert link.refused == len(HOSTILE)
        assert daemon.calls == [("stop", {"bay": "pile-a1/3"})]


async def test_a_burst_of_500_is_answered_every_one(broker: Broker, tmp_path: Path) -> None:
    """The audit's burst: 394 of 500 vanished (aiomqtt's queue of 100 dropped the rest after
    paho had acknowledged them, while each answer waited ~40 ms on Nagle)."""
    daemon = Daemonish()
    async with (
        operator(broker.port) as op,
        running(settings(tmp_path, broker.port), tmp_path, daemon=daemon) as link,
    ):
        await until(lambda: link.subscribed)
        await asyncio.gather(
            *(
                op.send(f"{CMD}/sessions/stop", json.dumps({"bay": "pile-a1/3", "id": i}))
                for i in range(500)
            )
        )
        got = await answers(op, 500)
        assert sorted(a["id"] for a in got) == list(range(500))  # each once
        ran = [a for a in got if a["ok"]]
        busy = [a for a in got if not a["ok"]]
        assert all(a.get("busy") is True and a["error"].startswith("busy") for a in busy)
        assert len(daemon.calls) == len(ran) and link.busy == len(busy)
        await until(lambda: link.answered == 500)
        assert link.connects == 1
        with pytest.raises(TimeoutError):
            await op.payload(RESULT, within=0.3)  # and not one more


class Gate(Daemonish):
    """A daemon that holds every stop until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    def commands(self) -> dict[str, Command]:
        table = super().commands()
        stop = table["sessions/stop"]

        async def held(body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
            await self.gate.wait()
            return await stop(body)

        return table | {"sessions/stop": held}


async def test_beyond_the_queue_commands_are_answered_busy_and_counted(
    broker: Broker, tmp_path: Path
) -> None:
    daemon = Gate()
    n = COMMAND_QUEUE + 1 + 20  # one running, the queue full, 20 more
    async with (
        operator(broker.port) as op,
        running(settings(tmp_path, broker.port), tmp_path, daemon=daemon) as link,
    ):
        await until(lambda: link.subscribed)
        for i in range(n):
            await op.send(f"{CMD}/sessions/stop", json.dumps({"bay": "pile-a1/3", "id": i}))
        busy = await answers(op, 20)  # at once, while the daemon is held
        assert [a["id"] for a in busy] == list(range(COMMAND_QUEUE + 1, n))
        assert all(a["busy"] and not a["ok"] for a in busy)
        assert link.busy == 20 and daemon.calls == []
        daemon.gate.set()
        ran = await answers(op, COMMAND_QUEUE + 1)
        assert [a["id"] for a in ran] == list(range(COMMAND_QUEUE + 1))  # in order
        assert all(a["ok"] for a in ran)
        await until(lambda: link.answered == n)
        assert len(daemon.calls) == COMMAND_QUEUE + 1
        assert link.connects == 1
