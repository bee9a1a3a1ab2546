"""The small shed on one RS485 line at 9600 baud (RTU on a pty, the simulator pacing every
byte at the line's speed): the daemon controls it at its 1 s tick, sessions charge, and an
unmanaged load step is still shed within the tick after the meter."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.integration.helpers import open_sessions, trace_truth
from tests.rig import running_shed, write_config

TICK_S = 1.0
REFRESH_S = 1.0


class Durations:
    def __init__(self) -> None:
        self.seconds: list[float] = []

    def report(self, tick: object) -> None:
        self.seconds.append(float(tick.duration_s))  # type: ignore[attr-defined]


async def test_small_shed_at_9600_baud_is_controlled_at_its_tick(tmp_path: Path) -> None:
    bays = [f"pile-a/{p}" for p in range(1, 11)]
    cfg = write_config(
        tmp_path,
        "small",
        transport="rtu",
        baudrate=9600,
        overrides={
            "control": {"tick_s": TICK_S},
            "sim": {
                "pace": True,
                "meter_refresh_s": REFRESH_S,
                "chargers": [{"bay": b, "profile": "li72", "soc": 0.3} for b in bays],
            },
        },
    )
    async with running_shed(cfg) as rig:
        durations = Durations()
        rig.daemon.controller.reporters.append(durations)
        await open_sessions(rig, bays, within=15)
        await rig.wait_for(lambda: rig.truth()["bays_charging"] >= 8, 15, "8 bays charging")
        await rig.ticks(3)

        with trace_truth(rig) as trace:
            amps = rig.truth()["circuits"]["main"]["amps"][0]
            rig.sim.world.set_load_step("main", [30.0 - amps + 4.0])
            await rig.ticks(5)

        t, a = trace.circuit("main")
        over = a[:, 0] > 30.0
        assert over.any(), "the step must push the supply over its limit"
        first = int(np.argmax(over))
        back = first + int(np.argmin(over[first:]))
        assert not over[back] and not over[back:].any()
        # The meter refresh, then at most a tick to the next poll, then the paced line's
        # reads and the write (a few hundred ms at 9600 baud).
        assert t[back] - t[first] <= REFRESH_S + TICK_S + 0.8
        assert rig.truth()["trips"] == []

        # Every tick (hot reads, meter, writes, heartbeat at 1.15 ms a byte) fits the tick.
        assert len(durations.seconds) >= 8
        assert max(durations.seconds) < TICK_S
        requests = rig.sim.servers["line-1"].answered
        assert requests[1] > 10 and requests[10] > 10  # pile and meter both answered
