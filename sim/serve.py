"""`chargectl sim` as a coroutine: serve the buses and the control API, step the world, show
the view, end cleanly on a stop event (Ctrl-C / SIGTERM in the command, a test's event here).

Kept apart from the command so `chargectl demo` and tests can run the simulator in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from chargectl.config.schema import Endpoint, Shed
from chargectl.drivers.template import Template
from chargectl.sim.control_api import ControlApi
from chargectl.sim.runner import Simulator
from chargectl.sim.scenario import Scenario
from chargectl.sim.view import render


async def serve(
    shed: Shed,
    stop: asyncio.Event,
    *,
    scenario: Scenario | None = None,
    speed: float = 1.0,
    virtual: bool = False,
    duration_s: float | None = None,
    view: TextIO | None = None,
    view_every_s: float = 1.0,
    control_api: Endpoint | None = None,
    on_ready: Callable[[dict[str, Any]], None] | None = None,
    templates: Mapping[str, Template] | None = None,
) -> Simulator:
    """Run until `stop` is set, the scenario's end, or `duration_s` of simulated time.

    `on_ready` gets {"control_api": url, "buses": {id: endpoint}} once everything listens."""
    sim = Simulator(shed, speed=speed, virtual=virtual, scenario=scenario, templates=templates)
    api = ControlApi(sim)
    ep = control_api or shed.sim.control_api
    try:
        await sim.start()
        port = await api.start(ep.host, ep.port)
        if on_ready is not None:
            on_ready({"control_api": f"http://{ep.host}:{port}", "buses": dict(sim.endpoints)})
        async with asyncio.TaskGroup() as tg:
            tg.create_task(sim.run(stop, until=duration_s), name="sim-steps")
            if view is not None:
                tg.create_task(_view_loop(sim, stop, view, view_every_s), name="sim-view")
            tg.create_task(_watch_end(sim, stop, duration_s), name="sim-end")
    finally:
        await api.close()
        await sim.close()
    return sim


async def _watch_end(sim: Simulator, stop: asyncio.Event, duration_s: float | None) -> None:
    """Set `stop` at the scenario's end or after `duration_s` simulated seconds."""
    while not stop.is_set():
        if sim.finished() or (duration_s is not None and sim.world.now >= duration_s - 1e-9):
            stop.set()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)


async def _view_loop(sim: Simulator, stop: asyncio.Event, out: TextIO, every_s: float) -> None:
    clear = "\x1b[H\x1b[2J" if out.isatty() else ""
    while not stop.is_set():
        text = render(sim.world.truth(), name=sim.shed.shed.name, speed=sim.speed)
        out.write(clear + text + "\n" + ("" if clear else "\n"))
        out.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)


def print_ready(info: dict[str, Any]) -> None:
    """The ready line on stdout: one JSON object (tests and scripts read the bound ports)."""
    print(json.dumps({"ready": True, **info}), flush=True)
    sys.stdout.flush()
