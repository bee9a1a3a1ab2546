"""The staff API for real on loopback: who may ask, how a command must be framed, and that
every malformed request gets a 4xx/5xx JSON error without running anything."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from chargectl.config.load import ConfigError, load_shed
from chargectl.outputs.api import MAX_BODY, MAX_CLIENTS, ApiRefused, ApiServer, read_token
from tests.api.conftest import TOKEN, Api, parse, tracebacks

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[2]
STOP = b'{"bay": "pile-a/1"}'


def test_a_command_and_the_status(api: Api) -> None:
    code, _, body = api.post("/sessions/stop", {"bay": "pile-a/1"})
    assert (code, body) == (200, {"stopped": True})
    code, _, body = api.request("GET", "/status")
    assert (code, body) == (200, {"shed": "campus", "ticks": 1})
    code, _, body = api.request("POST", "/alarm/clear", b"{}")  # a command without fields
    assert (code, body) == (200, {"cleared": True})
    code, _, body = api.post(
        "/alarm/clear", {}, headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert code == 200
    assert api.commands.calls == [("stop", {"bay": "pile-a/1"}), ("clear", {}), ("clear", {})]


JSON = "application/json"


def post(path: str, body: bytes, kind: str | None = JSON, head: str = "") -> bytes:
    """A POST as a client would frame it (Content-Length right), with `head` lines added."""
    lines = f"POST {path} HTTP/1.1\r\n{head}"
    if kind is not None:
        lines += f"Content-Type: {kind}\r\n"
    return f"{lines}Content-Length: {len(body)}\r\n\r\n".encode() + body


def framed(path: str, head: str, body: bytes = b"{}") -> bytes:
    """A POST of JSON whose framing headers are `head` (no Content-Length of its own)."""
    return f"POST {path} HTTP/1.1\r\nContent-Type: {JSON}\r\n{head}\r\n".encode() + body


CLEAR, STOP_PATH = "/alarm/clear", "/sessions/stop"
REFUSED: list[tuple[str, bytes, int, str]] = [
    # (what, the raw request, code, in the error)
    ("text/plain", post(CLEAR, b"{}", "text/plain"), 415, JSON),
    ("form post", post(CLEAR, b"a=b", "application/x-www-form-urlencoded"), 415, JSON),
    ("multipart", post(CLEAR, b"{}", "multipart/form-data; boundary=x"), 415, JSON),
    ("no content type", post(CLEAR, b"{}", None), 415, JSON),
    ("json lookalike", post(CLEAR, b"{}", "application/jsonx"), 415, JSON),
    ("a web page", post(CLEAR, b"{}", head="Origin: http://evil.example\r\n"), 403, "Origin"),
    ("a page on loopback", post(CLEAR, b"{}", head="Origin: http://127.0.0.1\r\n"), 403, "Origin"),
    ("origin null", post(CLEAR, b"{}", head="Origin: null\r\n"), 403, "Origin"),
    ("a page reads", b"GET /status HTTP/1.1\r\nOrigin: http://evil.example\r\n\r\n", 403, "Origin"),
    ("DNS rebinding", b"GET /status HTTP/1.1\r\nHost: evil.example:8581\r\n\r\n", 403, "loopback"),
    ("no length", framed(CLEAR, ""), 411, "Content-Length"),
    ("chunked", framed(CLEAR, "Transfer-Encoding: chunked\r\n", b"2\r\n{}\r\n0\r\n"), 411, "chunk"),
    ("length not a number", framed(CLEAR, "Content-Length: two\r\n"), 400, "Content-Length"),
    ("negative length", framed(CLEAR, "Content-Length: -1\r\n"), 400, "Content-Length"),
    ("two lengths", framed(CLEAR, "Content-Length: 2\r\nContent-Length: 3\r\n"), 400, "Length"),
    ("unicode digits", framed(CLEAR, "Content-Length: \u0662\r\n"), 400, "Content-Length"),
    ("huge length", framed(CLEAR, f"Content-Length: {10**22}\r\n"), 413, "at most"),
    ("too large", post(CLEAR, b" " * (MAX_BODY + 1)), 413, "at most"),
    ("body cut short", framed(CLEAR, "Content-Length: 10\r\n"), 400, "ended after 2 of 10"),
    ("not JSON", post(CLEAR, b"clear"), 400, "not JSON"),
    ("an empty body", post(CLEAR, b""), 400, "{} at the least"),
    ("a blank body", post(CLEAR, b" \r\n"), 400, "{} at the least"),
    ("not UTF-8", post(STOP_PATH, b"\xc3\x28"), 400, "UTF-8"),
    ("a list", post(CLEAR, b"[]"), 400, "JSON object"),
    ("NaN", post(STOP_PATH, b'{"bay": "pile-a/1", "x": NaN}'), 400, "NaN"),
    ("an Infinity id", post(STOP_PATH, b'{"bay": "pile-a/1", "id": -Infinity}'), 400, "Infinity"),
    ("beyond a float", post(CLEAR, b'{"x": 1e999}'), 400, "finite"),
    ("nested deep", post(CLEAR, b"[" * 16000), 400, "nested too deeply"),
    ("a long integer", post(CLEAR, b'{"x":' + b"9" * 5000 + b"}"), 400, "not usable JSON"),
    ("unknown field", post(CLEAR, b'{"smoke": 0}'), 400, "unknown field 'smoke'"),
    ("bay not a string", post(STOP_PATH, b'{"bay": 3}'), 400, "must be a string"),
    ("bay missing", post(STOP_PATH, b"{}"), 400, "missing field 'bay'"),
    ("unknown path", b"GET /nowhere HTTP/1.1\r\n\r\n", 404, "no such path"),
    ("unknown command", post("/alarm/clear/now", b"{}"), 404, "no such path"),
    ("GET a command", b"GET /alarm/clear HTTP/1.1\r\n\r\n", 405, "takes POST"),
    ("POST the status", post("/status", b"{}"), 405, "takes GET"),
    ("DELETE", b"DELETE /alarm/clear HTTP/1.1\r\n\r\n", 501, "Unsupported method"),
    ("a made-up method", b"CLEAR /alarm HTTP/1.1\r\n\r\n", 501, "Unsupported method"),
    ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 hello\r\n\r\n", 400, "Bad"),
    ("HTTP/0.9", b"GET /status\r\n", 400, "HTTP/0.9"),
    ("HTTP/2", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "version"),
    ("an empty line", b"\r\n", 400, "empty request line"),
    ("a header too long", b"GET /status HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n", 431, "long"),
    ("a request line too long", b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414, ""),
    ("too many headers", b"GET /status HTTP/1.1\r\n" + b"X: y\r\n" * 150 + b"\r\n", 431, "headers"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "raw", "code", "error"), REFUSED, ids=[r[0] for r in REFUSED])
def test_a_malformed_request_gets_a_json_error_and_runs_nothing(
    api: Api, what: str, raw: bytes, code: int, error: str
) -> None:
    got, _, body = parse(api.raw(raw))
    assert got == code, body
    assert error in body["error"]
    assert api.commands.calls == []
    assert tracebacks(api) == []
    assert api.request("GET", "/status")[0] == 200  # and the server goes on


def test_head_has_no_body(api: Api) -> None:
    reply = api.raw(b"HEAD /status HTTP/1.1\r\n\r\n")
    assert reply.startswith(b"HTTP/1.0 200 ") and reply.endswith(b"\r\n\r\n")


def test_a_command_while_the_daemon_starts(make_api: Callable[..., Api]) -> None:
    api = make_api(started=False)
    code, _, body = api.post("/alarm/clear", {})
    assert (code, body) == (503, {"error": "the daemon is starting: no tick has run yet"})
    assert api.request("GET", "/status")[:3:2] == (200, {})  # `chargectl status` reads {} so
    assert api.commands.calls == []
    api.server.publish({"ticks": 1})
    assert api.post("/alarm/clear", {})[0] == 200


def test_a_command_to_a_device_that_is_down_or_a_bug(api: Api) -> None:
    code, _, body = api.post("/sessions/stop", {"bay": "pile-z/1"})
    assert code == 503
    assert body["error"].startswith("the device did not do it: pile-z: down since 12:00")
    assert tracebacks(api) == []  # a device down is no bug
    code, _, body = api.post("/sessions/stop", {"bay": "bug/1"})
    assert (code, body) == (500, {"error": "the command failed: RuntimeError"})
    assert api.server.errors == 0 and len(tracebacks(api)) == 1  # a bug: one traceback


def test_a_command_the_loop_does_not_answer_in_time(make_api: Callable[..., Api]) -> None:
    api = make_api(command_timeout_s=0.2)
    api.commands.release.clear()
    code, _, body = api.post("/sessions/stop", {"bay": "pile-a/1"})
    assert (code, body) == (503, {"error": "the control loop did not answer in time"})
    api.commands.release.set()


def test_the_token(make_api: Callable[..., Api]) -> None:
    api = make_api(token=TOKEN)
    code, headers, body = api.post("/alarm/clear", {}, auth=False)
    assert (code, body) == (401, {"error": "a bearer token is needed"})
    assert headers["www-authenticate"].startswith("Bearer")
    for wrong in (f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer"):
        assert api.post("/alarm/clear", {}, headers={"Authorization": wrong})[0] == 401
    assert api.request("GET", "/status", auth=False)[0] == 401  # the status too
    assert api.commands.calls == []
    assert api.post("/alarm/clear", {})[0] == 200
    assert api.post("/alarm/clear", {}, headers={"Authorization": f"bearer  {TOKEN} "})[0] == 200
    # Even with the token, a web page is refused.
    assert api.post("/alarm/clear", {}, headers={"Origin": "http://evil.example"})[0] == 403


def test_beyond_loopback_only_with_a_token(
    loop: asyncio.AbstractEventLoop, make_api: Callable[..., Api]
) -> None:
    with pytest.raises(ApiRefused, match="only with a token"):
        ApiServer("0.0.0.0", 0, loop)
    with pytest.raises(ApiRefused):
        ApiServer("shed.lan", 0, loop, token="")
    api = make_api(host="0.0.0.0", token=TOKEN)
    # Any Host is fine there (people use the box's name); the token is what counts.
    assert api.request("GET", "/status", headers={"Host": "shed.lan:8581"})[0] == 200
    assert api.request("GET", "/status", headers={"Host": "shed.lan"}, auth=False)[0] == 401


def test_clients_that_go_away_are_logged_once(api: Api) -> None:
    for n in range(150):
        with socket.create_connection(("127.0.0.1", api.port)) as s:
            if n % 3 == 0:  # a request, gone before the answer
                s.sendall(b"POST /sessions/stop HTTP/1.1\r\nContent-Type: application/json\r\n")
                s.sendall(b"Content-Length: 19\r\n\r\n" + STOP)
            elif n % 3 == 1:  # mid-body, reset
                s.sendall(b"POST /alarm/clear HTTP/1.1\r\nContent-Type: application/json\r\n")
                s.sendall(b"Content-Length: 100\r\n\r\n{")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    deadline = time.monotonic() + 10
    while api.server.disconnects < 50 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert api.request("GET", "/status")[0] == 200
    gone = [r for r in api.log if "went away" in r.getMessage()]
    assert len(gone) == 1 and api.server.disconnects >= 50
    assert tracebacks(api) == [] and api.server.errors == 0


def test_a_silent_client_is_dropped_and_the_rest_served(make_api: Callable[..., Api]) -> None:
    api = make_api(client_timeout_s=0.3)
    with socket.create_connection(("127.0.0.1", api.port)) as idle:
        idle.sendall(b"POST /alarm/clear HTTP/1.1\r\nContent-Type: application/json\r\n")
        assert api.request("GET", "/status")[0] == 200
        idle.settimeout(5)
        assert idle.recv(100) == b""  # closed after the timeout, nothing was run
    assert api.commands.calls == []
    assert tracebacks(api) == []


def test_clients_beyond_the_bound_get_503(make_api: Callable[..., Api]) -> None:
    api = make_api(client_timeout_s=2.0)
    idle = [socket.create_connection(("127.0.0.1", api.port)) for _ in range(MAX_CLIENTS)]
    try:
        deadline = time.monotonic() + 5
        while api.server.clients < MAX_CLIENTS and time.monotonic() < deadline:
            time.sleep(0.01)
        code, _, body = parse(api.raw(b"GET /status HTTP/1.1\r\n\r\n"))
        assert code == 503 and "busy" in body["error"]
    finally:
        for s in idle:
            s.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if parse(api.raw(b"GET /status HTTP/1.1\r\n\r\n"))[0] == 200:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the slots were not freed")


def test_the_token_file(tmp_path: Path) -> None:
    campus = (ROOT / "deploy" / "examples" / "campus.yaml").read_text()
    cfg = tmp_path / "campus.yaml"
    cfg.write_text(
        campus.replace(
            "api: {host: 127.0.0.1, port: 8581}",
            "api: {host: 0.0.0.0, port: 8581, token_file: secrets/api.token}",
        )
    )
    shed = load_shed(cfg)
    with pytest.raises(ConfigError, match=r"api.token_file: cannot read .*api.token"):
        read_token(shed)
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "api.token").write_text("short\n")
    with pytest.raises(ConfigError, match="at least 16 characters"):
        read_token(shed)
    (tmp_path / "secrets" / "api.token").write_text(TOKEN + "\n")
    assert read_token(shed) == TOKEN


def test_check_refuses_an_api_beyond_loopback_without_a_token(tmp_path: Path) -> None:
    campus = (ROOT / "deploy" / "examples" / "campus.yaml").read_text()
    cfg = tmp_path / "campus.yaml"
    cfg.write_text(campus.replace("\napi: {host: 127.0.0.1,", "\napi: {host: 0.0.0.0,"))
    with pytest.raises(ConfigError) as info:
        load_shed(cfg)
    assert [str(p).split(": ", 1)[1] for p in info.value.errors] == [
        "api.host: 0.0.0.0 is beyond loopback: the API clears alarms and stops sessions, so "
        "it is bound there only with api.token_file (a bearer token)"
    ]
    cfg.write_text(
        campus.replace("\napi: {host: 127.0.0.1,", "\napi: {token_file: api.token, host: 0.0.0.0,")
    )
    assert load_shed(cfg).api.token_file == "api.token"  # the file is read at start
    for host in ("127.0.0.1", "localhost", "127.0.0.53"):
        cfg.write_text(campus.replace("\napi: {host: 127.0.0.1,", f"\napi: {{host: '{host}',"))
        assert load_shed(cfg).api.loopback


def test_the_answer_of_a_real_client(api: Api) -> None:
    import urllib.error
    import urllib.request

    url = f"http://127.0.0.1:{api.port}/alarm/clear"
    form = urllib.request.Request(url, data=b"{}", method="POST")  # urllib's default: a form
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(form, timeout=5)
    assert info.value.code == 415
    assert "application/json" in json.loads(info.value.read())["error"]
    ok = urllib.request.Request(url, data=b"{}", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(ok, timeout=5) as r:
        assert json.loads(r.read()) == {"cleared": True}


def test_nothing_reaches_stderr(api: Api, capfd: pytest.CaptureFixture[str]) -> None:
    for raw, _, _, _ in [(r[1], 0, 0, 0) for r in REFUSED]:
        api.raw(raw)
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    assert logging.getLogger("chargectl.outputs.api").level == logging.DEBUG
