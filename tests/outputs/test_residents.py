"""The residents' page: the pure view on synthetic snapshots, the server through aiohttp's test
client (bad input fuzzed), and Debian's headless Chromium against the daemon on the simulator.

Set RESIDENTS_SCREENSHOTS to a folder (e.g. `docs`) to keep the screenshots the browser test
takes there (docs/residents-shed.png, docs/residents-bay.png come from such a run)."""

from __future__ import annotations

import asyncio
import copy
import json
import math
import os
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargectl.outputs import residents_view as view
from chargectl.outputs.residents import MAX_PATH, ResidentsPage
from tests.rig import bay_card, running_shed, write_config
from tests.sessions_e2e.shed import closed, until_charging, watts

CARD_UID = "04A1B2C3D4"
CARD_NAME = "Flat 7 Ms Example"
SESSION_ID = "sess-8f3a9c"
SECRETS = (CARD_UID, CARD_NAME, SESSION_ID, CARD_UID.lower())


def bay(bid: str, state: str = "idle", amps: float = 0.0, lamp: int = 1, **more: Any) -> dict:
    return {"id": bid, "state": state, "current_a": amps, "setpoint_a": 0.0, "on": False,
            "welded": False, "lamp": lamp, **more}  # fmt: skip


def snap(*bays: dict[str, Any], wall: float = 1_700_000_000.0, **more: Any) -> dict[str, Any]:
    return {"shed": "small", "tick": 1, "wall": wall, "alarm": None, "circuits": [],
            "bays": list(bays), **more}  # fmt: skip


def sample_snapshot() -> dict[str, Any]:
    """Every state, and card fields planted wherever a later snapshot might carry them."""
    secret: dict[str, Any] = {
        "card_uid": CARD_UID,
        "card_name": CARD_NAME,
        "session_id": SESSION_ID,
    }
    return snap(
        bay("pile-a/1", "charging", 2.1, 2, power_w=455.0, session_wh=312.4, **secret),
        bay("pile-a/2", "idle", lamp=7, **secret),
        bay("pile-a/3", "waiting", lamp=3, session_wh=80.0, card={"uid": CARD_UID}),
        bay("pile-a/4", "fault", lamp=4),
        bay("pile-a/5"),
        bay("pile-b/1", "charging", 1.0, 2),
        bay("pile-b/2", "disabled"),
        bay("wb-1", "paused", lamp=3),
        sessions={"charging": 2, SESSION_ID: CARD_UID},
        cards=[{"uid": CARD_UID, "name": CARD_NAME}],
        events=[f"tap {CARD_UID} at pile-a/1: accepted ({CARD_NAME})"],
    )


# -- the pure view ---------------------------------------------------------------------------
def test_states_rows_and_free_counts() -> None:
    state = view.public_state(sample_snapshot(), view.FinishEstimator())
    words = {b["id"]: b["state"] for b in state["bays"]}
    assert words == {
        "pile-a/1": "charging",
        "pile-a/2": "done",
        "pile-a/3": "waiting",
        "pile-a/4": "out of service",
        "pile-a/5": "free",
        "pile-b/1": "charging",
        "pile-b/2": "out of service",
        "wb-1": "waiting",
    }
    rows = {r["id"]: r for r in state["rows"]}
    assert list(rows) == ["pile-a", "pile-b", "wb-1"]
    assert (rows["pile-a"]["free"], rows["pile-a"]["sockets"]) == (1, 5)
    assert rows["pile-a"]["show"] == {"free": "1 of 5 free", "which": "5", "wait": ""}
    assert rows["pile-b"]["free"] == 0
    assert rows["pile-b"]["show"]["wait"] == "none free; wait unknown"
    a1 = state["bays"][0]
    assert (a1["power_w"], a1["energy_wh"], a1["current_a"]) == (455, 312, 2.1)
    assert a1["show"]["power"] == "455 W" and a1["show"]["energy"] == "312 Wh"
    b1 = state["bays"][5]  # no power reading in the snapshot: the current, said as such
    assert b1["show"]["power"] == "1.0 A (power not measured)"
    assert b1["show"]["energy"] == "unknown"


def test_no_card_field_reaches_the_public_state_or_pages() -> None:
    state = view.public_state(sample_snapshot(), view.FinishEstimator())
    pages = [view.state_json(state).decode(), view.shed_page(state)]
    pages += [view.bay_page(state, b) for b in state["bays"]]
    for text in pages:
        for secret in SECRETS:
            assert secret not in text
    assert set(state["bays"][0]) == {"id", "row", "state", "power_w", "energy_wh",
                                     "current_a", "finish_min", "show"}  # fmt: skip


def taper_snapshots(
    peak: float = 2.0, tau_s: float = 1800.0, start: float = 1000.0, minutes: int = 30
) -> list[dict[str, Any]]:
    """Ten minutes at the flat current, then an exponential taper, one snapshot a minute."""
    out = [snap(bay("pile-a/1", "charging", peak, 2), wall=start + 60 * i) for i in range(10)]
    t0 = start + 600
    for i in range(minutes + 1):
        amps = peak * 0.65 * math.exp(-60 * i / tau_s)
        out.append(snap(bay("pile-a/1", "charging", amps, 2), wall=t0 + 60 * i))
    return out


def test_finish_unknown_at_full_power_then_fitted_from_the_taper() -> None:
    est = view.FinishEstimator()
    snaps = taper_snapshots()
    for s in snaps[:10]:
        est.observe(s)
    assert est.finish(snaps[9]["bays"][0]).text == "unknown (still charging at full power)"
    est.observe(snaps[10])
    assert est.finish(snaps[10]["bays"][0]).text == "in its last stage, time not yet known"
    for s in snaps[11:]:
        est.observe(s)
    last = snaps[-1]["bays"][0]
    # The truth: from 0.65 * peak * e^(-30/30) down to 0.06 * peak at tau 30 min.
    true_min = 30 * math.log(0.65 * math.exp(-1) / 0.06)
    got = est.finish(last)
    assert got.minutes is not None and got.minutes % view.ROUND_MIN == 0
    assert true_min <= got.minutes < true_min + view.ROUND_MIN
    assert got.text == f"in about {view._duration(got.minutes)}"
    state = view.public_state(snap(last, bay("pile-a/2", "fault")), est)
    assert state["rows"][0]["show"]["wait"].startswith(
        f"next socket free in about {view._duration(got.minutes)}"
    )


def test_a_pause_restarts_the_fit_and_an_end_forgets_the_session() -> None:
    est = view.FinishEstimator()
    snaps = taper_snapshots()
    for s in snaps:
        est.observe(s)
    wall = snaps[-1]["wall"]
    est.observe(snap(bay("pile-a/1", "waiting", 0.0, 3), wall=wall + 60))
    back = bay("pile-a/1", "charging", 0.3, 2)
    est.observe(snap(back, wall=wall + 120))
    assert est.finish(back).minutes is None  # one sample since the pause: no fit yet
    est.observe(snap(bay("pile-a/1", "idle"), wall=wall + 180))
    est.observe(snap(back, wall=wall + 240))  # a new session at the low current
    assert est.finish(back).text == "unknown (still charging at full power)"


def test_odd_values_in_a_snapshot_never_raise() -> None:
    est = view.FinishEstimator()
    odd = {"shed": 5, "wall": "x", "bays": [None, {"id": 3}, bay("p/1", "charging", math.nan),
           bay("p/2", "zzz", amps=True), {"id": "p/3"}], "alarm": "smoke"}  # fmt: skip
    est.observe(odd)
    state = view.public_state(odd, est)
    assert [b["state"] for b in state["bays"]] == ["charging", "out of service", "out of service"]
    assert state["stopped"] is True
    assert "hidden" not in view.shed_page(state).split("<h1>")[0].split("id=alarm")[1][:20]
    empty = view.public_state({}, est)
    assert empty["ready"] is False and "starting" in view.shed_page(empty)


def test_ids_are_escaped_and_paths_quoted() -> None:
    odd = '<b>"x"&/1'
    state = view.public_state(snap(bay(odd, "charging", 1.0)), view.FinishEstimator())
    for page in (view.shed_page(state), view.bay_page(state, state["bays"][0])):
        assert "<b>" not in page and "&lt;b&gt;" in page
    assert view.bay_path("pile-a/3") == "/bay/pile-a/3"
    assert view.bay_path("pile ä/1") == "/bay/pile%20%C3%A4/1"


def test_pages_stay_under_50_kb_for_a_large_shed() -> None:
    bays = [bay(f"pile-{r:02d}/{p}", "charging", 2.0) for r in range(40) for p in range(1, 13)]
    state = view.public_state(snap(*bays), view.FinishEstimator())
    shed = view.shed_page(state).encode()
    one = view.bay_page(state, state["bays"][0]).encode()
    assert len(shed) < 50_000, len(shed)
    assert len(one) < 50_000
    shed.decode("utf-8")


# -- the server ------------------------------------------------------------------------------
async def serve(snapshot: Callable[[], Mapping[str, Any]]) -> tuple[ResidentsPage, TestClient]:
    page = ResidentsPage(snapshot, host="127.0.0.1", port=0)
    client: TestClient[Any, Any] = TestClient(TestServer(page.app))
    await client.start_server()
    return page, client


async def test_routes_answer_with_the_view() -> None:
    data = sample_snapshot()
    page, client = await serve(lambda: data)
    try:
        r = await client.get("/")
        body = await r.read()
        assert r.status == 200 and r.content_type == "text/html" and r.charset == "utf-8"
        text = body.decode("utf-8")
        assert 'name=viewport content="width=device-width' in text
        assert 'data-row="pile-a" data-k=free>1 of 5 free<' in text
        assert r.headers["Content-Security-Policy"].startswith("default-src 'none'")
        r = await client.get("/bay/pile-a/1")
        assert r.status == 200
        page_text = await r.text()
        assert 'data-k=state data-state="charging">charging<' in page_text
        # A QR app or a messenger adds its own query: the same page.
        r = await client.get("/bay/pile-a/1?utm_source=qr&fbclid=x")
        assert r.status == 200 and await r.text() == page_text
        r = await client.get("/api/state.json")
        assert r.status == 200 and r.content_type == "application/json"
        state = json.loads(await r.read())
        assert state == json.loads(view.state_json(view.public_state(data, page.estimator)))
        r = await client.head("/bay/wb-1")
        assert r.status == 200 and await r.read() == b""
    finally:
        await client.close()


async def test_no_card_byte_in_any_response() -> None:
    data = sample_snapshot()
    _page, client = await serve(lambda: data)
    try:
        paths = ["/", "/api/state.json", "/bay/nope", f"/bay/{CARD_UID}"]
        paths += [view.bay_path(b["id"]) for b in data["bays"]]
        for path in paths:
            r = await client.get(path)
            raw = await r.read() + str(r.headers).encode()
            for secret in SECRETS:
                assert secret.encode() not in raw, (path, secret)
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("method", "path", "status", "text"),
    [
        ("GET", "/bay/pile-z/9", 404, "no such socket in this shed"),
        ("GET", "/nowhere", 404, "no such page"),
        ("GET", "/bay/", 404, "no such page"),
        ("GET", "/nowhere?x=1", 404, "no such page"),
        ("GET", "/bay/" + "a" * MAX_PATH, 414, "too long"),
        ("POST", "/", 405, "read-only"),
        ("PUT", "/bay/pile-a/1", 405, "read-only"),
        ("DELETE", "/api/state.json", 405, "read-only"),
        ("OPTIONS", "/", 405, "read-only"),
    ],
)
async def test_bad_requests_get_a_short_refusal(
    method: str, path: str, status: int, text: str
) -> None:
    data = sample_snapshot()
    before = copy.deepcopy(data)
    page, client = await serve(lambda: data)
    try:
        r = await client.request(method, path, data=b"x" * 10)
        body = await r.text()
        assert r.status == status and text in body and len(body) < 200
        assert r.content_type == "text/plain"
        assert data == before and page.errors == 0
    finally:
        await client.close()


async def test_a_failing_snapshot_is_a_500_without_a_traceback() -> None:
    def broken() -> Mapping[str, Any]:
        raise RuntimeError("secret internals")

    page, client = await serve(broken)
    try:
        r = await client.get("/")
        body = await r.text()
        assert r.status == 500 and "internals" not in body and "Traceback" not in body
        assert page.errors == 1
    finally:
        await client.close()


async def test_before_the_first_tick_a_bay_is_503() -> None:
    _page, client = await serve(dict)
    try:
        assert (await client.get("/bay/pile-a/1")).status == 503
        assert (await client.get("/")).status == 200
    finally:
        await client.close()


PATH_CHARS = st.characters(codec="utf-8", exclude_categories=["Cs"])


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    tail=st.text(PATH_CHARS, max_size=300) | st.text("/%.?#&;:@=+ab01-_~\\\x00\x7f", max_size=50),
    prefix=st.sampled_from(["/", "/bay/", "/api/", "/bay/pile-a/"]),
    method=st.sampled_from(["GET", "HEAD", "POST", "PATCH"]),
)
async def test_fuzzed_paths_get_an_answer_and_change_nothing(
    tail: str, prefix: str, method: str
) -> None:
    """Raw request lines (no client library normalising the path on the way)."""
    data = sample_snapshot()
    before = copy.deepcopy(data)
    page = ResidentsPage(lambda: data, host="127.0.0.1", port=0)
    server = TestServer(page.app)
    await server.start_server()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        target = (prefix + tail).encode("utf-8", "surrogatepass")
        writer.write(method.encode() + b" " + target + b" HTTP/1.1\r\nHost: shed\r\n"
                     b"Connection: close\r\n\r\n")  # fmt: skip
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        assert status in (200, 400, 404, 405, 414), head
        assert b"Traceback" not in body and page.errors == 0
        if status != 200:  # ours are one line; aiohttp's parser quotes the bad request line
            assert len(body) < (9000 if b"Invalid" in body or b"Bad status" in body else 300)
        for secret in SECRETS:
            assert secret.encode() not in answer
        assert data == before
    finally:
        await server.close()


async def test_start_binds_a_free_port_and_close_stops() -> None:
    page = ResidentsPage(sample_snapshot, host="127.0.0.1", port=0)
    await page.start()
    try:
        bound = page.port
        assert bound > 0
        reader, writer = await asyncio.open_connection("127.0.0.1", page.port)
        writer.write(b"GET / HTTP/1.0\r\n\r\n")
        head = await asyncio.wait_for(reader.read(64), 10)
        writer.close()
        assert head.startswith(b"HTTP/1.0 200 OK")
    finally:
        await page.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", bound)


# -- in a real browser -----------------------------------------------------------------------
CHROMIUM = shutil.which("chromium") or "chromium"


async def chromium(tmp_path: Path, url: str, *, budget_ms: int, shot: Path | None = None) -> str:
    """The DOM after `budget_ms` of virtual time (or a screenshot), from Debian's Chromium."""
    args = [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
            "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium-profile'}",
            f"--virtual-time-budget={budget_ms}"]  # fmt: skip
    args += [f"--screenshot={shot}", "--window-size=412,915"] if shot else ["--dump-dom"]
    proc = await asyncio.create_subprocess_exec(
        *args, url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


def dom_text(dom: str, attr: str, key: tuple[str, str]) -> str:
    m = re.search(rf'{attr}="{re.escape(key[0])}"[^>]*data-k="?{key[1]}"?[^>]*>([^<]*)<', dom)
    assert m, (key, dom[:3000])
    return m.group(1)


async def test_chromium_js_refresh_follows_state_json(tmp_path: Path) -> None:
    """The page is rendered from one state; its own fetch of /api/state.json brings another."""
    first = snap(bay("pile-a/1", "charging", 2.0, 2), bay("pile-a/2"))
    later = snap(bay("pile-a/1", "idle", lamp=7), bay("pile-a/2", "charging", 1.5, 2))
    served: list[str] = []

    def snapshot() -> Mapping[str, Any]:
        return later if served else first

    page = ResidentsPage(snapshot, host="127.0.0.1", port=0)

    async def after(request: web.Request, response: web.StreamResponse) -> None:
        served.append(request.path)

    page.app.on_response_prepare.append(after)
    await page.start()
    try:
        base = f"http://127.0.0.1:{page.port}"
        dom = await chromium(tmp_path, base + "/", budget_ms=2000)  # before the first refresh
        assert dom_text(dom, "data-row", ("pile-a", "free")) == "1 of 2 free"
        served.clear()
        dom = await chromium(tmp_path, base + "/bay/pile-a/1", budget_ms=8000)
        assert "/api/state.json" in served
        assert dom_text(dom, "data-bay", ("pile-a/1", "state")) == "done"
        assert 'data-state="done"' in dom
        served.clear()
        dom = await chromium(tmp_path, base + "/", budget_ms=8000)
        assert dom_text(dom, "data-row", ("pile-a", "free")) == "0 of 2 free"
        assert dom_text(dom, "data-row", ("pile-a", "wait")) == "none free; wait unknown"
    finally:
        await page.close()


def closed_sockets(rig: Any, row: str, ports: int) -> list[str]:
    """The simulator's truth: which of the row's sockets have their contacts closed."""
    return [f"{row}/{p}" for p in range(1, ports + 1) if closed(rig.sim, f"{row}/{p}")]


async def take(rig: Any, bay_id: str) -> None:
    """A tap at a socket, until the daemon has it (a pile holds only its latest tap)."""
    rig.tap(bay_id, bay_card(bay_id))
    await rig.wait_for(lambda: rig.bay(bay_id)["state"] != "idle", 30, f"{bay_id} taken")


async def test_chromium_shows_the_simulators_truth(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    async with running_shed(config, speed=1.0) as rig:
        for b in ("pile-a/1", "pile-a/2"):  # the small shed's two chargers
            await take(rig, b)
            await until_charging(rig, b, 30)
        await rig.wait_for(lambda: rig.bay("pile-a/2")["state"] == "charging", 10, "a/2 on")
        page = ResidentsPage(rig.status, host="127.0.0.1", port=0)
        await page.start()
        try:
            base = f"http://127.0.0.1:{page.port}"
            dom = await chromium(tmp_path, base + "/", budget_ms=3000)
            on = closed_sockets(rig, "pile-a", 12)
            assert on == ["pile-a/1", "pile-a/2"]
            assert dom_text(dom, "data-row", ("pile-a", "free")) == f"{12 - len(on)} of 12 free"
            which = dom_text(dom, "data-row", ("pile-a", "which"))
            assert which == ", ".join(str(p) for p in range(3, 13))
            for b in on:
                dom = await chromium(tmp_path, base + view.bay_path(b), budget_ms=3000)
                assert dom_text(dom, "data-bay", (b, "state")) == "charging"
                assert watts(rig.sim, b) > 5.0

            keep = os.environ.get("RESIDENTS_SCREENSHOTS")
            for name, path in (("shed", "/"), ("bay", "/bay/pile-a/1")):
                shot = (Path(keep) if keep else tmp_path) / f"residents-{name}.png"
                await chromium(tmp_path, base + path, budget_ms=3000, shot=shot)
                assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

            # The page's own refresh while the shed changes: the page is served from the
            # state before a new tap at pile-a/3, its fetch of state.json after it.
            frozen: list[Mapping[str, Any]] = [rig.status()]
            page2 = ResidentsPage(lambda: frozen[0] if frozen else rig.status(),
                                  host="127.0.0.1", port=0)  # fmt: skip

            async def release(request: web.Request, response: web.StreamResponse) -> None:
                frozen.clear()  # the first answer (the page itself) had the old state

            page2.app.on_response_prepare.append(release)
            await page2.start()
            try:
                await take(rig, "pile-a/3")
                dom = await chromium(tmp_path, f"http://127.0.0.1:{page2.port}/", budget_ms=8000)
                assert frozen == []
                assert dom_text(dom, "data-row", ("pile-a", "free")) == "9 of 12 free"
            finally:
                await page2.close()
            # A plain re-load shows the new session; then the owner at pile-a/1 taps again.
            dom = await chromium(tmp_path, base + "/", budget_ms=3000)
            assert dom_text(dom, "data-row", ("pile-a", "free")) == "9 of 12 free"
            rig.tap("pile-a/1", bay_card("pile-a/1"))
            await rig.wait_for(lambda: rig.bay("pile-a/1")["state"] == "idle", 30, "a/1 ended")
            await rig.wait_for(lambda: not closed(rig.sim, "pile-a/1"), 10, "a/1 open")
            dom = await chromium(tmp_path, base + "/", budget_ms=3000)
            assert dom_text(dom, "data-row", ("pile-a", "free")) == "10 of 12 free"
            assert dom_text(dom, "data-row", ("pile-a", "which")).startswith("1, 4, 5")
        finally:
            await page.close()
