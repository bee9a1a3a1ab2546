"""The link against a real mosquitto (the shipped ACL, shed user `campus`): status and Will,
state and events, commands and their answers, reconnects, and the outbox while the broker is
away."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from chargectl.config.schema import MqttSettings
from chargectl.control.layout import Layout
from chargectl.outputs.api import Command
from chargectl.outputs.mqtt import MqttLink, MqttReporter, Outbox
from chargectl.runtime.clock import RealClock
from chargectl.sessions.manager import TapOutcome, TapResult
from tests.mqtt.broker import PASSWORDS, SHED, Broker, Operator, Proxy, free_port, operator
from tests.mqtt.conftest import Fed, decision, tick

pytestmark = pytest.mark.timeout(60)

STATUS = f"chargectl/{SHED}/status"
RESULT = f"chargectl/{SHED}/cmd/result"
TAP = f"chargectl/{SHED}/events/tap"


def settings(folder: Path, port: int, **kw: Any) -> MqttSettings:
    (folder / "mqtt.pw").write_text(PASSWORDS[SHED] + "\n")
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "username": SHED,
        "password_file": "mqtt.pw",
        "keepalive_s": 5,
        "reconnect_max_s": 0.3,
    }
    return MqttSettings(**(base | kw))


class Daemonish:
    """Commands with the daemon's contract: (code, body); records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.bays = {"pile-a1/3", "pile-a1/4"}

    def commands(self) -> dict[str, Command]:
        async def stop(body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
            self.calls.append(("stop", dict(body)))
            if body["bay"] not in self.bays:
                return 404, {"error": f"unknown bay {body['bay']!r}"}
            return 200, {"stopped": True}

        async def clear(body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
            self.calls.append(("clear", dict(body)))
            return 200, {"cleared": False}

        async def broken(body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
            raise RuntimeError("a bug in the daemon")

        return {"sessions/stop": stop, "alarm/clear": clear, "bays/clear-fault": broken}


@contextlib.asynccontextmanager
async def running(
    s: MqttSettings, folder: Path, outbox: Outbox | None = None, daemon: Daemonish | None = None
) -> AsyncIterator[MqttLink]:
    link = MqttLink(
        s,
        SHED,
        Outbox(100) if outbox is None else outbox,  # an empty Outbox is falsy
        commands=(daemon or Daemonish()).commands(),
        clock=RealClock(),
        base_dir=folder,
        rng=random.Random(5),
        io_timeout_s=3.0,
        reconnect_base_s=0.05,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(link.run(stop), name="link")
    try:
        yield link
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def until(pred: Any, within: float = 10.0) -> None:
    """Poll a condition on the link (it has no event for each of them)."""
    async with asyncio.timeout(within):
        while not pred():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_online_then_offline_by_will_when_the_connection_dies(
    broker: Broker, tmp_path: Path
) -> None:
    proxy = Proxy(broker.port)
    await proxy.start()
    try:
        async with (
            operator(broker.port) as op,
            running(settings(tmp_path, proxy.port), tmp_path) as link,
        ):
            assert await op.payload(STATUS) == b"online"
            proxy.cut()  # no DISCONNECT reaches the broker: it publishes the Will
            assert await op.payload(STATUS) == b"offline"
            assert await op.payload(STATUS) == b"online"  # reconnected by itself
            assert link.connects == 2
    finally:
        await proxy.close()


async def test_status_is_retained_and_a_clean_stop_says_offline(
    broker: Broker, tmp_path: Path
) -> None:
    async with running(settings(tmp_path, broker.port), tmp_path) as link:
        await until(lambda: link.connected)
        async with operator(broker.port) as late:  # subscribes after the fact
            m = await late.next(STATUS)
            assert (m.payload, m.retain) == (b"online", True)
    async with operator(broker.port) as after:
        m = await after.next(STATUS)
        assert (m.payload, m.retain) == (b"offline", True)


async def test_state_and_events_reach_the_broker(
    broker: Broker, tmp_path: Path, layout: Layout
) -> None:
    box = Outbox(100)
    rep = Fed(MqttReporter(SHED, layout, box, state_interval_s=10.0), layout)
    rep.up = {"pile-a1": True}
    async with operator(broker.port) as op, running(settings(tmp_path, broker.port), tmp_path, box):
        rep.report(tick(layout, 0.0, decision(layout)))
        state = await op.next(f"chargectl/{SHED}/state")
        body = json.loads(state.payload)
        assert body["bays"]["idle"] == layout.n_bays
        assert [c["id"] for c in body["circuits"]] == list(layout.circuit_ids)
        rep.taps = [TapResult("pile-a1/3", "04A1B2C3", TapOutcome.BLOCKED, None)]
        rep.report(tick(layout, 1.0, decision(layout, overloaded=("main",))))
        tap = json.loads(await op.payload(TAP))
        assert (tap["bay"], tap["result"]) == ("pile-a1/3", "blocked")
        over = json.loads(await op.payload(f"chargectl/{SHED}/events/overload"))
        assert (over["circuit"], over["active"]) == ("main", True)
    async with operator(broker.port) as late:  # the state is retained for newcomers
        m = await late.next(f"chargectl/{SHED}/state")
        assert m.retain
        assert json.loads(m.payload)["shed"] == SHED


async def command(op: Operator, path: str, payload: bytes | str) -> dict[str, Any]:
    await op.send(f"chargectl/{SHED}/cmd/{path}", payload)
    return dict(json.loads(await op.payload(RESULT)))


STOPPED, NOT_CLEARED = {"stopped": True}, {"cleared": False}
UNKNOWN_BAY = "unknown bay 'pile-z/1'"


async def test_commands_are_run_and_answered(broker: Broker, tmp_path: Path) -> None:
    daemon = Daemonish()
    async with (
        operator(broker.port) as op,
        running(settings(tmp_path, broker.port), tmp_path, daemon=daemon) as link,
    ):
        await op.next(STATUS)
        await until(lambda: link.subscribed)
        got = await command(op, "sessions/stop", '{"bay": "pile-a1/3", "id": "r1"}')
        assert got == {
            "id": "r1",
            "command": "sessions/stop",
            "ok": True,
            "result": {"stopped": True},
        }
        got = await command(op, "alarm/clear", "{}")
        assert got == {
            "id": None,
            "command": "alarm/clear",
            "ok": True,
            "result": {"cleared": False},
        }
        # An empty message (how a client deletes a retained one) is answered, never run.
        calls = len(daemon.calls)
        got = await command(op, "alarm/clear", "")
        assert got["ok"] is False and "empty message is not a command" in got["error"]
        assert len(daemon.calls) == calls
        got = await command(op, "sessions/stop", '{"bay": "pile-z/1", "id": 2}')
        assert got == {
            "id": 2,
            "command": "sessions/stop",
            "ok": False,
            "error": "unknown bay 'pile-z/1'",
        }
        assert daemon.calls == [
            ("stop", {"bay": "pile-a1/3"}),
            ("clear", {}),
            ("stop", {"bay": "pile-z/1"}),
        ]


async def test_bad_payloads_are_answered_and_the_link_goes_on(
    broker: Broker, tmp_path: Path
) -> None:
    daemon = Daemonish()
    async with (
        operator(broker.port) as op,
        running(settings(tmp_path, broker.port), tmp_path, daemon=daemon) as link,
    ):
        await op.next(STATUS)
        await until(lambda: link.subscribed)
        cases: list[tuple[str, bytes | str, str]] = [
            ("sessions/stop", b"\xc3\x28", "payload is not UTF-8 text"),
            ("sessions/stop", "stop it", "payload is not JSON"),
            ("sessions/stop", "[1, 2]", "payload must be a JSON object, got a list"),
            ("sessions/stop", '{"id": 5}', "missing field 'bay' (a string)"),
            ("sessions/stop", '{"bay": 3}', "field 'bay' must be a string"),
            ("alarm/clear/now", "{}", "unknown command 'alarm/clear/now'"),
            ("bays/clear-fault", '{"bay": "pile-a1/3"}', "the command failed: RuntimeError"),
        ]
        for path, payload, error in cases:
            got = await command(op, path, payload)
            assert got["ok"] is False, got
            assert error in got["error"], got
            assert got["command"] == path
        got = await command(op, "sessions/stop", '{"bay": "pile-a1/4"}')
        assert got["ok"] is True
        assert link.connects == 1  # never dropped the connection over a bad message
        assert daemon.calls == [("stop", {"bay": "pile-a1/4"})]


async def test_a_retained_command_is_refused_not_run(broker: Broker, tmp_path: Path) -> None:
    daemon = Daemonish()
    async with operator(broker.port) as op:
        await op.send(f"chargectl/{SHED}/cmd/alarm/clear", '{"id": "old"}', retain=True)
        async with running(settings(tmp_path, broker.port), tmp_path, daemon=daemon):
            got = json.loads(await op.payload(RESULT))
        await op.send(f"chargectl/{SHED}/cmd/alarm/clear", "", retain=True)  # clear it
    assert got["id"] == "old"
    assert "retained" in got["error"]
    assert daemon.calls == []


async def test_reconnects_after_the_broker_restarts(broker: Broker, tmp_path: Path) -> None:
    box = Outbox(100)
    async with running(settings(tmp_path, broker.port), tmp_path, box) as link:
        await until(lambda: link.connected)
        broker.stop()
        await until(lambda: not link.connected)
        await asyncio.sleep(0.5)  # several failed attempts while it is away
        assert link.failures >= 2
        broker.start()
        await until(lambda: link.connects == 2)
        async with operator(broker.port) as op:
            assert await op.payload(STATUS) == b"online"


async def test_the_outbox_drops_the_oldest_while_the_broker_is_away(
    broker: Broker, tmp_path: Path, layout: Layout
) -> None:
    broker.stop()
    box = Outbox(5)
    rep = Fed(MqttReporter(SHED, layout, box, state_interval_s=1e9), layout)
    async with running(settings(tmp_path, broker.port), tmp_path, box) as link:
        await until(lambda: link.failures >= 2)
        # The tick goes on: report() is plain code, and only the newest 5 taps are kept.
        for n in range(12):
            rep.taps = [TapResult("pile-a1/1", f"{n:08X}", TapOutcome.UNKNOWN, None)]
            rep.report(tick(layout, float(n), decision(layout)))
        assert (box.dropped, len(box)) == (7, 6)  # 5 taps and the state
        assert link.published == 0
        broker.start()
        async with operator(broker.port) as op:
            await until(lambda: link.connected)
            cards = [json.loads(await op.payload(TAP))["card"] for _ in range(5)]
            state = json.loads(await op.payload(f"chargectl/{SHED}/state"))
    assert cards == [f"{n:08X}" for n in range(7, 12)]
    assert state["events_dropped"] == 0  # counted when the state was made: before the drops
    assert box.dropped == 7


async def test_tls_with_the_brokers_ca(broker: Broker, tmp_path: Path) -> None:
    s = settings(tmp_path, broker.tls_port, tls=True, ca_file=str(broker.ca))
    async with operator(broker.port) as op, running(s, tmp_path):
        assert await op.payload(STATUS) == b"online"


async def test_a_wrong_password_is_retried_and_a_fixed_file_is_read_again(
    broker: Broker, tmp_path: Path
) -> None:
    s = settings(tmp_path, broker.port)
    (tmp_path / "mqtt.pw").write_text("wrong\n")
    async with running(s, tmp_path) as link:
        await until(lambda: link.failures >= 3)
        assert link.connects == 0
        (tmp_path / "mqtt.pw").write_text(PASSWORDS[SHED])
        await until(lambda: link.connected)


async def test_a_missing_password_file_does_not_stop_the_link(tmp_path: Path) -> None:
    s = settings(tmp_path, free_port(), password_file="nowhere.pw")
    async with running(s, tmp_path) as link:
        await until(lambda: link.failures >= 3)
        assert link.connects == 0
