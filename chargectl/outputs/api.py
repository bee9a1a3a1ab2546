"""The daemon's small local API: HTTP with JSON bodies, for the staff's tools on the box.

Served from its own thread (like the metrics endpoint), so a slow client never stalls the
control loop: reads return the snapshot the loop last published; commands are handed to the
loop and answered when the loop has carried them out.

    GET  /status                 the latest snapshot (circuits, bays, devices, alarms)
    POST /sessions/stop          {"bay": "pile-a/3"}  -> {"stopped": true|false}
    POST /alarm/clear            staff clear a smoke / e-stop alarm
    POST /bays/clear-fault       {"bay": "pile-a/3"}  -> reset a fault, a weld, a fire-risk hold
    POST /circuits/limit         {"circuit": "main", "limit_a": 20, "ttl_s": 900}: a cap
    POST /bays/start             {"bay": "pile-a/3", "card": "04A1B2C3"}: as a tap there
    POST /cards/upsert, /cards/block   the central card list's changes, versioned
  and every other command of the MQTT table (docs/mqtt.md), with the same fields and answers.

Who may ask (checked in this order, for every request):
- bound to loopback (`127.0.0.1`, `localhost`, `::1`), a `Host` header must name loopback too:
  a web page that rebinds its own name to 127.0.0.1 sends its own name and is refused (403);
- a request with an `Origin` header comes from a web page (curl and the CLI send none): 403.
  So a page in a staff member's browser can neither clear a smoke alarm nor read the status;
- with a token (`api.token_file`; required to bind beyond loopback) every request carries
  `Authorization: Bearer <token>`, compared in constant time: 401 otherwise.
A command is a POST with `Content-Type: application/json` (415 otherwise: a form post and
`text/plain`, which a page may send without asking, never run), a `Content-Length` (411) of at
most `MAX_BODY` bytes (413), and a JSON object whose fields are those of the command
(`chargectl.outputs.mqtt_topics.COMMANDS`, 400). Until the first tick has run, commands get 503.

Every refusal is a JSON `{"error": ...}` with a 4xx or 5xx code, the connection closed after
it; nothing a client sends reaches a traceback. A client that goes away mid-request is
logged once (then counted in `disconnects`).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from chargectl.config.schema import Shed, is_loopback
from chargectl.drivers.errors import DeviceError
from chargectl.outputs.mqtt_topics import CommandError, check_fields, decode_json_object

log = logging.getLogger("chargectl.outputs.api")

Headers = Mapping[str, str] | None
Command = Callable[[Mapping[str, Any]], Coroutine[Any, Any, tuple[int, dict[str, Any]]]]
MAX_BODY = 16 * 1024  # a command is a few dozen bytes
MAX_CLIENTS = 32  # connections served at once; more are answered 503 and closed
CLIENT_TIMEOUT_S = 10.0  # a client that sends nothing this long is dropped
COMMAND_TIMEOUT_S = 10.0
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


class ApiRefused(Exception):
    """The API cannot be served as configured (beyond loopback without a token)."""


def read_token(shed: Shed) -> str | None:
    """The bearer token of `api.token_file` (relative to the config's folder), or None.

    A file that cannot be read, or holds no token, stops the start as a config problem
    (`ConfigError`: one line, exit 2)."""
    name = shed.api.token_file
    if name is None:
        return None
    from chargectl.config.load import ConfigError, Problem

    path = Path(name) if Path(name).is_absolute() else shed.source.parent / name
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(
            [Problem(str(shed.source), None, "api.token_file", f"cannot read {path}: {why}")]
        ) from None
    if len(token) < 16 or any(c.isspace() for c in token):
        raise ConfigError(
            [
                Problem(
                    str(shed.source),
                    None,
                    "api.token_file",
                    f"{path} must hold one token of at least 16 characters, without spaces",
                )
            ]
        )
    return token


def client_headers(shed: Shed) -> dict[str, str]:
    """What a staff command sends the daemon's API: the bearer token where there is one."""
    token = read_token(shed)
    return {} if token is None else {"Authorization": f"Bearer {token}"}


class ApiServer:
    def __init__(
        self,
        host: str,
        port: int,
        loop: asyncio.AbstractEventLoop,
        *,
        token: str | None = None,
        command_timeout_s: float = COMMAND_TIMEOUT_S,
        client_timeout_s: float = CLIENT_TIMEOUT_S,
    ) -> None:
        self.loopback = is_loopback(host)
        if not self.loopback and not token:
            raise ApiRefused(
                f"the API is bound beyond loopback ({host}) only with a token (api.token_file)"
            )
        self._loop = loop
        self._token = None if token is None else token.encode()
        self._snapshot: bytes | None = None  # None until the first tick: commands wait for it
        self._commands: dict[str, Command] = {}
        self.command_timeout_s = command_timeout_s
        self.client_timeout_s = client_timeout_s
        # What the tests and the logs look at.
        self.refused = 0  # requests answered with a 4xx or 5xx before any command ran
        self.disconnects = 0  # clients that went away mid-request
        self.errors = 0  # bugs: a request that raised in this module (logged with a traceback)
        self._count_lock = threading.Lock()
        self._httpd = _Server((host, port), self._handler(), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.1,), name="api", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def clients(self) -> int:
        """Connections being served now."""
        return self._httpd.active

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

    # -- bookkeeping, from the server's threads ----------------------------------------------
    def _count(self, name: str) -> int:
        with self._count_lock:
            n = int(getattr(self, name)) + 1
            setattr(self, name, n)
            return n

    def _gone(self, client: object, exc: BaseException) -> None:
        if self._count("disconnects") == 1:
            log.warning(
                "API: a client (%s) went away mid-request (%s); further ones are counted, "
                "not logged",
                client,
                type(exc).__name__,
            )

    def _authorized(self, header: str | None) -> bool:
        if self._token is None:
            return True
        scheme, _, given = (header or "").strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode("utf-8", "replace"), self._token)

    def _run(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Carry out a command on the loop; every failure is an answer (code, body)."""
        command = self._commands[path]
        try:
            future = asyncio.run_coroutine_threadsafe(command(body), self._loop)
        except RuntimeError:  # the loop is closed: the daemon is stopping
            return 503, {"error": "the daemon is stopping"}
        try:
            code, answer = future.result(timeout=self.command_timeout_s)
        except FutureTimeout:
            future.cancel()
            return 503, {"error": "the control loop did not answer in time"}
        except DeviceError as exc:
            return 503, {"error": f"the device did not do it: {exc}"}
        except Exception as exc:
            log.exception("API: %s failed", path)
            return 500, {"error": f"the command failed: {type(exc).__name__}"}
        return code, answer

    # -- the handler -----------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            timeout = api.client_timeout_s  # every read and write on the socket
            server_version = "chargectl"
            sys_version = ""
            _answered = False

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("API %s: " + format, self.address_string(), *args)

            # BaseHTTPRequestHandler answers framing it cannot parse (a bad request line,
            # headers too long or too many, an unknown method) through send_error: as JSON.
            def send_error(
                self, code: int, message: str | None = None, explain: str | None = None
            ) -> None:
                if self.request_version == "HTTP/0.9":
                    self.request_version = "HTTP/1.0"  # so that a status line and headers go out
                if self.command is None:
                    self.command = ""
                api._count("refused")
                text = message or HTTPStatus(code).phrase
                self._json(code, {"error": text})

            def parse_request(self) -> bool:
                if not super().parse_request():
                    if not self._answered:  # an empty request line: no answer was sent
                        self.send_error(400, "empty request line")
                    return False
                if self.request_version == "HTTP/0.9":
                    self.send_error(400, "HTTP/0.9 is not served: send HTTP/1.x")
                    return False
                return True

            def handle_one_request(self) -> None:
                self._answered = False
                super().handle_one_request()

            def finish(self) -> None:
                try:
                    super().finish()
                    _drain(self.connection)  # a body we did not read, trailing bytes
                except OSError:
                    pass

            def _json(self, code: int, obj: Mapping[str, Any], extra: Headers = None) -> None:
                self._send(code, json.dumps(obj).encode(), extra)

            def _send(self, code: int, body: bytes, extra: Headers = None) -> None:
                self._answered = True
                self.close_connection = True
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.send_header("Connection", "close")
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _refuse(self, code: int, error: str, extra: Headers = None) -> None:
                api._count("refused")
                self._json(code, {"error": error}, extra)

            def _admitted(self) -> bool:
                """Host, Origin and token: who may ask at all (see the module's docstring)."""
                if api.loopback:
                    host = self.headers.get("Host")
                    if host is not None and _host_name(host) not in _LOOPBACK_NAMES:
                        self._refuse(403, f"Host {host[:80]!r} is not this machine's loopback")
                        return False
                if self.headers.get("Origin") is not None:
                    self._refuse(403, "requests from web pages (with an Origin) are refused")
                    return False
                if not api._authorized(self.headers.get("Authorization")):
                    challenge = {"WWW-Authenticate": 'Bearer realm="chargectl"'}
                    self._refuse(401, "a bearer token is needed", challenge)
                    return False
                return True

            def _route(self, method: str) -> str | None:
                path = self.path.partition("?")[0]
                known = {"/status": "GET"} | dict.fromkeys(api._commands, "POST")
                if path not in known:
                    self._refuse(404, f"no such path: {path[:120]}")
                    return None
                if known[path] != method:
                    self._refuse(
                        405, f"{path} takes {known[path]}, not {method}", {"Allow": known[path]}
                    )
                    return None
                return path

            def do_GET(self) -> None:
                if self._admitted() and self._route("GET") is not None:
                    self._send(200, api._snapshot or b"{}")

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_POST(self) -> None:
                if not self._admitted():
                    return
                path = self._route("POST")
                if path is None:
                    return
                raw = self._body()
                if raw is None:
                    return
                if not raw.strip():
                    self._refuse(400, "the body must be a JSON object, {} at the least")
                    return
                try:
                    body = decode_json_object(raw.decode("utf-8"), "the body")
                    check_fields(path.removeprefix("/"), body)
                except UnicodeDecodeError as exc:
                    self._refuse(400, f"the body is not UTF-8 text (byte {exc.start})")
                    return
                except CommandError as exc:
                    self._refuse(400, str(exc))
                    return
                if api._snapshot is None:
                    self._refuse(503, "the daemon is starting: no tick has run yet")
                    return
                code, answer = api._run(path, body)
                try:
                    self._json(code, answer)
                except (TypeError, ValueError):
                    log.error("API: the answer to %s cannot be encoded", path)
                    self._json(500, {"error": "the answer could not be encoded"})

            def _body(self) -> bytes | None:
                """The request's body per its headers, or None once refused."""
                kind = self.headers.get("Content-Type", "")
                if kind.partition(";")[0].strip().lower() != "application/json":
                    self._refuse(415, "commands are sent as Content-Type: application/json")
                    return None
                if self.headers.get("Transfer-Encoding") is not None:
                    self._refuse(411, "send the body with a Content-Length, not chunked")
                    return None
                lengths = self.headers.get_all("Content-Length") or []
                if not lengths:
                    self._refuse(411, "a Content-Length is needed")
                    return None
                text = lengths[0].strip()
                if len(set(lengths)) > 1 or not text.isdigit() or not text.isascii():
                    self._refuse(400, f"bad Content-Length: {', '.join(lengths)[:40]!r}")
                    return None
                length = int(text[:12])
                if len(text) > 12 or length > MAX_BODY:
                    self._refuse(413, f"the body may be at most {MAX_BODY} bytes")
                    return None
                raw = self.rfile.read(length)  # a timeout or a reset: the server's handle_error
                if len(raw) < length:  # the client closed its side early
                    self._refuse(400, f"the body ended after {len(raw)} of {length} bytes")
                    return None
                return raw

        return Handler


def _host_name(host: str) -> str:
    """`Host` without its port, lower case: `localhost`, `127.0.0.1`, `[::1]`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.partition(":")[0]


def _drain(conn: socket.socket, limit: int = MAX_BODY * 4, within_s: float = 0.2) -> None:
    """Read (and drop) what the client still sends, briefly, after our answer: closing a socket
    with unread data sends a reset, which can destroy the answer before the client reads it."""
    conn.shutdown(socket.SHUT_WR)
    deadline = time.monotonic() + within_s
    got = 0
    while got < limit and (left := deadline - time.monotonic()) > 0:
        conn.settimeout(left)
        try:
            data = conn.recv(65536)
        except OSError:
            return
        if not data:
            return
        got += len(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 64  # the listen backlog (5 by default: a burst waited for SYN retries)

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], api: ApiServer
    ) -> None:
        self.api = api
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self.active = 0  # connections being served (for the tests)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.api._count("refused")
            _busy(request)
            self.shutdown_request(request)
            return
        with self.api._count_lock:
            self.active += 1
        try:
            super().process_request(request, client_address)
        except Exception:  # no thread for it: free its slot
            self._release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    def _release(self) -> None:
        with self.api._count_lock:
            self.active -= 1
        self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # a reset, a broken pipe, a timeout: the client's doing
            self.api._gone(client_address[0], exc)
        elif exc is not None:
            self.api._count("errors")
            log.error("API: a request from %s failed", client_address[0], exc_info=exc)


def _busy(request: socket.socket) -> None:
    body = json.dumps({"error": f"busy: {MAX_CLIENTS} clients are being served"}).encode()
    head = (
        "HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    try:
        request.settimeout(1.0)
        request.sendall(head + body)
        _drain(request, within_s=0.05)  # briefly: this runs in the accepting thread
    except OSError:
        pass
