"""The simulator's control API: JSON over HTTP/1.1 on loopback (asyncio streams, no framework).

    GET  /health                 {"ok": true, "time": ...}
    GET  /status                 time, speed, virtual, bus endpoints, scenario progress
    GET  /truth[?bays=0]         the physical truth (circuits, breakers, trips, wallboxes, bays)
    GET  /trips                  every breaker trip recorded
    GET  /bays/<bay>             one bay's truth (`/bays/pile-a/3`, `/bays/wb-1`)
    GET  /devices                every device: bus, unit, powered, protocol faults, counters
    GET  /devices/<id>           the same plus the model's snapshot (every write received)
    GET  /actions                the action vocabulary (names, parameters, defaults)
    POST /action                 one action {"do": ..., ...} (or a list of them, in order)
    POST /advance                {"seconds": S} on a virtual clock; answers the trips

Errors answer {"error": "..."} with 400 (bad input), 404 (no such path), 405 (wrong method),
409 (advance in real time) or 413 (body too big). One request per connection is enough for
tests and curl; keep-alive is honoured when asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from chargectl.sim.actions import ACTIONS, REQUIRED, ActionError, apply
from chargectl.sim.runner import Simulator
from chargectl.sim.world import WorldError

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20
READ_TIMEOUT_S = 10.0
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           409: "Conflict", 413: "Payload Too Large", 500: "Internal Server Error"}  # fmt: skip


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ControlApi:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._lock = asyncio.Lock()  # one mutation at a time (advance yields to the loop)

    async def start(self, host: str, port: int) -> int:
        """Listen (port 0: a free port); returns the bound port."""
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"control API: loopback only, got host {host!r}")
        self._server = await asyncio.start_server(self._client, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    # ------------------------------------------------------------------ HTTP
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    request = await asyncio.wait_for(_read_request(reader), READ_TIMEOUT_S)
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    return
                except HttpError as exc:
                    writer.write(_response(exc.status, {"error": str(exc)}, False))
                    await writer.drain()
                    return
                if request is None:
                    return
                method, target, headers, body = request
                try:
                    status, payload = 200, await self._route(method, target, body)
                except HttpError as exc:
                    status, payload = exc.status, {"error": str(exc)}
                except Exception:  # a bug: answer 500, keep serving
                    log.exception("control API: %s %s failed", method, target)
                    status, payload = 500, {"error": "internal error (see the simulator's log)"}
                keep = headers.get("connection", "").lower() == "keep-alive"
                writer.write(_response(status, payload, keep))
                await writer.drain()
                if not keep:
                    return
        except ConnectionError:
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _route(self, method: str, target: str, body: bytes) -> Any:
        url = urlsplit(target)
        path = unquote(url.path).rstrip("/") or "/"
        query = parse_qs(url.query)
        sim = self.sim
        gets = {
            "/health": lambda: {"ok": True, "time": sim.world.now},
            "/status": sim.status,
            "/trips": lambda: [t.as_dict() for t in sim.world.breakers.trips],
            "/devices": sim.devices,
            "/actions": describe_actions,
            "/truth": lambda: sim.world.truth(bays=query.get("bays", ["1"])[0] not in ("0", "no")),
        }
        if path in gets or path.startswith(("/bays/", "/devices/")):
            if method != "GET":
                raise HttpError(405, f"{path}: use GET")
            try:
                if path.startswith("/bays/"):
                    bay = path.removeprefix("/bays/")
                    if bay in sim.world.wallboxes:
                        return sim.world.truth(bays=False)["wallboxes"][bay]
                    return sim.world.bay_truth(bay)
                if path.startswith("/devices/"):
                    return sim.device(path.removeprefix("/devices/"))
            except (WorldError, ActionError) as exc:
                raise HttpError(404, str(exc)) from None
            return gets[path]()
        if path in ("/action", "/advance"):
            if method != "POST":
                raise HttpError(405, f"{path}: use POST with a JSON body")
            data = _json(body)
            async with self._lock:
                if path == "/action":
                    return self._actions(data)
                return await self._advance(data)
        raise HttpError(404, f"no such path {path!r}; see docs/simulator.md")

    def _actions(self, data: Any) -> Any:
        items = data if isinstance(data, list) else [data]
        for i, item in enumerate(items):
            where = f"action[{i}]" if isinstance(data, list) else "action"
            try:
                apply(self.sim, item, where)
            except ActionError as exc:
                raise HttpError(400, f"{exc} ({i} of {len(items)} applied)") from None
        return {"ok": True, "applied": len(items), "time": self.sim.world.now}

    async def _advance(self, data: Any) -> Any:
        if not self.sim.virtual:
            raise HttpError(409, "advance: the simulator runs in real time (start it --virtual)")
        seconds = data.get("seconds") if isinstance(data, dict) else None
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise HttpError(400, f"advance.seconds: a number >= 0 expected, got {seconds!r}")
        if seconds > 7 * 86400:
            raise HttpError(400, f"advance.seconds: at most a week per call, got {seconds}")
        trips = await self.sim.advance_virtual(float(seconds))
        return {"time": self.sim.world.now, "trips": [t.as_dict() for t in trips]}


def describe_actions() -> dict[str, Any]:
    return {
        a.name: {
            "help": a.help,
            "params": {
                p.name: {"required": True}
                if p.default is REQUIRED
                else {"default": p.default, "required": False}
                for p in a.params
            },
        }
        for a in ACTIONS.values()
    }


def _json(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise HttpError(400, f"body: not JSON: {exc}") from None


async def _read_request(
    reader: asyncio.StreamReader,
) -> tuple[str, str, dict[str, str], bytes] | None:
    line = await reader.readline()
    if not line:
        return None
    parts = line.decode("latin-1").split()
    if len(parts) != 3:
        raise ConnectionError("bad request line")
    method, target, _version = parts
    headers: dict[str, str] = {}
    while True:
        h = await reader.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        name, _, value = h.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise ConnectionError("bad content-length") from None
    if length < 0:
        raise ConnectionError("bad content-length")
    if length > MAX_BODY:
        raise HttpError(413, f"body: at most {MAX_BODY} bytes, got {length}")
    body = await reader.readexactly(length) if length else b""
    return method.upper(), target, headers, body


def _response(status: int, payload: Any, keep_alive: bool) -> bytes:
    body = json.dumps(payload, allow_nan=False).encode() + b"\n"
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    return head.encode() + body
