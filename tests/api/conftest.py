"""The API server for real on loopback, its commands recorded, its loop in a thread of its own
(as the daemon's loop is to the server's threads); raw-socket and JSON clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from chargectl.drivers.errors import DeviceDown
from chargectl.outputs.api import ApiServer, Command

TOKEN = "t0ken-for-the-tests-0123456789"


class Commands:
    """The daemon's three commands, recording what ran; `pile-z/1` is a device that is down."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.release = threading.Event()
        self.release.set()

    def table(self) -> dict[str, Command]:
        async def stop(body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
            self.calls.append(("stop", dict(body)))
            if body["bay"] == "pile-z/1":
                raise DeviceDown("pile-z", "down since 12:00; next probe in 5 s")
            if body["bay"] == "bug/1":
                raise RuntimeError("a bug in the daemon")
            while not self.release.is_set():  # noqa: ASYNC110 (set from the test's thread)
                await asyncio.sleep(0.01)
            return 200, {"stopped": True}

        async def clear(body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
            self.calls.append(("clear", dict(body)))
            return 200, {"cleared": True}

        async def fault(body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
            self.calls.append(("fault", dict(body)))
            return 200, {"cleared": True}

        return {"/sessions/stop": stop, "/alarm/clear": clear, "/bays/clear-fault": fault}


@dataclass
class Api:
    server: ApiServer
    commands: Commands
    token: str | None = None
    log: list[logging.LogRecord] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.port

    def raw(self, data: bytes, *, shut: bool = True, within: float = 5.0) -> bytes:
        """Send `data` as is, half-close (unless `shut` is False), read until the server closes."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=within) as s:
            s.sendall(data)
            if shut:
                with contextlib.suppress(OSError):  # the server may have answered and closed
                    s.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        auth: bool = True,
    ) -> tuple[int, dict[str, str], Any]:
        """A well-framed request; `headers` add to (or with a value of "" remove) the usual."""
        h = {"Host": f"127.0.0.1:{self.port}", "Content-Type": "application/json"}
        if self.token and auth:
            h["Authorization"] = f"Bearer {self.token}"
        if body is not None:
            h["Content-Length"] = str(len(body))
        for k, v in (headers or {}).items():
            h.pop(k, None)
            if v:
                h[k] = v
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
        return parse(self.raw(head.encode() + b"\r\n" + (body or b"")))

    def post(self, path: str, obj: Any, **kw: Any) -> tuple[int, dict[str, str], Any]:
        return self.request("POST", path, json.dumps(obj).encode(), **kw)


def parse(reply: bytes) -> tuple[int, dict[str, str], Any]:
    """An HTTP/1.x reply -> (code, headers lower-cased, JSON body); asserts it is one."""
    assert reply, "an empty reply"
    head, sep, body = reply.partition(b"\r\n\r\n")
    assert sep, f"no end of headers: {reply[:200]!r}"
    lines = head.decode("latin-1").split("\r\n")
    version, code, *_ = lines[0].split(" ", 2)
    assert version in ("HTTP/1.0", "HTTP/1.1"), lines[0]
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    assert headers["content-type"] == "application/json", headers
    assert int(headers["content-length"]) == len(body), (headers, body)
    return int(code), headers, json.loads(body)


class Records(logging.Handler):
    def __init__(self, into: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-loop", daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def serve(
    loop: asyncio.AbstractEventLoop,
    *,
    host: str = "127.0.0.1",
    token: str | None = None,
    started: bool = True,
    **kw: Any,
) -> Api:
    commands = Commands()
    server = ApiServer(host, 0, loop, token=token, **kw)
    for path, command in commands.table().items():
        server.route(path, command)
    if started:
        server.publish({"shed": "campus", "ticks": 1})
    api = Api(server, commands, token)
    handler = Records(api.log)
    logging.getLogger("chargectl.outputs.api").addHandler(handler)
    logging.getLogger("chargectl.outputs.api").setLevel(logging.DEBUG)
    server.start()
    return api


@pytest.fixture
def make_api(loop: asyncio.AbstractEventLoop) -> Iterator[Callable[..., Api]]:
    """`make_api(token=..., started=..., host=...)`: a server, closed after the test."""
    made: list[Api] = []

    def make(**kw: Any) -> Api:
        made.append(serve(loop, **kw))
        return made[-1]

    try:
        yield make
    finally:
        logger = logging.getLogger("chargectl.outputs.api")
        for a in made:
            a.server.close()
        for h in list(logger.handlers):
            if isinstance(h, Records):
                logger.removeHandler(h)


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    return make_api()


def tracebacks(api: Api) -> list[logging.LogRecord]:
    return [r for r in api.log if r.exc_info or r.levelno >= logging.ERROR]
