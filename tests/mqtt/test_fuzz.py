"""Fuzz campaign: Hypothesis-made payloads, each published to a command topic through a real
mosquitto and answered. 0 tracebacks, the link never drops (one connect), nothing run that
is not a well-formed command. 1,000 payloads by default, 10,000 under `-m slow`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargectl.outputs.api import Command
from chargectl.outputs.mqtt import MqttLink
from tests.mqtt.broker import SHED, Broker, Operator, operator
from tests.mqtt.test_link import RESULT, Daemonish, running, until
from tests.mqtt.test_link import settings as link_settings

CMD = f"chargectl/{SHED}/cmd"
PATHS = ["sessions/stop", "alarm/clear", "bays/clear-fault", "alarm", "sessions/stop/now", "x"]


class Recording(Daemonish):
    """Every command recorded and carried out (the base's clear-fault is a bug on purpose)."""

    def commands(self) -> dict[str, Command]:
        table = super().commands()

        async def clear_fault(body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
            self.calls.append(("fault", dict(body)))
            return 200, {"cleared": True}

        return table | {"bays/clear-fault": clear_fault}


class Campaign:
    """The broker, the link and an operator on an event loop in a thread of their own; each
    example publishes one payload and waits for its answer."""

    def __init__(self, broker: Broker, folder: Path) -> None:
        self.daemon = Recording()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.stack = contextlib.AsyncExitStack()
        self.link: MqttLink | None = None
        self.op: Operator | None = None
        self.sent = 0
        self.valid: list[bytes] = []
        self.thread.start()
        self._call(self._open(broker, folder))

    def _call(self, coro: Any, within: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(within)

    async def _open(self, broker: Broker, folder: Path) -> None:
        self.op = await self.stack.enter_async_context(operator(broker.port, RESULT))
        s = link_settings(folder, broker.port)
        self.link = await self.stack.enter_async_context(running(s, folder, daemon=self.daemon))
        await until(lambda: self.link is not None and self.link.subscribed)

    def roundtrip(self, path: str, payload: bytes) -> dict[str, Any]:
        async def go() -> dict[str, Any]:
            assert self.op is not None
            await self.op.send(f"{CMD}/{path}", payload)
            return dict(json.loads(await self.op.payload(RESULT, 10.0)))

        self.sent += 1
        return dict(self._call(go()))

    def close(self) -> None:
        self._call(self.stack.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def is_command(path: str, payload: bytes) -> bool:
    """An oracle written apart from parse_command: what the daemon may be asked to run."""
    if path not in ("sessions/stop", "alarm/clear", "bays/clear-fault") or len(payload) > 16384:
        return False
    try:
        body = json.loads(payload.decode("utf-8"), parse_constant=lambda c: math.nan)
    except (ValueError, RecursionError):
        return False
    if not isinstance(body, dict):
        return False
    cid = body.pop("id", None)
    if isinstance(cid, bool) or not isinstance(cid, str | int | float | None):
        return False
    if isinstance(cid, float) and not math.isfinite(cid):
        return False
    if any(isinstance(v, float) and not math.isfinite(v) for v in body.values()):
        return False
    fields = () if path == "alarm/clear" else ("bay",)
    return set(body) == set(fields) and all(isinstance(body[f], str) for f in fields)


json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_value = st.recursive(
    json_leaf,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "text", "json", "object", "mutant", "deep", "big"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "text":
        return draw(st.text(max_size=100)).encode("utf-8", "surrogatepass")
    if kind == "json":  # any JSON value, NaN and Infinity included
        return json.dumps(draw(json_value)).encode()
    if kind == "object":  # the right shape, hostile values
        body = {"bay": draw(json_value), "id": draw(json_value)}
        body |= draw(st.dictionaries(st.text(max_size=6), json_value, max_size=2))
        return json.dumps(body).encode()
    if kind == "mutant":  # a valid command, cut or with bytes flipped
        raw = bytearray(json.dumps({"bay": "pile-a1/3", "id": draw(st.integers())}).encode())
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(raw) - 1))
            raw[i] = draw(st.integers(0, 255))
        return bytes(raw[: draw(st.integers(0, len(raw)))])
    if kind == "deep":
        depth = draw(st.integers(500, 8000))
        opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
        return opener * depth + b"0" + closer * draw(st.integers(0, depth))
    return b'{"id": "' + b"x" * draw(st.integers(16_000, 200_000)) + b'"}'


@pytest.fixture
def campaign(broker: Broker, tmp_path: Path) -> Iterator[Campaign]:
    c = Campaign(broker, tmp_path)
    try:
        yield c
    finally:
        c.close()


def run_campaign(campaign: Campaign, caplog: pytest.LogCaptureFixture, examples: int) -> None:
    caplog.set_level(logging.INFO, logger="chargectl")

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        # The default run is the same every time (CI must not turn red by chance); the
        # larger runs of `make test-long` explore anew.
        derandomize=examples <= 1000,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(path=st.sampled_from(PATHS), payload=payloads())
    def one(path: str, payload: bytes) -> None:
        got = campaign.roundtrip(path, payload)
        assert got["command"] == path[:120] or got["command"].startswith(path[:120])
        if is_command(path, payload):
            campaign.valid.append(payload)
        else:
            assert got["ok"] is False and got["error"], (path, payload[:80], got)

    one()
    link = campaign.link
    assert link is not None
    assert campaign.sent >= examples
    assert link.connects == 1 and link.failures == 0  # the link never dropped
    assert link.answered == campaign.sent
    assert len(campaign.daemon.calls) == len(campaign.valid)  # nothing else ran
    assert link.refused >= examples * 0.9  # the campaign is of malformed payloads
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert bad == []  # 0 tracebacks


@pytest.mark.timeout(120)
def test_fuzz_a_thousand_payloads(campaign: Campaign, caplog: pytest.LogCaptureFixture) -> None:
    run_campaign(campaign, caplog, 1000)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_fuzz_ten_thousand_payloads(campaign: Campaign, caplog: pytest.LogCaptureFixture) -> None:
    run_campaign(campaign, caplog, 10_000)
