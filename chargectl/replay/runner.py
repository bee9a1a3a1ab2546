"""A replay: the simulated shed and the real controller in one process, on one virtual clock.

The controller is the daemon's own assembly (runtime/daemon.py: the tick, the core, the
kernel or a peer policy, the drivers' decoding, the sessions and the SQLite ledger), its
Modbus lines the framed in-memory ones of replay/wire.py. Nothing runs between ticks but the
world: the runner steps the world in its own steps (`sim.step_s`), applies the timeline's
events (plugs, taps, departures, unmanaged load, faults) at the step they fall in, and at
each tick's time runs one controller tick to its end. A tick that waits on the clock (a
silent unit's timeout, a slow device, a paced RTU line) moves the world and the clock on
meanwhile, step by step, as on a real line; the next tick then comes at the next slot, as in
`Controller._run`. What the controller does not have here: the meter watch between ticks
(`control.meter_poll_s`): a replay sheds on the tick only, which is slower, never faster,
than the daemon.

A `crash` fault drops the controller at once, with no fail-safe writes (the devices' own
watchdogs act, as they would); `restart` assembles a new one on the same ledger, which
restores its sessions like a restarted daemon. (The ledger writer is closed at the crash, so
what it had queued is written: a kill can lose the last seconds of checkpoints, a replay
does not.) The latches staff must clear (the shed alarm, bays held out) are in that ledger,
so the restarted controller keeps them; a scenario's staff actions (`clear_alarm`,
`clear_fault`) are carried out at the next tick through the daemon's own staff commands, and
wait for a controller while it is down.

The runner records the truth (replay/recording.py): after every world step the circuits'
true currents (the highest, and the time over each limit) and the breakers' thermal state;
at every tick the rest; for every arrival its socket's true energy, relay switches and state
of charge from plug to departure, matched at the end with the session the ledger booked for
its card.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
import logging
import math
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from chargectl.config.schema import Shed
from chargectl.replay import policies
from chargectl.replay.alone import alone_wh
from chargectl.replay.recording import Mark, Recording, SessionRecord, empty, trimmed
from chargectl.replay.scenario import load_scenario
from chargectl.replay.scenario_faults import CRASH, RESTART, STAFF_COMMANDS
from chargectl.replay.scenario_timeline import Arrival, Timeline, expand
from chargectl.replay.scenario_types import Scenario
from chargectl.replay.wire import FrameStats, settle, simulator_factories
from chargectl.runtime.clock import VirtualClock
from chargectl.runtime.daemon import Daemon, Options
from chargectl.sessions import ledger
from chargectl.sessions.cards import Card, parse_uid
from chargectl.sim.actions import ActionError, apply
from chargectl.sim.physics.chargers import STAGE_NAMES
from chargectl.sim.runner import Simulator

log = logging.getLogger(__name__)
T = TypeVar("T")

POLICY_NAMES = ("chargectl", *policies.POLICIES)
DRAWING_A = 0.05  # a socket or car drawing more than this draws current, in truth
# A session is kept waiting once its bay has drawn nothing for this long while it wants current:
# a start takes the tap's read, the next tick, a staggered close and the charger's soft start.
START_GRACE_S = 10.0
RETAP_S, RETAPS = 6.0, 3  # a tap with no answer (no lamp) is tried again, this often
_FLOAT = STAGE_NAMES.index("float")

Progress = Callable[[float, float], None]  # (simulated seconds done, of total)


def replay_shed(scenario: Scenario, policy: str, ledger_path: Path) -> Shed:
    """The scenario's shed as a replay runs it: its tick, a peer's settings, a ledger of its
    own, no MQTT, and nothing plugged in before the timeline plugs it."""
    shed = scenario.shed
    control = dataclasses.replace(shed.control, tick_s=scenario.tick_s)
    if policy != "chargectl":
        control = policies.peer_settings(control)
    return dataclasses.replace(
        shed,
        control=control,
        ledger=str(ledger_path),
        mqtt=dataclasses.replace(shed.mqtt, host=None),
        sim=dataclasses.replace(shed.sim, chargers=(), cars=()),
    )


@dataclass
class _Visit:
    """An arrival while its bay is taken: what the truth said at the plug, and since."""

    arrival: Arrival
    energy_wh: float  # the bay's true energy counter at the plug
    switches: int  # the bay's switch counter at the plug
    wanted_wh: float
    max_w: float
    first_current_at: float | None = None
    left_at: float | None = None
    energy_end_wh: float = 0.0
    switches_end: int = 0
    soc_end: float = 0.0
    full: bool = False


class Replay:
    """One scenario under one policy. `run()` once; it returns the `Recording`."""

    def __init__(self, scenario: Scenario, policy: str = "chargectl", workdir: Path | None = None):
        if policy not in POLICY_NAMES:
            raise ValueError(f"unknown policy {policy!r}; one of: {', '.join(POLICY_NAMES)}")
        self.scenario = scenario
        self.policy = policy
        self._tmp = None if workdir is not None else tempfile.TemporaryDirectory()
        self.workdir = workdir if workdir is not None else Path(self._tmp.name)  # type: ignore[union-attr]
        self.shed = replay_shed(scenario, policy, self.workdir / f"replay-{policy}.db")
        self.timeline: Timeline = expand(scenario)
        self.sim = Simulator(self.shed, virtual=True)
        clock = self.sim.clock
        assert isinstance(clock, VirtualClock)
        self.clock = clock
        self.world = self.sim.world
        self.stats = FrameStats()
        self.factories = simulator_factories(self.sim, self.stats)
        self.daemon: Daemon | None = None
        self._restart_due = False
        self._staff_due: list[dict[str, Any]] = []  # staff actions for the next tick
        self._wants = np.zeros(0, dtype=bool)
        self._events: list[tuple[float, int, str, Any]] = []
        self._judged: set[str] = set()  # card UIDs whose taps the controller judged
        self.applied_errors: list[str] = []

    # -- assembly ---------------------------------------------------------------------------
    def _register_cards(self) -> None:
        conn = ledger.connect(self.shed.ledger_path())
        try:
            ledger.migrate(conn)
            cards = [
                Card(parse_uid(a.uid), f"resident {i + 1}")
                for i, a in enumerate(self.timeline.arrivals)
            ]
            ledger.import_cards(conn, cards, self.clock.wall())
        finally:
            conn.close()

    def _options(self) -> Options:
        allocate = None
        if self.policy != "chargectl":
            name, clock = self.policy, self.clock

            def allocate(layout: Any) -> Any:
                policy = policies.make_policy(name, layout)

                def call(*arrays: Any) -> Any:
                    policy.at(clock.now())  # the policy's time, at the edge (it reads none)
                    return policy(*arrays)

                return call

        return Options(
            clock=self.clock,
            client_factories=self.factories,
            serve_metrics=False,
            serve_api=False,
            allocate=allocate,
            outputs=False,
        )

    async def _start_controller(self) -> None:
        daemon = Daemon(self.shed, self._options())
        daemon.writer.start()
        self.daemon = daemon
        await self._drive(daemon.controller.start())

    def _crash(self) -> None:
        if self.daemon is not None:
            self.daemon.writer.close()
            self.daemon = None

    # -- driving time ---------------------------------------------------------------------
    async def _drive(self, aw: Awaitable[T]) -> T:
        """Run `aw` to its end; while it waits on the clock, the world and the clock move on."""
        task = asyncio.ensure_future(aw)
        while True:
            await settle()
            if task.done():
                return task.result()
            due = self.clock.next_deadline()
            if due is None:
                await asyncio.sleep(0)  # a thread (the ledger) will wake it
                continue
            await self._move_to(max(due, self.world.now + 1e-6), settle_steps=True)

    async def _move_to(self, t: float, settle_steps: bool = False) -> None:
        """Step the world to `t`, applying the timeline's events at their steps and recording
        each step's truth; the clock follows the world."""
        w, step = self.world, self.sim.step_s
        while t - w.now > 1e-9:
            await self._due(w.now)
            dt = min(step, t - w.now)
            self.sim.advance(dt)
            self._after_step(dt)
            self.clock.advance(w.now - self.clock.now())
            if settle_steps:
                await settle()
        await self._due(w.now)

    # -- the timeline ---------------------------------------------------------------------
    def _schedule(self) -> None:
        seq = 0
        ev = self._events
        self._seq = itertools.count(1 << 40)  # after the timeline's own
        for i, a in enumerate(self.timeline.arrivals):
            for at, kind in ((a.at, "plug"), (a.tap_at, "tap"), (a.leave_at, "leave")):
                ev.append((at, seq, kind, i))
                seq += 1
        for s in self.timeline.load_steps:
            ev.append((s.at, seq, "action", s.action()))
            seq += 1
        for f in self.timeline.fault_events:
            ev.append((f.at, seq, "fault", f))
            seq += 1
        heapq.heapify(ev)

    async def _due(self, now: float) -> None:
        ev = self._events
        while ev and ev[0][0] <= now + 1e-9:
            _, _, kind, what = heapq.heappop(ev)
            if kind == "plug":
                self._plug(self.timeline.arrivals[what])
            elif kind in ("tap", "retap"):
                i, tries = (what, 0) if kind == "tap" else what
                a = self.timeline.arrivals[i]
                here = a.bay in self._visits and self._visits[a.bay].arrival is a
                if here and (kind == "tap" or parse_uid(a.uid) not in self._judged):
                    # A pile holds only its latest tap: one at the same pile in the same tick
                    # is lost. A resident whose tap got no answer taps again, a few times.
                    self.world.tap(a.bay, bytes.fromhex(a.uid))
                    if tries < RETAPS:
                        heapq.heappush(
                            self._events, (now + RETAP_S, next(self._seq), "retap", (i, tries + 1))
                        )
            elif kind == "leave":
                self._leave(self.timeline.arrivals[what])
            elif kind == "action":
                self._act(what)
            else:
                self._fault(what)

    def _act(self, action: dict[str, Any]) -> None:
        try:
            apply(self.sim, action)
        except ActionError as exc:
            # Names were checked with the scenario; what is left is a state the shed is in
            # (an unpowered pile, say): reported, the replay goes on.
            self.applied_errors.append(f"{self.world.now:.1f} s: {exc}")
            log.warning("replay: %s", exc)

    def _fault(self, f: Any) -> None:
        do = f.action["do"]
        if do == CRASH:
            self._crash()
        elif do == RESTART:
            self._restart_due = True
        elif do in STAFF_COMMANDS:
            self._staff_due.append(dict(f.action))
        else:
            self._act(dict(f.action))

    async def _staff(self, daemon: Daemon) -> None:
        """The staff actions due, as staff carry them out: the daemon's own command (the API's
        and MQTT's `alarm/clear`, `bays/clear-fault`), its parameters the body."""
        due, self._staff_due = self._staff_due, []
        commands = daemon.commands()
        for action in due:
            body = {k: v for k, v in action.items() if k != "do"}
            code, answer = await self._drive(commands[STAFF_COMMANDS[action["do"]]](body))
            if code != 200:
                self.applied_errors.append(f"{self.world.now:.1f} s: {action}: {answer}")
                log.warning("replay: staff %s refused: %s", action, answer)

    # -- arrivals ---------------------------------------------------------------------------
    def _plug(self, a: Arrival) -> None:
        if a.bay in self._visits:  # still taken (the timeline keeps bays apart; be sure)
            return
        self._act(a.plug_action())
        b = self._bay_index[a.bay]
        if a.car is not None:
            wb = self.world.wallboxes[a.bay]
            wanted = (1.0 - a.soc) * a.car.capacity_kwh * 1000.0
            max_w = a.car.max_a * min(a.car.phases, len(wb.phases)) * self.world.nominal_v
        else:
            ch, si = self.world.chargers, self._socket_of[b]
            per_ws = float(ch.soc_per_ws[si])
            wanted = (1.0 - a.soc) / per_ws / 3600.0 if per_ws > 0 else 0.0
            max_w = self._cc_watts(si)
        self._visits[a.bay] = _Visit(a, self._energy_wh(b), int(self._switches[b]), wanted, max_w)
        self._present[b] = True

    def _cc_watts(self, si: int) -> float:
        from chargectl.sim.physics.chargers import PROFILE_NAMES, profile

        p = profile(PROFILE_NAMES[int(self.world.chargers.profile_idx[si])])
        return float(p.full_w)

    def _leave(self, a: Arrival) -> None:
        v = self._visits.get(a.bay)
        if v is None or v.arrival is not a:
            return
        self._close_visit(v, self.world.now)
        self._act({"do": "unplug", "bay": a.bay})

    def _close_visit(self, v: _Visit, now: float) -> None:
        b = self._bay_index[v.arrival.bay]
        v.left_at = now
        v.energy_end_wh = self._energy_wh(b)
        v.switches_end = int(self._switches[b])
        if v.arrival.car is not None:
            car = self.world.wallboxes[v.arrival.bay].car
            v.soc_end = float(car.soc) if car is not None else v.arrival.soc
            v.full = v.soc_end >= 0.999
        else:
            si = self._socket_of[b]
            v.soc_end = float(self.world.chargers.soc[si])
            v.full = int(self.world.chargers.stage[si]) == _FLOAT or v.soc_end >= 0.999
        self._done.append(v)
        del self._visits[v.arrival.bay]
        self._present[b] = False

    # -- truth ------------------------------------------------------------------------------
    def _index_bays(self) -> None:
        layout_bays = [b.id for b in topo_bays(self.shed)]
        self._bay_ids = layout_bays
        self._bay_index = {b: i for i, b in enumerate(layout_bays)}
        self._socket_of = np.array(
            [self.world.bay_index.get(b, -1) for b in layout_bays], dtype=np.int64
        )
        self._is_socket = self._socket_of >= 0
        self._sockets = self._socket_of[self._is_socket]
        self._wallbox_ids = [b for b in layout_bays if b in self.world.wallboxes]
        self._wallbox_rows = np.array(
            [self._bay_index[b] for b in self._wallbox_ids], dtype=np.int64
        )
        n = len(layout_bays)
        self._switches = np.zeros(n, dtype=np.int64)
        self._was_on = np.zeros(n, dtype=bool)
        self._dry_since = np.full(n, np.inf)
        self._present = np.zeros(n, dtype=bool)
        self._visits: dict[str, _Visit] = {}
        self._done: list[_Visit] = []

    def _energy_wh(self, b: int) -> float:
        si = int(self._socket_of[b])
        if si >= 0:
            return float(self.world.socket_ws[si]) / 3600.0
        return self.world.wallboxes[self._bay_ids[b]].energy_ws / 3600.0

    def _drawing(self) -> np.ndarray:
        out = np.zeros(len(self._bay_ids), dtype=bool)
        out[self._is_socket] = self.world.chargers.amps[self._sockets] > DRAWING_A
        for row, wid in zip(self._wallbox_rows, self._wallbox_ids, strict=True):
            out[row] = self.world.wallboxes[wid].last_a > DRAWING_A
        return out

    def _switched_on(self) -> np.ndarray:
        """Per bay: its relay closed in truth (a socket's contacts; a wallbox offering current)."""
        out = np.zeros(len(self._bay_ids), dtype=bool)
        out[self._is_socket] = self.world.closed[self._sockets]
        for row, wid in zip(self._wallbox_rows, self._wallbox_ids, strict=True):
            out[row] = self.world.wallboxes[wid].model.offered_a() > 0.0
        return out

    def _after_step(self, dt: float) -> None:
        w = self.world
        amps = w.circuit_amps
        np.maximum(self._peak, amps, out=self._peak)
        over = ((amps > self._limit3) & self._mask).any(axis=1)
        self._over += over * dt
        np.maximum(self._thermal, w.breakers.ratio(), out=self._thermal)

    def _record(self, rec: Recording, k: int) -> None:
        w = self.world
        rec.times[k] = w.now
        rec.amps[k] = w.circuit_amps
        rec.peak_amps[k] = self._peak
        rec.over_s[k] = self._over
        rec.thermal[k] = self._thermal
        rec.closed[k] = w.breakers.closed
        self._peak[:] = w.circuit_amps
        self._over[:] = 0.0
        self._thermal[:] = w.breakers.ratio()
        # Capacity for charging, in truth: each root's limit less the unmanaged current
        # through it, at the supply's voltage, summed over its phases (the ideal bound's).
        unmanaged = self._subtree @ w.unmanaged_a
        head = np.clip(self._limit3 - unmanaged, 0.0, None) * self._mask
        rec.capacity_w[k] = float(head[self._roots].sum()) * w.volts
        drawing = self._drawing()
        on = self._switched_on()
        self._switches += on != self._was_on
        self._was_on = on
        for b in np.flatnonzero(drawing & self._present):
            v = self._visits.get(self._bay_ids[b])
            if v is not None and v.first_current_at is None and w.now >= v.arrival.tap_at:
                v.first_current_at = w.now
        wants = self._wants if self._wants.shape[0] == len(self._bay_ids) else drawing
        rec.charging[k] = int(drawing.sum())
        # Waiting on the controller: wants current, has none and is not given any. A bay the
        # controller switched on whose battery takes nothing (a car or pack that is full but
        # still plugged, a charger resting) is not kept waiting by anyone.
        dry = wants & self._present & ~drawing & ~on
        self._dry_since = np.where(dry, np.minimum(self._dry_since, w.now), np.inf)
        rec.waiting[k] = int((dry & (w.now - self._dry_since >= START_GRACE_S)).sum())
        room = (self._limit3 - w.circuit_amps) / self._limit3
        rec.unused_ratio[k] = max(0.0, float(room[self._mask].min()))

    # -- the run ----------------------------------------------------------------------------
    async def run(self, progress: Progress | None = None) -> Recording:
        t0 = time.perf_counter()
        sc, w = self.scenario, self.world
        topo = w.topo
        circuits = tuple(topo.circuit_ids)
        phases = tuple(tuple(p) for p in topo.circuit_phases)
        limit = np.array([c.limit_a for c in topo.circuits], dtype=np.float64)
        tick = sc.tick_s
        n_max = int(np.ceil(sc.duration_s / tick)) + 1
        rec = empty(
            sc.name, self.policy, sc.seed, tick, sc.duration_s, circuits, phases, limit, n_max
        )
        self._mask = rec.phase_mask()
        self._limit3 = np.repeat(limit[:, None], 3, axis=1)
        self._subtree = np.asarray(topo.subtree, dtype=np.float64)
        self._roots = np.array([c.parent is None for c in topo.circuits], dtype=bool)
        c = len(circuits)
        self._peak = np.zeros((c, 3))
        self._over = np.zeros(c)
        self._thermal = np.zeros((c, 3))
        self._index_bays()
        self._register_cards()
        self._schedule()
        epoch = self.clock.wall() - self.clock.now()

        await self._start_controller()
        k = 0
        slot = 0.0
        report_every = max(1, int(600 / tick))
        while slot < sc.duration_s - 1e-9 and k < n_max:
            await self._move_to(slot)
            if self._restart_due and self.daemon is None:
                self._restart_due = False
                await self._start_controller()
            if self.daemon is not None and self._staff_due:
                await self._staff(self.daemon)
            if self.daemon is not None:
                outcome = await self._drive(self.daemon.controller.tick())
                self._wants = outcome.demand.wants
                self._judged.update(t.uid for t in outcome.events.taps)
            self._record(rec, k)
            k += 1
            slot += tick
            if w.now > slot:  # overran: the next slot, as the controller's loop does
                slot += np.ceil((w.now - slot) / tick) * tick
            if progress is not None and k % report_every == 0:
                progress(min(w.now, sc.duration_s), sc.duration_s)
        await self._move_to(sc.duration_s)
        for v in list(self._visits.values()):
            self._close_visit(v, w.now)
        await self._finish()
        rec = trimmed(rec, k)
        rec.sessions = self._sessions(epoch)
        rec.marks = self._marks()
        rec.turned_away = len(self.timeline.turned_away)
        rec.wall_s = time.perf_counter() - t0
        if progress is not None:
            progress(sc.duration_s, sc.duration_s)
        return rec

    async def _finish(self) -> None:
        """The replay's end: every session still open is stopped as staff would stop it, and
        the controller ticks on until their energy is final in the ledger (the sessions'
        settle time), then leaves the devices in their fail-safe state. The truth was taken
        at the end already; the relays open at once, so no energy flows meanwhile."""
        self._events.clear()
        if self.daemon is None and self._restart_due:
            await self._start_controller()
        daemon = self.daemon
        if daemon is None:
            return
        clock = self.clock
        for bay in self._bay_ids:
            daemon.link.staff_stop(bay, clock.now(), clock.wall())
        settle_s = self.shed.sessions.settle_s + 3 * self.scenario.tick_s
        end = self.world.now + settle_s
        while self.world.now < end:
            await self._drive(daemon.controller.tick())
            await self._move_to(self.world.now + self.scenario.tick_s)
        await self._drive(daemon.controller.shutdown())
        daemon.writer.close()
        self.daemon = None

    def _sessions(self, epoch: float) -> list[SessionRecord]:
        conn = sqlite3.connect(self.shed.ledger_path())
        try:
            rows = ledger.list_sessions(conn)
        finally:
            conn.close()
        alone = self._alone()
        by_card: dict[str, list[ledger.SessionRow]] = {}
        for r in rows:
            by_card.setdefault(r.card, []).append(r)
        out: list[SessionRecord] = []
        for v in sorted(self._done, key=lambda v: v.arrival.at):
            a = v.arrival
            booked = by_card.get(parse_uid(a.uid), [])
            if not booked:
                continue  # refused, or the tap was never read: no session to account
            first = booked[0]
            end = first.end
            out.append(
                SessionRecord(
                    id=first.id,
                    card=parse_uid(a.uid),
                    bay=a.bay,
                    car=a.car is not None,
                    plug_at=a.at,
                    tap_at=a.tap_at,
                    first_current_at=v.first_current_at,
                    end_at=None if end is None else end - epoch,
                    end_reason=first.reason,
                    leave_at=v.left_at
                    if v.left_at is not None and v.left_at < self.scenario.duration_s
                    else None,
                    soc_start=a.soc,
                    soc_end=v.soc_end,
                    wanted_wh=v.wanted_wh,
                    max_w=v.max_w,
                    delivered_wh=v.energy_end_wh - v.energy_wh,
                    ledger_wh=float(sum(r.energy_wh for r in booked)),
                    switches=v.switches_end - v.switches,
                    full=v.full,
                    alone_wh=alone.get(id(v), math.inf),
                )
            )
        return out

    def _alone(self) -> dict[int, float]:
        """Each socket visit's energy had its charger been on alone for its whole stay."""
        visits = [v for v in self._done if v.arrival.charger is not None]
        end = self.scenario.duration_s
        wh = alone_wh(
            [v.arrival.charger.profile for v in visits],  # type: ignore[union-attr]
            [v.arrival.soc for v in visits],
            [max(0.0, min(v.arrival.leave_at, end) - v.arrival.at) for v in visits],
            self.world.nominal_v,
        )
        return {id(v): float(x) for v, x in zip(visits, wh, strict=True)}

    def _marks(self) -> list[Mark]:
        marks = [
            Mark(t.time, "trip", f"{t.circuit} L{t.phase} {t.cause} {t.current_a:.0f} A")
            for t in self.sim.trips
        ]
        for f in self.scenario.faults:
            target = f.action.get("device") or f.action.get("bay") or f.action.get("circuit") or ""
            until = None if f.for_s is None else f.at + f.for_s
            marks.append(Mark(f.at, "fault", f"{f.kind} {target}".strip(), until))
        return sorted(marks, key=lambda m: m.at)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def topo_bays(shed: Shed) -> list[Any]:
    from chargectl.topology import topology_of

    return list(topology_of(shed).bays)


def run_replay(
    scenario: Scenario, policy: str = "chargectl", progress: Progress | None = None
) -> Recording:
    """One replay, start to end, in its own event loop and a temporary directory."""
    replay = Replay(scenario, policy)
    try:
        return asyncio.run(replay.run(progress))
    finally:
        replay.close()


def replay_point(
    scenario_path: str, sockets: int | None, seed: int, policy: str = "chargectl"
) -> dict[str, Any]:
    """One point of a capacity sweep (a process pool's or a Dask worker's job): the scenario
    at `seed`, its shed scaled to `sockets`, replayed; the report."""
    from chargectl.replay.capacity import scaled_shed
    from chargectl.replay.report import report

    logging.getLogger("chargectl").setLevel(logging.ERROR)
    scenario = load_scenario(scenario_path)
    shed = scenario.shed if sockets is None else scaled_shed(scenario.shed, sockets)
    scenario = dataclasses.replace(scenario, shed=shed, seed=seed)
    return report(run_replay(scenario, policy))
