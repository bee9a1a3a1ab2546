"""The daemon's small local API: loopback HTTP with JSON bodies.

Served from its own thread (like the metrics endpoint), so a slow client never stalls the
control loop: reads return the snapshot the loop last published; commands are handed to the
loop and answered when the loop has carried them out.

    GET  /status                 the latest snapshot (circuits, bays, devices, alarms)
    POST /sessions/stop          {"bay": "pile-a/3"}  -> {"stopped": true|false}
    POST /alarm/clear            staff clear a smoke / e-stop alarm
    POST /bays/clear-fault       {"bay": "pile-a/3"}  -> reset a latched fault or welded flag

Errors: 400 with {"error": ...} for a bad body, 404 for an unknown path or bay, 503 while the
loop cannot answer.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Command = Callable[[Mapping[str, Any]], Coroutine[Any, Any, tuple[int, dict[str, Any]]]]
MAX_BODY = 64 * 1024


class ApiServer:
    def __init__(self, host: str, port: int, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._snapshot: bytes = b"{}"
        self._commands: dict[str, Command] = {}
        self._httpd = ThreadingHTTPServer((host, port), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="api", daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def route(self, path: str, command: Command) -> None:
        self._commands[path] = command

    def publish(self, snapshot: Mapping[str, Any]) -> None:
        """Called by the loop; the bytes are swapped in whole (readers never see half)."""
        self._snapshot = json.dumps(snapshot, separators=(",", ":")).encode()

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _send(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _json(self, code: int, obj: Mapping[str, Any]) -> None:
                self._send(code, json.dumps(obj).encode())

            def do_GET(self) -> None:
                if self.path == "/status":
                    self._send(200, api._snapshot)
                else:
                    self._json(404, {"error": f"no such path: {self.path}"})

            def do_POST(self) -> None:
                command = api._commands.get(self.path)
                if command is None:
                    self._json(404, {"error": f"no such path: {self.path}"})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self._json(400, {"error": "body too large"})
                    return
                raw = self.rfile.read(length) if length else b"{}"
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError as exc:
                    self._json(400, {"error": f"body is not JSON: {exc}"})
                    return
                if not isinstance(body, dict):
                    self._json(400, {"error": "body must be a JSON object"})
                    return
                future = asyncio.run_coroutine_threadsafe(command(body), api._loop)
                try:
                    code, answer = future.result(timeout=10)
                except FutureTimeout:
                    future.cancel()
                    self._json(503, {"error": "the control loop did not answer in time"})
                    return
                self._json(code, answer)

        return Handler
