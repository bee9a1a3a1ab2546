"""The running simulator: every bus served, the world stepped on a clock, scenario events
applied between steps, protocol faults per device.

`Simulator(shed)` builds the world and one `BusServer` per config bus (a TCP endpoint with the
devices as unit ids, or an RTU pty linked at the configured path). `advance(seconds)` steps
the world (applying scenario events when due); `run()` does that against a clock:

- real time (`RealClock`), optionally sped up (`speed`): every `tick_s` of wall time the world
  catches up with the clock. A stall longer than `max_lag_s` is not replayed in a burst; the
  lost time is counted in `lag_s` (the simulated clock falls behind, it never jumps).
- virtual (`virtual=True`): nothing moves on its own; the control API's `advance` steps the
  world and moves a `VirtualClock` with it, so the servers' delays and pacing follow
  simulated time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from chargectl.config.schema import RtuBus, Shed, TcpBus
from chargectl.drivers.template import Template
from chargectl.runtime.clock import Clock, RealClock, VirtualClock
from chargectl.sim.actions import ActionError, apply
from chargectl.sim.physics.breakers import Trip
from chargectl.sim.scenario import Scenario, ScenarioPlayer
from chargectl.sim.server import BusServer, UnitFaults
from chargectl.sim.world import MAX_STEP_S, World

log = logging.getLogger(__name__)


class Simulator:
    def __init__(
        self,
        shed: Shed,
        *,
        clock: Clock | None = None,
        speed: float = 1.0,
        virtual: bool = False,
        scenario: Scenario | None = None,
        tick_s: float = 0.05,
        max_lag_s: float = 1.0,
        templates: Mapping[str, Template] | None = None,
    ) -> None:
        """`templates`: kind -> device template (default: the shipped ones)."""
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.shed = shed
        self.virtual = virtual
        self.clock: Clock = clock or (VirtualClock() if virtual else RealClock())
        if virtual and not isinstance(self.clock, VirtualClock):
            raise ValueError("a virtual simulator needs a VirtualClock")
        self.speed = speed
        self.tick_s = tick_s
        self.max_lag_s = max_lag_s
        self.lag_s = 0.0
        self.world: World = World(shed, templates=templates)
        self.step_s = min(shed.sim.step_s, MAX_STEP_S)
        self.player = ScenarioPlayer(scenario) if scenario is not None else None
        self.faults: dict[str, UnitFaults] = {d.id: UnitFaults() for d in shed.devices}
        self.servers: dict[str, BusServer] = {}
        self.endpoints: dict[str, str] = {}  # bus id -> "host:port" or the RTU link path
        self.unit_device: dict[tuple[str, int], str] = {}
        for bus in shed.buses:
            units = {d.unit: self.world.models[d.id] for d in shed.devices if d.bus == bus.id}
            baud = bus.baudrate if isinstance(bus, RtuBus) else None
            server = BusServer(
                units, baudrate=baud, pace=bool(shed.sim.pace and baud), clock=self.clock
            )
            for d in shed.devices:
                if d.bus == bus.id:
                    server.faults[d.unit] = self.faults[d.id]  # shared: live changes apply
                    self.unit_device[(bus.id, d.unit)] = d.id
            server.powered = self._powered_fn(bus.id)
            self.servers[bus.id] = server
        self.trips: list[Trip] = []
        self.on_trip: Callable[[Trip], None] | None = None
        # The simulated instant of a Modbus write between two steps: in real time the world
        # stands at the last step and the clock has moved on since (relays a controller
        # closes a few ms apart are a few ms apart for the chargers' inrush too).
        self._synced = self.clock.now()
        self.world.instant = self._instant

    def _instant(self) -> float:
        w = self.world
        if self.virtual:
            return w.now
        ahead = (self.clock.now() - self._synced) * self.speed
        return w.now + min(max(ahead, 0.0), self.step_s)

    def _powered_fn(self, bus_id: str) -> Callable[[int], bool]:
        def powered(unit: int) -> bool:
            dev = self.unit_device.get((bus_id, unit))
            return dev is not None and self.world.device_powered(dev)

        return powered

    # ------------------------------------------------------------------ serving
    async def start(self) -> None:
        """Serve every bus. A TCP port of 0 binds a free port (see `endpoints`)."""
        for bus in self.shed.buses:
            server = self.servers[bus.id]
            if isinstance(bus, TcpBus):
                port = await server.serve_tcp(bus.host, bus.port)
                self.endpoints[bus.id] = f"{bus.host}:{port}"
            else:
                await server.serve_rtu(bus.port)
                self.endpoints[bus.id] = bus.port

    async def close(self) -> None:
        for server in self.servers.values():
            await server.close()

    # ------------------------------------------------------------------ stepping
    def advance(self, seconds: float) -> list[Trip]:
        """Step the world `seconds` forward (whole steps; scenario events between steps)."""
        trips: list[Trip] = []
        w = self.world
        target = w.now + seconds
        while target - w.now > 1e-9:
            self._apply_due()
            dt = min(self.step_s, target - w.now)
            new = w.step(dt)
            if new:
                trips += new
                for t in new:
                    log.warning(
                        "breaker %s tripped (%s) at %.1f s: phase %d, %.1f A",
                        t.circuit,
                        t.cause,
                        t.time,
                        t.phase,
                        t.current_a,
                    )
                    if self.on_trip is not None:
                        self.on_trip(t)
        self._apply_due()
        self.trips += trips
        self._synced = self.clock.now()
        return trips

    def _apply_due(self) -> None:
        if self.player is None:
            return
        for ev in self.player.due(self.world.now):
            record: dict[str, Any] = {"at": ev.at, "do": ev.action["do"], "error": None}
            try:
                apply(self, ev.action, ev.where)
            except ActionError as exc:
                # Names are checked before the run; what is left is a state the shed was in
                # (a pile that is unpowered, say): report it, keep running.
                record["error"] = str(exc)
                log.error("scenario: %s", exc)
            self.player.applied.append(record)

    def finished(self) -> bool:
        return self.player is not None and self.player.finished(self.world.now)

    async def advance_virtual(self, seconds: float) -> list[Trip]:
        """Virtual time: step the world and the clock together, letting the servers' sleepers
        (delays, pacing) wake at their simulated time."""
        if not isinstance(self.clock, VirtualClock):
            raise ActionError("advance: the simulator runs in real time (start it with --virtual)")
        if seconds < 0:
            raise ActionError(f"advance.seconds: must be >= 0, got {seconds}")
        clock = self.clock
        trips: list[Trip] = []
        target = self.world.now + seconds
        while target - self.world.now > 1e-9:
            dt = min(self.step_s, target - self.world.now)
            trips += self.advance(dt)
            clock.advance(dt)
            await asyncio.sleep(0)
        return trips

    async def run(self, stop: asyncio.Event, until: float | None = None) -> None:
        """Step against the clock until `stop` is set, the scenario's end, or simulated
        time `until`."""
        if self.virtual:
            await stop.wait()
            return
        clock = self.clock
        last = clock.now()
        while not stop.is_set() and not self.finished():
            if until is not None and self.world.now >= until - 1e-9:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.tick_s)
            now = clock.now()
            due = (now - last) * self.speed
            last = now
            if due > self.max_lag_s * self.speed:
                self.lag_s += due - self.max_lag_s * self.speed
                due = self.max_lag_s * self.speed
            if self.player is not None and self.player.scenario.end is not None:
                due = min(due, self.player.start + self.player.scenario.end - self.world.now)
            if until is not None:
                due = min(due, until - self.world.now)
            if due > 0:
                self.advance(due)

    # ------------------------------------------------------------------ read-back
    def devices(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for d in self.shed.devices:
            f = self.faults[d.id]
            out[d.id] = {
                "kind": d.kind,
                "role": self.world.templates[d.kind].role,
                "bus": d.bus,
                "endpoint": self.endpoints.get(d.bus),
                "unit": d.unit,
                "powered": self.world.device_powered(d.id),
                "faults": {
                    "silent": f.silent,
                    "delay_s": f.delay_s,
                    "exception": f.exception,
                    "garbage": {str(k): v for k, v in f.garbage.items()},
                    "garbage_by_table": {
                        t: {str(k): v for k, v in g.items()}
                        for t, g in f.garbage_by_table.items()
                        if g
                    },
                    "refuse_writes": [list(r) for r in f.refuse_writes],
                    "refuse_coil_writes": [list(r) for r in f.refuse_coil_writes],
                },
                "requests": self.servers[d.bus].requests[d.unit],
                "answered": self.servers[d.bus].answered[d.unit],
            }
        return out

    def device(self, device_id: str) -> dict[str, Any]:
        devices = self.devices()
        if device_id not in devices:
            raise ActionError(f"device {device_id!r}: no such device")
        return {**devices[device_id], "snapshot": self.world.models[device_id].snapshot()}

    def status(self) -> dict[str, Any]:
        return {
            "time": self.world.now,
            "virtual": self.virtual,
            "speed": self.speed,
            "lag_s": round(self.lag_s, 3),
            "endpoints": self.endpoints,
            "scenario": self.player.status() if self.player else None,
        }
