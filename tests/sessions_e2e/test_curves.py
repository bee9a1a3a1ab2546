"""Session curves end to end: the daemon and the simulator on one virtual clock (the replay's
framed Modbus line), a li60 charger charging for 5 virtual minutes; the ledger then
holds the session's per-minute curve, its watts close to the simulator's own for the socket."""

from __future__ import annotations

import asyncio
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from chargectl.config.load import load_shed
from chargectl.replay.wire import FrameStats, advance, settle, simulator_factories
from chargectl.runtime.clock import VirtualClock
from chargectl.runtime.daemon import Daemon, Options
from chargectl.sessions import ledger
from chargectl.sessions.curves import curve_of
from chargectl.sim.runner import Simulator
from tests.replay.test_wire import on_virtual
from tests.rig import add_cards, bay_card, bay_cards, write_config

pytestmark = pytest.mark.timeout(120)

BAY = "pile-a/3"


async def test_a_charging_session_leaves_its_curve(tmp_path: Path) -> None:
    def edit(d: dict[str, Any]) -> None:  # the relay closes at once after the tap
        d["control"] = {**d.get("control", {}), "min_on_s": 0.0, "min_off_s": 0.0}

    shed = load_shed(write_config(tmp_path, "small", edit=edit))
    add_cards(shed, bay_cards(shed))
    sim = Simulator(shed, virtual=True)
    clock = sim.clock
    assert isinstance(clock, VirtualClock)
    sim.world.plug_charger(BAY, "li60", 0.2)  # constant current all along
    options = Options(
        clock=clock,
        client_factories=simulator_factories(sim, FrameStats()),
        serve_metrics=False,
        serve_api=False,
    )
    daemon = Daemon(shed, options)
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop), name="daemon")
    deadline = time.monotonic() + 60  # the kernel compiles in a thread, in real time
    while daemon.first_write_s is None:
        assert not task.done(), task.result()
        assert time.monotonic() < deadline, "the daemon did not start"
        await settle()
        await asyncio.sleep(0.01)
    sim.world.tap(BAY, bytes.fromhex(bay_card(BAY)))
    truth: list[float] = []
    temps: list[float] = []
    for _ in range(320):  # 5 virtual minutes and a bit
        await advance(sim, 1.0)
        truth.append(float(sim.world.bay_truth(BAY)["watts"]))
        temps.append(float(sim.world.bay_truth(BAY)["temp_c"]))
    stop.set()
    await on_virtual(clock, task)

    with closing(ledger.connect(shed.ledger_path(), create=False)) as conn:
        (row,) = ledger.list_sessions(conn)
        curve = curve_of(conn, row.id)
    assert curve is not None and row.bay == BAY
    w = np.array(truth)
    assert np.count_nonzero(w > 5.0) >= 240, "the charger drew for at least 4 minutes"
    assert len(curve) == 5, curve.t  # the minute in progress at the stop is lost
    assert curve.t.tolist() == [60.0 * m for m in range(len(curve))]  # no gaps
    assert np.all(curve.peak_w >= curve.mean_w)
    # The socket's temperature, as the pile reports it (its slow block), near the truth's.
    assert np.all(np.isfinite(curve.temp_c))
    assert np.all(np.abs(curve.temp_c - np.mean(temps)) < 5.0), (curve.temp_c, temps[-1])
    # The session's minute m is about the truth's seconds [60m, 60m + 60) (tapped at 0); the
    # minutes wholly idle or wholly drawing (a slow poll's lag aside) must match the truth.
    checked = 0
    for m, (mean_w, peak_w) in enumerate(zip(curve.mean_w, curve.peak_w, strict=True)):
        window = w[max(0, 60 * m - 15) : 60 * m + 75]
        if np.all(window < 1.0):
            assert peak_w < 1.0, (m, mean_w, peak_w)
            checked += 1
        elif np.all(window > 5.0):
            truth_w = float(window.mean())
            assert mean_w == pytest.approx(truth_w, rel=0.05), (m, mean_w, truth_w)
            assert peak_w == pytest.approx(float(window.max()), rel=0.05), (m, peak_w)
            checked += 1
    assert checked >= 3, (curve.mean_w, checked)
