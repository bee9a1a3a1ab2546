"""Helpers for the session end-to-end tests: a shed config with short session thresholds, the
simulator's truth about a bay (its lamp, relay and energy register), the ledger as the staff
see it, and the staff command line run as a real subprocess.

The config is the small example (one 12-port pile and a supply meter) plus a single-phase
wallbox `wb-1` on the same line, with a fast tick and slow poll so that the rules play out in
seconds. Thresholds a test does not care about stay long, so they never end a session early.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from collections.abc import Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chargectl.sessions import ledger
from chargectl.sessions.ledger import SessionRow
from chargectl.sessions.records import TapRecord, counter_delta
from chargectl.sim.devices.registers import wh_counter
from chargectl.sim.runner import Simulator
from tests.rig import Rig, write_config

CHARGECTL = str(Path(sys.executable).with_name("chargectl"))
WALLBOX = "wb-1"

# Lamp values (pile.md / evse.md indicator registers).
OFF, AVAILABLE, CHARGING, WAITING, FAULT, REJECTED, ACCEPTED, COMPLETE = range(8)

# Long enough that no rule fires unless a test shortens it.
QUIET_SESSIONS: dict[str, float] = {
    # The simulator runs up to 60x faster than the daemon's clock here: its counters move that
    # much faster than any real bay could, so the plausibility margin grows with it.
    "counter_power_margin": 1.25 * 80,
    "full_hold_s": 3600.0,
    "full_topup_s": 3600.0,
    "unplugged_window_s": 600.0,
    "no_load_s": 600.0,
    "max_duration_s": 36000.0,
    "checkpoint_s": 2.0,
    "settle_s": 2.0,
    "tap_lamp_s": 1.0,
    "complete_lamp_s": 600.0,
    "load_sustain_s": 1.0,  # a load shows in a second, so no_load plays out in seconds
    "tap_debounce_s": 1.0,  # a stop tap may follow its start tap within seconds here
}
FAST_CONTROL: dict[str, float] = {
    "tick_s": 0.25,
    "slow_poll_s": 1.0,  # energy counters every second: settling and quota in seconds
    "min_on_s": 0.0,
    "min_off_s": 0.0,
    # The simulator runs sped up (SPEED): its watchdog counts simulated seconds, so it must
    # outlast a tick's worth of them with room to spare.
    "watchdog_s": 30,
}
# Simulated seconds per wall second: chargers deliver Wh in seconds; the daemon's session
# timers run on its own (real) clock, so the thresholds above are wall seconds.
SPEED = 8.0


def e2e_config(
    tmp_path: Path,
    *,
    sessions: Mapping[str, float] | None = None,
    control: Mapping[str, float] | None = None,
    chargers: Iterable[Mapping[str, Any]] = (),
    cars: Iterable[Mapping[str, Any]] = (),
) -> Path:
    """The small shed plus `wb-1`, free ports, the ledger in `tmp_path`."""

    def edit(d: dict[str, Any]) -> None:
        d["devices"].append(
            {
                "id": WALLBOX,
                "kind": "evse",
                "bus": "line-1",
                "unit": 21,
                "circuit": "main",
                "phases": [1],
                "max_current_a": 16,
            }
        )
        d["control"] = {**d.get("control", {}), **FAST_CONTROL, **(control or {})}
        d["sessions"] = {**QUIET_SESSIONS, **(sessions or {})}
        d["sim"]["chargers"] = [dict(c) for c in chargers]
        d["sim"]["cars"] = [dict(c) for c in cars]

    return write_config(tmp_path, "small", edit=edit)


# ----- the simulator's truth ----------------------------------------------------------------
def _port(bay: str) -> tuple[str, int]:
    dev, port = bay.rsplit("/", 1)
    return dev, int(port)


def lamp(sim: Simulator, bay: str) -> int:
    """The indicator register the device holds for the bay (what the resident sees)."""
    if "/" not in bay:
        return int(sim.world.models[bay].snapshot()["indicator"])
    dev, port = _port(bay)
    return int(sim.world.models[dev].snapshot()["indicator"][port - 1])


def counter(sim: Simulator, bay: str) -> int:
    """The bay's lifetime energy register (whole Wh, as a controller reads it)."""
    if "/" not in bay:
        return wh_counter(float(sim.world.models[bay].snapshot()["energy_wh"]))
    dev, port = _port(bay)
    return wh_counter(float(sim.world.models[dev].snapshot()["energy_wh"][port - 1]))


def closed(sim: Simulator, bay: str) -> bool:
    """A socket's contacts are closed, or a wallbox offers current (the device's own state,
    live: the world's copy of it is refreshed on its next step)."""
    if "/" not in bay:
        return float(sim.world.models[bay].snapshot()["offered_a"]) >= 6.0
    dev, port = _port(bay)
    return bool(sim.world.models[dev].snapshot()["contact_closed"][port - 1])


def watts(sim: Simulator, bay: str) -> float:
    if "/" not in bay:
        return float(sim.world.models[bay].snapshot()["watts"])
    return float(sim.world.bay_truth(bay)["watts"])


# ----- the ledger as the staff see it -------------------------------------------------------
def sessions(path: Path) -> list[SessionRow]:
    with closing(ledger.connect(path, create=False)) as conn:
        return ledger.list_sessions(conn)


def taps(path: Path) -> list[TapRecord]:
    with closing(ledger.connect(path, create=False)) as conn:
        return ledger.list_taps(conn)


@dataclass(frozen=True)
class Counters:
    """A session's counter readings as the ledger holds them."""

    start: int | None
    last: int | None
    energy_wh: int

    @property
    def delta(self) -> int:
        return counter_delta(self.start, self.last)


def counters(path: Path, session_id: int) -> Counters:
    with closing(sqlite3.connect(path)) as conn:
        row = conn.execute(
            "SELECT counter_start, counter_last, energy_wh FROM sessions WHERE id = ?",
            (session_id,),
        ).fetchone()
    if row is None:
        raise AssertionError(f"session {session_id} is not in the ledger {path}")
    return Counters(row[0], row[1], int(row[2]))


def session_at(path: Path, bay: str) -> SessionRow | None:
    """The bay's latest session."""
    rows = [r for r in sessions(path) if r.bay == bay]
    return rows[-1] if rows else None


def running_at(path: Path, bay: str) -> SessionRow | None:
    row = session_at(path, bay)
    return row if row is not None and row.end is None else None


def ended_at(path: Path, bay: str) -> SessionRow | None:
    row = session_at(path, bay)
    return row if row is not None and row.end is not None else None


# ----- waiting on the rig -------------------------------------------------------------------
async def until_lamp(rig: Rig, bay: str, value: int, within: float = 10.0) -> None:
    await rig.wait_for(lambda: lamp(rig.sim, bay) == value, within, f"lamp {value} at {bay}")


async def until_running(rig: Rig, bay: str, within: float = 10.0) -> SessionRow:
    path = rig.shed.ledger_path()
    row: SessionRow = await rig.wait_for(
        lambda: running_at(path, bay), within, f"a session at {bay}"
    )
    return row


async def until_ended(rig: Rig, bay: str, within: float = 15.0) -> SessionRow:
    path = rig.shed.ledger_path()
    row: SessionRow = await rig.wait_for(
        lambda: ended_at(path, bay), within, f"the session at {bay} to end"
    )
    return row


async def until_charging(rig: Rig, bay: str, within: float = 10.0) -> None:
    """The relay is closed and the charger draws."""
    await rig.wait_for(
        lambda: closed(rig.sim, bay) and watts(rig.sim, bay) > 5.0, within, f"{bay} drawing"
    )


async def check_energy(rig: Rig, row: SessionRow, truth_start: int) -> int:
    """Once the ended session has settled, its ledger energy must equal the bay's counter
    delta since `truth_start` (the register before the tap) within 1 Wh; returns the energy.

    The relay opens on the tick that ends the session; the counter is read every slow poll and
    an ended session takes readings for `settle_s`: after that, the ledger row is final.
    """
    sim = rig.shed.sessions
    await rig.wait_for(lambda: not closed(rig.sim, row.bay), 10, f"{row.bay} open")
    await asyncio.sleep(sim.settle_s + rig.shed.control.slow_poll_s + 0.5)
    truth = counter_delta(truth_start, counter(rig.sim, row.bay))
    held = counters(rig.shed.ledger_path(), row.id)
    assert held.energy_wh == held.delta, f"session {row.id}: {held} (energy is not its delta)"
    got = held.energy_wh
    assert abs(got - truth) <= 1, (
        f"session {row.id} at {row.bay}: ledger {got} Wh, counter delta {truth} Wh"
    )
    return got


# ----- the staff command line ---------------------------------------------------------------
async def chargectl(*args: str, limit_s: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run `chargectl ARGS` as a subprocess (from a thread: the loop keeps serving)."""
    return await asyncio.to_thread(
        subprocess.run,
        [CHARGECTL, *args],
        capture_output=True,
        text=True,
        timeout=limit_s,
        check=False,
    )
