"""Every declared label value can happen: each value of every fixed label set in the metrics
table (end reasons, tap results, faults, alarms, device errors, bay states) is produced, one
at a time, against the simulator over real Modbus TCP, and the daemon's scrape shows it.

The cases come from the table itself: a value added there without a way to produce it here
fails (`WAYS` has no entry for it). Each way injects what a real shed would have (a card, a
charger, a hot socket, a silent unit) through the simulator's own vocabulary
(chargectl.sim.actions) and the daemon's API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from chargectl.config.load import load_shed
from chargectl.outputs.metric_table import METRICS
from chargectl.sim.actions import apply
from tests.integration.helpers import scrape
from tests.rig import CARD, OTHER_CARD, Rig, add_cards, running_shed
from tests.sessions_e2e.shed import (
    SPEED,
    WALLBOX,
    e2e_config,
    until_charging,
    until_ended,
    until_running,
)

pytestmark = pytest.mark.timeout(120)

SOCKET, OTHER_SOCKET, EMPTY_SOCKET = "pile-a/1", "pile-a/2", "pile-a/3"
CHARGER = {"bay": SOCKET, "profile": "li48", "soc": 0.3}
CAR = {"device": WALLBOX, "max_a": 16, "phases": 1, "soc": 0.4}
# Cards besides the rig's own (CARD, OTHER_CARD), with their settings in the ledger.
CARDS: dict[str, dict[str, Any]] = {
    "04B10C4D": {"status": "blocked"},
    "04E8B1ED": {"expires": date(2000, 1, 1)},
    "04000A0B": {"daily_kwh": 0.001},  # 1 Wh: a session reaches it in seconds
}
BLOCKED, EXPIRED, TINY_QUOTA = CARDS


@dataclass(frozen=True)
class Way:
    """How to make one label value happen: the shed's settings, then what to do."""

    do: Callable[[Rig], Any]  # may return an awaitable
    sessions: Mapping[str, float] = field(default_factory=dict)
    control: Mapping[str, float] = field(default_factory=dict)
    chargers: tuple[Mapping[str, Any], ...] = (CHARGER,)
    cars: tuple[Mapping[str, Any], ...] = ()
    speed: float = SPEED


def act(rig: Rig, do: str, **params: Any) -> None:
    apply(rig.sim, {"do": do, **params})


async def session(rig: Rig, bay: str = SOCKET, card: str = CARD) -> None:
    rig.tap(bay, card)
    await until_running(rig, bay)


async def charging(rig: Rig, bay: str = SOCKET, card: str = CARD) -> None:
    await session(rig, bay, card)
    await until_charging(rig, bay)


def doing(*steps: Callable[[Rig], Any]) -> Callable[[Rig], Awaitable[None]]:
    """Steps in order; an async one is awaited before the next."""

    async def run(rig: Rig) -> None:
        for step in steps:
            done = step(rig)
            if asyncio.iscoroutine(done):
                await done

    return run


def tap(uid: str, bay: str = SOCKET) -> Callable[[Rig], None]:
    return lambda rig: rig.tap(bay, uid)


def action(do: str, **params: Any) -> Callable[[Rig], None]:
    return lambda rig: act(rig, do, **params)


async def stop_by_card(rig: Rig) -> None:
    await charging(rig)
    await asyncio.sleep(1.2)  # past sessions.tap_debounce_s: a second tap, not a repeat
    rig.tap(SOCKET, CARD)


async def quota_used(rig: Rig) -> None:
    """A session on the 1 Wh card runs until its quota ends it; the card taps again."""
    await session(rig, SOCKET, TINY_QUOTA)
    await until_ended(rig, SOCKET, 30)
    rig.tap(SOCKET, TINY_QUOTA)


async def alarm_seen(rig: Rig) -> None:
    """The daemon has taken the alarm (a tap read in the same tick is judged before it)."""
    await rig.wait_for(lambda: rig.status()["alarm"] is not None, 10, "the alarm")


async def no_room(rig: Rig) -> None:
    """Unmanaged load that leaves less than any bay's minimum on the 30 A circuit."""
    act(rig, "load", circuit="main", amps=[27.0])
    await rig.wait_for(lambda: rig.status()["circuits"][0]["current_a"][0] > 26.0, 10, "load")


async def line_lost(rig: Rig) -> None:
    await rig.sim.servers["line-1"].close()  # the RS485-to-TCP gateway goes away


def staff_stop(rig: Rig) -> Awaitable[tuple[int, Any]]:
    return rig.api("/sessions/stop", {"bay": SOCKET})


WELDED = Way(action("welded", bay=SOCKET))  # a charger plugged, no session: current flows
SMOKE = doing(session, action("smoke", device="pile-a"))
WAYS: dict[str, dict[str, Way]] = {
    "chargectl_sessions_total": {
        "user_stop": Way(stop_by_card),
        "full": Way(
            session,
            sessions={"full_hold_s": 5.0, "full_topup_s": 2.0, "unplugged_window_s": 30.0},
            control={"watchdog_s": 300},
            chargers=({"bay": SOCKET, "profile": "li48", "soc": 0.9935},),
            speed=60.0,
        ),
        "unplugged": Way(
            doing(lambda r: charging(r, WALLBOX), action("unplug", bay=WALLBOX)), cars=(CAR,)
        ),
        "no_load": Way(lambda r: session(r, EMPTY_SOCKET), sessions={"no_load_s": 3.0}),
        "max_duration": Way(charging, sessions={"max_duration_s": 3.0}),
        "quota": Way(lambda r: session(r, SOCKET, TINY_QUOTA)),
        "over_power": Way(
            doing(
                action("heater", bay=EMPTY_SOCKET, watts=3000.0), lambda r: session(r, EMPTY_SOCKET)
            )
        ),
        "over_temp": Way(doing(charging, action("hot", bay=SOCKET, extra_c=1000.0))),
        "fault": Way(doing(charging, action("short", bay=SOCKET))),
        "emergency": Way(SMOKE),
        "staff_stop": Way(doing(session, staff_stop)),
    },
    "chargectl_card_taps_total": {
        "started": Way(tap(CARD)),
        "stopped": Way(stop_by_card),
        "unknown": Way(tap("0A0B0C0D")),
        "blocked": Way(tap(BLOCKED)),
        "expired": Way(tap(EXPIRED)),
        "quota": Way(quota_used),
        "busy": Way(doing(session, tap(OTHER_CARD))),
        "unavailable": Way(doing(action("smoke", device="pile-a"), alarm_seen, tap(CARD))),
        "invalid": Way(tap("00000000")),  # a reader's all-zero UID is never a card
        "limit": Way(doing(session, tap(CARD, OTHER_SOCKET))),
    },
    "chargectl_bay_fault": {
        "over_power": Way(
            doing(
                action("heater", bay=EMPTY_SOCKET, watts=3000.0), lambda r: session(r, EMPTY_SOCKET)
            )
        ),
        "over_temp": Way(doing(charging, action("hot", bay=SOCKET, extra_c=1000.0))),
        "welded": WELDED,
        "short_circuit": Way(action("short", bay=SOCKET)),
        "evse_fault": Way(action("rcd", device=WALLBOX)),
    },
    "chargectl_alarm": {
        "smoke": Way(action("smoke", device="pile-a")),
        "estop": Way(action("estop", device="pile-a")),
        "welded": WELDED,
        "pile_overtemp": Way(action("cabinet", device="pile-a", extra_c=50.0)),
        "supply_fault": Way(action("supply_v", volts=150.0)),
    },
    "chargectl_device_errors_total": {
        "timeout": Way(action("silent", device="supply-meter")),
        "exception_reply": Way(action("exception", device="supply-meter", code=4)),
        "bad_value": Way(action("garbage", device="supply-meter", addr=6, value=0x7FC0)),  # NaN
        "bad_field": Way(action("garbage", device="pile-a", addr=4, value=0x7FFF)),  # 3276.7 C
        "connection_lost": Way(line_lost),
    },
    "chargectl_bay_state": {
        "idle": Way(lambda r: asyncio.sleep(0)),
        "waiting": Way(doing(no_room, session)),
        "charging": Way(charging),
        "paused": Way(doing(no_room, lambda r: session(r, WALLBOX)), cars=(CAR,)),
        "fault": Way(action("short", bay=SOCKET)),
        "disabled": Way(action("silent", device="pile-a")),
    },
}

CASES = [(m.name, m.labels[-1], v) for m in METRICS for v in m.values]


def test_the_cases_cover_every_fixed_label_set() -> None:
    assert {name for name, _, _ in CASES} == set(WAYS)
    for name, ways in WAYS.items():
        declared = {v for n, _, v in CASES if n == name}
        assert set(ways) <= declared, (
            f"{name}: ways for values not declared: {set(ways) - declared}"
        )


def shown(samples: dict[tuple[str, Any], float], name: str, label: str, value: str) -> bool:
    """A sample of `name` with label=value that says it happened: a counter counted it, a
    gauge (a fault, an alarm, a bay's state) is 1."""
    counter = name.endswith("_total")
    return any(
        n == name and dict(lab).get(label) == value and (v >= 1 if counter else v == 1)
        for (n, lab), v in samples.items()
    )


@pytest.mark.parametrize(
    ("name", "label", "value"), CASES, ids=[f"{n[10:]}-{v}" for n, _, v in CASES]
)
async def test_each_declared_value_happens(
    tmp_path: Path, name: str, label: str, value: str
) -> None:
    way = WAYS.get(name, {}).get(value)
    assert way is not None, f"{name}{{{label}={value!r}}}: declared, but no way to produce it"
    cfg = e2e_config(
        tmp_path,
        sessions=way.sessions,
        control={"watchdog_s": 30, **way.control},
        chargers=way.chargers,
        cars=way.cars,
    )
    shed = load_shed(cfg)
    for uid, settings in CARDS.items():
        add_cards(shed, [uid], **settings)
    async with running_shed(cfg, speed=way.speed) as rig:
        before = await scrape(rig)
        if (name, value) != ("chargectl_bay_state", "idle"):  # every bay is idle at first
            assert not shown(before, name, label, value), f"{value} before anything happened"
        await doing(way.do)(rig)
        deadline = asyncio.get_running_loop().time() + 40
        while not shown(await scrape(rig), name, label, value):
            assert asyncio.get_running_loop().time() < deadline, (
                f"{name}{{{label}={value!r}}}: never shown"
            )
            await asyncio.sleep(0.2)
