"""The residents' page server: a small read-only phone page on the shed's network (aiohttp).

Apart from the staff API (`api.py`): no login, no command, nothing it serves can change the
shed. It reads the daemon's status snapshot through a callable (the loop publishes it; a read
is one dict lookup) and renders it with `residents_view`:

    GET /                   each row's free sockets, or the expected wait when none is free
    GET /bay/<bay id>       one socket (the URL on its pile's QR sticker): /bay/pile-a/3
    GET /api/state.json     the same data, for the pages' own refresh

GET and HEAD only (405 otherwise), a query string ignored (QR apps and messengers add
`?utm_...`), paths of at most `MAX_PATH` bytes (414), unknown paths and bays 404; every
refusal is a short text body, and a bug in a handler is a 500 with a short text and a log
line, never a traceback to the client. A background task feeds the snapshot to the finish
estimator every `SAMPLE_EVERY_S`, whether anyone looks or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from chargectl.outputs import residents_view as view

log = logging.getLogger("chargectl.outputs.residents")

MAX_PATH = 256  # a bay page's path is a few dozen bytes
SAMPLE_EVERY_S = 5.0
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": view.CSP,
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _text(status: int, text: str, **headers: str) -> web.Response:
    return web.Response(status=status, text=text + "\n", headers={**HEADERS, **headers})


class ResidentsPage:
    def __init__(self, snapshot: Callable[[], Mapping[str, Any]], *, host: str, port: int) -> None:
        self._snapshot = snapshot
        self._host = host
        self._port = port
        self.estimator = view.FinishEstimator()
        self.errors = 0  # handler bugs answered 500 (the tests look at it)
        self.app = self._build_app()
        self._runner: web.AppRunner | None = None
        self._sampler: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The port bound (the one asked for, or the free one port 0 found once started)."""
        if self._runner is None or not self._runner.addresses:
            return self._port
        return int(self._runner.addresses[0][1])

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        self._sampler = asyncio.create_task(self._sample(), name="residents-sampler")

    async def close(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def sample(self) -> None:
        """Feed the current snapshot to the estimator (the sampler does it on its cadence)."""
        self.estimator.observe(self._snapshot())

    async def _sample(self) -> None:
        while True:
            try:
                self.sample()
            except Exception:  # a bad snapshot must not end the sampling for good
                log.exception("residents' page: reading the snapshot failed")
            await asyncio.sleep(SAMPLE_EVERY_S)

    # -- the application ---------------------------------------------------------------------
    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=1024)
        app.router.add_get("/", self._shed)
        app.router.add_get("/api/state.json", self._state)
        app.router.add_get("/bay/{bay:.+}", self._bay)
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return _text(405, "this page is read-only: GET only", Allow="GET, HEAD")
        if len(request.raw_path) > MAX_PATH:
            return _text(414, "the address is too long")
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return _text(404, "no such page: the shed's page is at /")
        except web.HTTPMethodNotAllowed:
            return _text(405, "this page is read-only: GET only", Allow="GET, HEAD")
        except web.HTTPException as exc:
            return _text(exc.status, exc.reason)
        except Exception:
            self.errors += 1
            log.exception("residents' page: %s failed", request.path[:80])
            return _text(500, "the page could not be made; try again")

    def _public(self) -> dict[str, Any]:
        return view.public_state(self._snapshot(), self.estimator)

    async def _shed(self, request: web.Request) -> web.Response:
        return self._html(view.shed_page(self._public()))

    async def _state(self, request: web.Request) -> web.Response:
        body = view.state_json(self._public())
        return web.Response(body=body, content_type="application/json", headers=HEADERS)

    async def _bay(self, request: web.Request) -> web.Response:
        state = self._public()
        wanted = request.match_info["bay"]
        for bay in state["bays"]:
            if bay["id"] == wanted:
                return self._html(view.bay_page(state, bay))
        if not state["ready"]:
            return _text(503, "the shed's controller is starting; try again in a minute")
        return _text(404, "no such socket in this shed: the shed's page is at /")

    @staticmethod
    def _html(page: str) -> web.Response:
        return web.Response(text=page, content_type="text/html", charset="utf-8", headers=HEADERS)
