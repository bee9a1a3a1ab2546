"""Fuzz campaign: Hypothesis-made malformed HTTP requests, raw over loopback sockets, against
the real API server. Every one answered with a JSON 4xx/5xx (a read of /status may be a 200),
or dropped by its client; 0 tracebacks; no command run; the server answers on. 1,000
requests by default, 10,000 under `-m slow`."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargectl.outputs.api import MAX_BODY
from tests.api.conftest import Api, parse, tracebacks

METHODS = ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "", "G\x00T", "POST POST"]
PATHS = ["/status", "/alarm/clear", "/sessions/stop", "/bays/clear-fault", "/", "/nowhere",
         "/alarm/clear?x=1", "*", "http://evil/alarm/clear", "/alarm/clear/"]  # fmt: skip
VERSIONS = ["HTTP/1.1", "HTTP/1.0", "", "HTTP/2.0", "HTTP/1.1x", "HTTP/9.9", "http/1.1", "HTTP/"]
KINDS = ["application/json", "text/plain", "application/x-www-form-urlencoded", "",
         "multipart/form-data; boundary=z", "application/json; charset=utf-8", "APPLICATION/JSON",
         "application/json, text/plain", "\x00"]  # fmt: skip

json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=16)
json_value = st.recursive(
    json_leaf,
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3)
    ),
    max_leaves=10,
)


def _is_json_object(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except ValueError:  # not UTF-8, not JSON
        return False


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """Never a command: garbage, not an object, or an object with a field no command has."""
    kind = draw(st.sampled_from(["bytes", "value", "object", "deep", "big", "empty"]))
    if kind == "bytes":  # any bytes but a JSON object (b"{}" would be a valid alarm clear)
        return draw(st.binary(max_size=300).filter(lambda b: not _is_json_object(b)))
    if kind == "value":
        value = draw(json_value.filter(lambda v: not isinstance(v, dict)))
        return json.dumps(value).encode()
    if kind == "object":
        body = draw(st.dictionaries(st.sampled_from(["bay", "id", "x"]), json_value, max_size=3))
        return json.dumps(body | {"fuzz": draw(json_value)}).encode()
    if kind == "deep":
        depth = draw(st.integers(100, 8000))
        return b'{"a":' * depth + b"1" + b"}" * draw(st.integers(0, depth))
    if kind == "big":
        return b" " * draw(st.integers(MAX_BODY - 10, MAX_BODY * 3))
    return b""


COMMAND_PATHS = ["/alarm/clear", "/sessions/stop", "/bays/clear-fault"]
CHANGES = ["no type", "type", "no length", "bad length", "two lengths", "origin", "host",
           "chunked", "auth", "junk", "long"]  # fmt: skip


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, str]:
    """(the raw bytes, how the client leaves: "read" half-closes and reads, "drop" vanishes).

    Most are a POST of a command framed as a client would, with a few things changed; the rest
    have any request line at all."""
    body = draw(bodies())
    mode = draw(st.sampled_from(["post"] * 6 + ["listed"] * 3 + ["text"]))
    if mode == "post":
        line = f"POST {draw(st.sampled_from(COMMAND_PATHS))} HTTP/1.1"
    elif mode == "listed":
        parts = [draw(st.sampled_from(x)) for x in (METHODS, PATHS, VERSIONS)]
        line = " ".join(p for p in parts if p)
    else:
        line = draw(st.text(max_size=60))
    headers = {"type": "Content-Type: application/json", "length": f"Content-Length: {len(body)}"}
    for change in draw(st.lists(st.sampled_from(CHANGES), max_size=3)):
        if change == "no type":
            headers.pop("type", None)
        elif change == "type":
            headers["type"] = f"Content-Type: {draw(st.sampled_from(KINDS) | st.text(max_size=20))}"
        elif change == "no length":
            headers.pop("length", None)
        elif change == "bad length":
            n = draw(
                st.sampled_from(["-1", "1e3", "0x10", " ", "99999999999999999999", "١٢", "+5"])
            )
            headers["length"] = f"Content-Length: {n}"
        elif change == "two lengths":
            headers["length2"] = f"Content-Length: {len(body) + draw(st.integers(-3, 3))}"
        elif change == "origin":
            headers["origin"] = f"Origin: {draw(st.sampled_from(['null', 'http://evil.example']))}"
        elif change == "host":
            headers["host"] = f"Host: {draw(st.sampled_from(['evil.example', '', '[::1', ':']))}"
        elif change == "chunked":
            headers["chunked"] = "Transfer-Encoding: chunked"
        elif change == "auth":
            headers["auth"] = f"Authorization: {draw(st.text(max_size=40))}"
        elif change == "junk":
            headers["junk"] = draw(st.text(max_size=60))
        else:
            headers["long"] = "X-Long: " + "a" * draw(st.integers(1000, 70000))
    head = line + "\r\n" + "".join(h + "\r\n" for h in headers.values()) + "\r\n"
    raw = head.encode("utf-8", "surrogatepass") + body
    if draw(st.integers(0, 3)) == 0:  # cut anywhere: in the request line, the headers, the body
        raw = raw[: draw(st.integers(0, len(raw)))]
    return raw, draw(st.sampled_from(["read", "read", "read", "drop"]))


def check_reply(raw: bytes, reply: bytes) -> None:
    if not raw:
        assert reply == b""  # nothing asked, nothing answered
        return
    if reply.startswith(b"HTTP/1.0 200 "):  # a read of the status, nothing more
        assert raw.split(b" ", 1)[0] in (b"GET", b"HEAD"), (raw[:100], reply[:200])
        return
    if raw.startswith(b"HEAD ") and b"\r\n\r\n" in reply and reply.endswith(b"\r\n\r\n"):
        code = int(reply.split(b" ", 2)[1])
        assert 400 <= code < 600, (raw[:100], reply[:200])
        return
    code, _, body = parse(reply)
    assert 400 <= code < 600 and isinstance(body["error"], str), (raw[:100], reply[:300])


def send(api: Api, raw: bytes, how: str) -> bytes:
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as s:
        with contextlib.suppress(OSError):  # the server answered and closed before the end
            s.sendall(raw)
        if how == "drop":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            return b""
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
    return b"".join(chunks)


def run_campaign(
    make_api: Callable[..., Api], capfd: pytest.CaptureFixture[str], examples: int
) -> None:
    api = make_api(client_timeout_s=2.0)
    sent = 0
    codes: dict[str, int] = {}

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        # The default run is the same every time (CI must not turn red by chance); the
        # larger runs of `make test-long` explore anew.
        derandomize=examples <= 1000,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(request=requests())
    def one(request: tuple[bytes, str]) -> None:
        nonlocal sent
        raw, how = request
        reply = send(api, raw, how)
        sent += 1
        if how == "read":
            check_reply(raw, reply)
            code = reply[9:12].decode("latin-1")
            codes[code] = codes.get(code, 0) + 1

    one()
    assert sent >= examples
    # The campaign reaches every stage of the server, not only its request-line parser.
    assert {"400", "403", "404", "411", "413", "415", "501"} <= set(codes), codes
    assert api.commands.calls == []  # nothing ran
    assert tracebacks(api) == [] and api.server.errors == 0
    code, _, body = api.request("GET", "/status")  # and it answers on
    assert (code, body) == (200, {"shed": "campus", "ticks": 1})
    assert api.post("/alarm/clear", {})[0] == 200
    assert "Traceback" not in "".join(capfd.readouterr())
    assert len([r for r in api.log if r.levelno >= logging.WARNING]) <= 1  # one "went away"


@pytest.mark.timeout(120)
def test_fuzz_a_thousand_requests(
    make_api: Callable[..., Api], capfd: pytest.CaptureFixture[str]
) -> None:
    run_campaign(make_api, capfd, 1000)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_fuzz_ten_thousand_requests(
    make_api: Callable[..., Api], capfd: pytest.CaptureFixture[str]
) -> None:
    run_campaign(make_api, capfd, 10_000)
