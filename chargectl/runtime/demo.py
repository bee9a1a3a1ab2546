"""`chargectl demo`: the simulator and the controller together on loopback, no hardware.

Residents arrive through the evening, compressed so that something happens every few seconds
(physics stays in real time): they plug an e-bike charger into a free socket and tap their card,
now and then a car arrives at a wallbox, someone stops early, a stranger's card is rejected, and
once in a while a load steps up on the supply so the controller has to shed. The view shows the
circuits against their limits, the bays by state and the events; the metrics endpoint and the
daemon's local API run as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from chargectl.config.schema import Shed, TcpBus
from chargectl.drivers.registry import templates_for
from chargectl.outputs.view import render_status
from chargectl.runtime.daemon import Daemon, Options
from chargectl.sessions import ledger
from chargectl.sessions.cards import Card, parse_uid
from chargectl.sim.physics.chargers import PROFILE_NAMES
from chargectl.sim.runner import Simulator

RESIDENTS = 240
STRANGER = "DEADBEEF"  # a card nobody registered
RUSH_EVERY_S = 0.3


def demo_cards(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    uids: set[str] = set()
    while len(uids) < n:
        uids.add("04" + "".join(f"{rng.randrange(256):02X}" for _ in range(3)))
    return sorted(uids)


def prepare(shed: Shed, state_dir: Path) -> tuple[Shed, list[str]]:
    """The demo's shed: buses on free ports, the ledger in `state_dir`, nothing plugged yet,
    and a card for every resident."""
    shed = dataclasses.replace(
        shed,
        buses=tuple(
            dataclasses.replace(b, port=0) if isinstance(b, TcpBus) else b for b in shed.buses
        ),
        ledger=str(state_dir / "demo.db"),
        sim=dataclasses.replace(shed.sim, chargers=(), cars=()),
    )
    cards = demo_cards(RESIDENTS, shed.sim.seed)
    conn = ledger.connect(shed.ledger_path())
    try:
        ledger.migrate(conn)
        existing = {c.uid for c in ledger.list_cards(conn)}
        for i, uid in enumerate(cards):
            if uid not in existing:
                ledger.add_card(conn, Card(parse_uid(uid), f"flat {101 + i}"), time.time())
    finally:
        conn.close()
    return shed, cards


class Residents:
    """What people do, one action every `every_s` seconds (seeded: the same evening each run)."""

    def __init__(self, sim: Simulator, daemon: Daemon, cards: list[str], seed: int) -> None:
        self.sim = sim
        self.daemon = daemon
        self.cards = cards
        self.rng = random.Random(seed)
        self.at: dict[str, str] = {}  # bay -> card of whoever plugged in there
        self.step_until = 0.0

    def _free_sockets(self) -> list[str]:
        return [b.id for b in self.daemon.layout.bays if b.is_socket and b.id not in self.at]

    def _state(self, bay: str) -> str:
        for b in self.daemon.status.latest.get("bays", []):
            if b["id"] == bay:
                return str(b["state"])
        return "idle"

    def act(self, now: float, log: Callable[[str], None]) -> None:
        world = self.sim.world
        rng = self.rng
        # Leave when done: a resident whose bay went idle (full, unplugged) takes the bike.
        for bay in [b for b in self.at if self._state(b) == "idle" and rng.random() < 0.3]:
            world.unplug(bay)
            del self.at[bay]
        if self.step_until and now >= self.step_until:
            world.set_load_step("main", [0.0] * len(world.topo.circuit_phases[0]))
            self.step_until = 0.0
            log("the kitchen kettle and the vending machine are off again")
        roll = rng.random()
        free = self._free_sockets()
        if roll < 0.06 and not self.step_until:
            phases = len(world.topo.circuit_phases[0])
            world.set_load_step("main", [rng.uniform(12.0, 20.0)] + [0.0] * (phases - 1))
            self.step_until = now + 20.0
            log("a load steps up on the supply (L1): watch the controller shed")
        elif roll < 0.12:
            wallboxes = [b.id for b in self.daemon.layout.bays if not b.is_socket]
            free_wb = [w for w in wallboxes if w not in self.at]
            if free_wb:
                wb = rng.choice(free_wb)
                card = self._idle_card()
                world.plug_car(wb, max_a=16.0, phases=3, soc=rng.uniform(0.2, 0.7))
                world.tap(wb, bytes.fromhex(card))
                self.at[wb] = card
                log(f"a car arrives at {wb}")
        elif roll < 0.17 and self.at:
            bay = rng.choice(sorted(self.at))
            world.tap(bay, bytes.fromhex(self.at[bay]))
            log(f"the resident at {bay} stops early")
        elif roll < 0.21 and free:
            world.tap(rng.choice(free), bytes.fromhex(STRANGER))
            log("a stranger's card is tapped")
        else:
            self.arrive()

    def _idle_card(self) -> str:
        """A resident who charges nowhere yet: a card charges at one bay at a time."""
        busy = set(self.at.values())
        return self.rng.choice([c for c in self.cards if c not in busy] or self.cards)

    def arrive(self) -> None:
        """Someone plugs an e-bike charger into a free socket and taps their card."""
        free = self._free_sockets()
        if not free:
            return
        bay = self.rng.choice(free)
        card = self._idle_card()
        self.sim.world.plug_charger(
            bay, self.rng.choice(PROFILE_NAMES), soc=self.rng.uniform(0.05, 0.8)
        )
        self.sim.world.tap(bay, bytes.fromhex(card))
        self.at[bay] = card


async def run_demo(
    shed: Shed,
    stop: asyncio.Event,
    *,
    every_s: float = 3.0,
    rush: int = 100,
    duration_s: float | None = None,
    out: TextIO = sys.stdout,
    state_dir: Path | None = None,
) -> tuple[Simulator, Daemon]:
    state = state_dir or Path(tempfile.mkdtemp(prefix="chargectl-demo-"))
    shed, cards = prepare(shed, state)
    sim = Simulator(shed, templates=templates_for(shed))
    await sim.start()
    # The controller talks to the simulator's buses where they were bound.
    shed = dataclasses.replace(
        shed,
        buses=tuple(
            dataclasses.replace(b, port=int(sim.endpoints[b.id].rsplit(":", 1)[1]))
            if isinstance(b, TcpBus)
            else b
            for b in shed.buses
        ),
    )
    started = asyncio.Event()
    daemon = Daemon(shed, Options(on_started=lambda _d: started.set()))
    people = Residents(sim, daemon, cards, shed.sim.seed)
    tty = out.isatty()
    t0 = time.monotonic()
    daemon_stop = asyncio.Event()

    def note(line: str) -> None:
        daemon.events.add(line)

    async def residents() -> None:
        await started.wait()
        # The evening rush first (the shed fills past what its breakers allow, so sockets
        # wait and take turns), then an arrival every few seconds.
        for _ in range(rush):
            if stop.is_set():
                return
            people.arrive()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RUSH_EVERY_S)
        note(f"the rush is over: {len(people.at)} residents plugged in")
        while not stop.is_set():
            people.act(time.monotonic() - t0, note)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)

    async def view() -> None:
        await started.wait()
        out.write(
            f"chargectl demo: metrics http://{shed.metrics.host}:{daemon.metrics_port}/metrics, "
            f"local API http://{shed.api.host}:{shed.api.port}/status, ledger {shed.ledger}\n"
        )
        last_log = 0.0
        while not stop.is_set():
            now = time.monotonic()
            if tty:
                out.write("\x1b[H\x1b[2J" + screen(sim, daemon) + "\n")
            elif now - last_log >= 10.0:
                out.write(summary(sim, daemon) + "\n")
                last_log = now
            out.flush()
            if duration_s is not None and now - t0 >= duration_s:
                stop.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    async def stopper() -> None:
        await stop.wait()
        daemon_stop.set()

    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(sim.run(stop), name="simulator")
            tg.create_task(daemon.run(daemon_stop), name="controller")
            tg.create_task(residents(), name="residents")
            tg.create_task(view(), name="view")
            tg.create_task(stopper(), name="stopper")
    finally:
        await sim.close()
    out.write(summary(sim, daemon) + "\n")
    return sim, daemon


def screen(sim: Simulator, daemon: Daemon) -> str:
    truth = sim.world.truth(bays=False)
    lines = [render_status(daemon.status.latest, list(daemon.events.lines)[-12:])]
    lines.append("")
    lines.append("simulator (the physical truth):")
    for cid, c in truth["circuits"].items():
        amps = " ".join(f"{a:6.1f}" for a in c["amps"])
        ratio = max(c["breaker"]["thermal_ratio"])
        state = "closed" if c["breaker"]["closed"] else "TRIPPED"
        lines.append(f"  {cid:<8} {amps} A   breaker {state}, thermal {ratio:.2f}")
    lines.append(f"  trips: {len(truth['trips'])}    Ctrl-C ends the demo")
    return "\n".join(lines)


def summary(sim: Simulator, daemon: Daemon) -> str:
    st = daemon.status.latest
    states: dict[str, int] = {}
    for b in st.get("bays", []):
        states[b["state"]] = states.get(b["state"], 0) + 1
    truth = sim.world.truth(bays=False)
    worst = max(
        (max(a / c["limit_a"] for a in c["amps"]) for c in truth["circuits"].values()),
        default=0.0,
    )
    return (
        f"t={truth['time']:.0f}s bays {states} highest load/limit {worst:.2f} "
        f"trips {len(truth['trips'])}"
    )
