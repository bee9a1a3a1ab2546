"""The simulated shed: device models and physics, stepped together on a simulated clock.

`World(shed)` builds one device model per configured device (the register images of
sim/devices/) and the physics (sim/physics/), and `step(dt)` advances both by `dt` (<= 0.1 s):

    supply voltage -> contacts (each pile once) -> socket currents and inrush pulses
    -> temperatures -> piles (once each) -> cars and wallboxes -> circuit currents (subtree
    sums) -> breakers (with the inrush peaks) -> meters (every refresh)

Everything is struct-of-arrays over all sockets: the world calls each device once per step,
never once per port. The world never reads a clock: time is what it has been stepped by.
The controller sees none of this except through Modbus.

Bays are named as in the config: `<pile>/<port>` for a socket, the device id for a wallbox.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from chargectl.config.schema import Device, Shed
from chargectl.drivers.errors import ConfigError
from chargectl.drivers.registry import templates_for
from chargectl.drivers.template import Template
from chargectl.sim.devices.build import BuildError, Model, build_model
from chargectl.sim.devices.evse import EvseModel
from chargectl.sim.devices.meter import MeterModel
from chargectl.sim.devices.pile import PileModel
from chargectl.sim.physics import topology
from chargectl.sim.physics.breakers import BreakerBank, Trip
from chargectl.sim.physics.chargers import INRUSH_TAU_S, ChargerBank
from chargectl.sim.physics.kernels import circuit_totals, inrush_peaks
from chargectl.sim.physics.load import UnmanagedLoad
from chargectl.sim.physics.supply import Supply
from chargectl.sim.physics.thermal import SocketThermal
from chargectl.sim.world_actions import Wallbox, WorldActions, WorldError
from chargectl.sim.world_truth import bay_truth, world_truth

__all__ = ["MAX_STEP_S", "Model", "Wallbox", "World", "WorldError"]

MAX_STEP_S = 0.1
SLOW_S = 1.0  # state of charge and socket temperatures move over minutes: updated each second
FREQUENCY_HZ = 50.0


class World(WorldActions):
    def __init__(
        self,
        shed: Shed,
        *,
        templates: Mapping[str, Template] | None = None,
        ambient_c: float = 25.0,
        start: float = 0.0,
    ) -> None:
        """`templates`: kind -> template (default: the shipped ones and those of the config's
        `templates:` directories)."""
        self.shed = shed
        try:
            self.templates = templates_for(shed) if templates is None else templates
        except ConfigError as exc:
            raise WorldError(str(exc)) from None
        self.topo = topo = topology.build(shed, self.templates)
        self.now = start
        self.nominal_v = float(shed.shed.voltage_v)
        self.supply = Supply(
            self.nominal_v, shed.sim.voltage_noise_v, shed.sim.voltage_wander_s, shed.sim.seed
        )
        self.volts = self.supply.volts(start)
        # The simulated time of an event between two steps (a Modbus write, say). Alone the
        # world has only its steps; the runner sets this to interpolate the clock.
        self.instant: Callable[[], float] = self._step_instant
        self.ambient_c = ambient_c
        self.cabinet_rise_c = 5.0
        n_c = len(topo.circuit_ids)
        n_s = topo.sockets

        self.models: dict[str, Model] = {}
        for d in shed.devices:
            try:
                self.models[d.id] = build_model(d, self.templates)
            except BuildError as exc:
                raise WorldError(str(exc)) from None
        self.piles: list[tuple[PileModel, slice]] = []
        for slot in topo.piles:
            pm = self._pile(slot.device.id)
            pm.instant = self._instant_now
            self.piles.append((pm, slice(slot.start, slot.stop)))
        self.pile_circuit = np.array(
            [topo.circuit_index[str(s.device.circuit)] for s in topo.piles], dtype=np.int64
        )
        self.cabinet_extra_c = np.zeros(len(topo.piles))
        self.wallboxes: dict[str, Wallbox] = {}
        for d in topo.evses:
            em = self.models[d.id]
            assert isinstance(em, EvseModel)
            c = topo.circuit_index[str(d.circuit)]
            ph = d.phases or topo.circuit_phases[c]
            self.wallboxes[d.id] = Wallbox(d, em, c, np.array([p - 1 for p in ph], dtype=np.int64))
        self.meters: list[tuple[Device, MeterModel, int | None, np.ndarray]] = []
        self._meter_circuit: dict[str, int | None] = {}
        for d, c_idx in topo.meters:
            mm = self.models[d.id]
            assert isinstance(mm, MeterModel)
            ph = d.phases or tuple(range(1, mm.channels + 1))
            self.meters.append((d, mm, c_idx, np.array([p - 1 for p in ph], dtype=np.int64)))
            self._meter_circuit[d.id] = c_idx

        self.breakers = BreakerBank(list(topo.circuit_ids), [c.breaker for c in topo.circuits])
        self.chargers = ChargerBank(n_s, nominal_v=self.nominal_v, seed=shed.sim.seed)
        self.thermal = SocketThermal(n_s, ambient_c=ambient_c, rating_a=shed.sim.socket_rating_a)
        # A socket's extra heat (thermal.extra_c) is the sum of two faults: `hot` and the
        # heat of a poor contact; each sets and heals its own.
        self.hot_c = np.zeros(n_s)
        self.contact_c = np.zeros(n_s)
        # Inrush: when each socket was last plugged or had its power return (the relay closes
        # are the piles'), and the pulses of the step per breaker pole.
        self._event_t = np.full(n_s, start)
        self._pulse_peak = np.zeros((n_c, 3))  # instantaneous sum of the pulses
        self._pulse_i2t = np.zeros((n_c, 3))  # their integral of i^2 dt, A^2 s
        self._pulsed = False
        self.max_inrush_a = np.zeros((n_c, 3))  # the highest pulse sum seen, per pole
        base = np.zeros((n_c, 3))
        noise = np.zeros(n_c)
        for bl in shed.sim.base_load:
            c = self._circuit(bl.circuit)
            phs = topo.circuit_phases[c]
            if len(bl.amps) != len(phs):
                raise WorldError(
                    f"sim.base_load[{bl.circuit}].amps: one value per phase of the circuit "
                    f"({len(phs)}), got {len(bl.amps)}"
                )
            for p, a in zip(phs, bl.amps, strict=True):
                base[c, p - 1] = a
            noise[c] = bl.noise_a
        self.load = UnmanagedLoad(base, noise, shed.sim.seed)
        self.bay_index = {b: i for i, b in enumerate(topo.socket_bays)}
        self.cp_index = topo.socket_circuit * 3 + topo.socket_phase  # bincount key per socket

        # Per-step state, updated in place so that the views handed to the devices stay valid.
        self.closed = np.zeros(n_s, dtype=bool)
        self._contacts = [pm.contact_closed() for pm, _ in self.piles]
        ch, th = self.chargers, self.thermal
        self._pile_calls = [(pm, ch.amps[sl], ch.watts[sl], th.temp_c[sl]) for pm, sl in self.piles]
        self.own_a = np.zeros((n_c, 3))  # current fed directly by each circuit, per phase
        self.own_w = np.zeros((n_c, 3))
        self._own_a_flat = self.own_a.reshape(-1)
        self._own_w_flat = self.own_w.reshape(-1)
        self.unmanaged_a = np.zeros((n_c, 3))
        self.circuit_amps = np.zeros((n_c, 3))  # through each breaker, per supply phase
        self.circuit_watts = np.zeros((n_c, 3))
        self.energy_ws = np.zeros((n_c, 3))  # true energy through each breaker, W s
        self.socket_ws = np.zeros(n_s)  # true energy through each socket, W s (a replay's truth)
        self._slow_s = 0.0
        self._meter_s = 0.0  # into the meters' current window
        self._meters_published = False  # the first step publishes (meters read something at once)
        # A meter reports RMS current and mean power over its window (sim.meter_window_s before
        # each refresh), not one step's sample: a 0.1 s inrush moves it only by its share.
        self._amps2_s = np.zeros((n_c, 3))  # integral of I^2 dt since the last publish
        self._watts_s = np.zeros((n_c, 3))  # integral of P dt
        self._window_s = 0.0  # how much of the meters' window has been integrated
        self._refresh_power()
        self._slow_update(0.0)

        for plugged in shed.sim.chargers:
            self.plug_charger(plugged.bay, plugged.profile, plugged.soc, plugged.power_factor)
        for car in shed.sim.cars:
            self.plug_car(car.device, car.max_a, car.phases, car.soc, car.capacity_kwh, car.drop_s)

    def _step_instant(self) -> float:
        return self.now

    def _instant_now(self) -> float:
        return self.instant()

    # ------------------------------------------------------------------ stepping
    def step(self, dt: float) -> list[Trip]:
        """Advance by `dt` seconds (0 < dt <= 0.1). Returns the breaker trips of this step."""
        if not 0.0 < dt <= MAX_STEP_S + 1e-12:
            raise WorldError(f"step: dt must be within (0, {MAX_STEP_S}] s, got {dt}")
        now = round(self.now + dt, 9)  # no drift from summing 0.1 a million times
        if self.supply.changing:
            self._set_volts(self.supply.volts(self.now))
        volts = self.volts
        np.concatenate(self._contacts, out=self.closed)
        self.chargers.step(
            dt,
            closed=self.closed,
            fed=self.socket_fed,
            volts=volts,
            cp_index=self.cp_index,
            own_a=self._own_a_flat,
            own_w=self._own_w_flat,
        )
        self.socket_ws += self.chargers.watts * dt
        if self.chargers.pulses:
            self._inrush()
        self._slow_s += dt
        if self._slow_s >= SLOW_S - 1e-9:
            self._slow_update(self._slow_s)
            self._slow_s = 0.0
        for (pm, amps, watts, temp), v, cab in zip(
            self._pile_calls, self._pile_volts, self._cabinet, strict=True
        ):
            pm.step(now, dt, amps, watts, temp, v, cab)

        own_a, own_w = self.own_a, self.own_w
        for wb in self._wallbox_list:
            self._step_wallbox(wb, now, dt, own_a, own_w)
        circuit_totals(
            own_a,
            own_w,
            self.unmanaged_a,
            self._unmanaged_w,
            self.topo.subtree,
            self.circuit_amps,
            self.circuit_watts,
            self.energy_ws,
            dt,
        )

        if self._pulsed:
            trips = self.breakers.step(
                now, dt, self.circuit_amps, self._pulse_peak, self._pulse_i2t
            )
        else:
            trips = self.breakers.step(now, dt, self.circuit_amps)
        if trips:
            self._refresh_power()
        self.now = now
        self._meter_s += dt
        # Only the last meter_window_s before a refresh counts (the meter's RMS window).
        refresh = self.shed.sim.meter_refresh_s
        if self._meter_s > refresh - self.shed.sim.meter_window_s + 1e-9:
            self._amps2_s += self.circuit_amps * self.circuit_amps * dt
            if self._pulsed:
                self._amps2_s += self._pulse_i2t  # honest, and a few A^2 s at most
            self._watts_s += self.circuit_watts * dt
            self._window_s += dt
        if self._pulsed:
            self._pulse_peak[:] = 0.0
            self._pulse_i2t[:] = 0.0
            self._pulsed = False
        if self._meter_s >= self.shed.sim.meter_refresh_s - 1e-9 or not self._meters_published:
            self._publish_meters()
        return trips

    def _inrush(self) -> None:
        """The chargers that got power this step: their pulses summed per breaker pole, those
        that start at the same instant adding in full, earlier ones by what is left of them."""
        ch = self.chargers
        idx = np.flatnonzero(ch.pulse_a)
        closed_at = np.concatenate([pm.close_t for pm, _ in self.piles])[idx]
        t = np.maximum(closed_at, self._event_t[idx])
        inrush_peaks(
            t,
            ch.pulse_a[idx],
            self.cp_index[idx],
            self.topo.subtree,
            INRUSH_TAU_S,
            self._pulse_peak,
            self._pulse_i2t,
        )
        np.maximum(self.max_inrush_a, self._pulse_peak, out=self.max_inrush_a)
        self._pulsed = True

    def _slow_update(self, dt: float) -> None:
        """What moves over minutes and hours, once a second: state of charge, socket
        temperatures, the wander of the unmanaged load and of the supply voltage."""
        if dt > 0.0:
            self.thermal.step(dt, self.chargers.amps)
            self.chargers.charge(dt, self.chargers.watts)
            self.supply.wander(dt)
            self._set_volts(self.supply.volts(self.now))
        self._load_a = self.load.amps(SLOW_S)
        self._scale_unmanaged()

    def _scale_unmanaged(self) -> None:
        """Unmanaged load is resistive: its configured amps are at the nominal voltage."""
        scale = self.volts / self.nominal_v if self.nominal_v > 0 else 1.0
        self.unmanaged_a = self._load_a * (self.circuit_fed_col * scale)
        self._unmanaged_w = self.unmanaged_a * self.volts

    def _set_volts(self, volts: float) -> None:
        """A new supply voltage: what the devices see, the unmanaged load's current."""
        if volts == self.volts:
            return
        if self.volts <= 0.0 < volts:
            self._event_t[:] = self.instant()  # the supply returns: every charger's inrush
        self.volts = volts
        self._pile_volts = [volts if f else 0.0 for f in self.circuit_fed[self.pile_circuit]]
        if hasattr(self, "_load_a"):
            self._scale_unmanaged()

    def advance(self, seconds: float, step_s: float | None = None) -> list[Trip]:
        """Step repeatedly for `seconds` (the last step may be shorter)."""
        step = min(step_s or self.shed.sim.step_s, MAX_STEP_S)
        trips: list[Trip] = []
        left = seconds
        while left > 1e-9:
            dt = min(step, left)
            trips += self.step(dt)
            left -= dt
        return trips

    def _step_wallbox(
        self, wb: Wallbox, now: float, dt: float, own_a: np.ndarray, own_w: np.ndarray
    ) -> None:
        car = wb.car
        a = 0.0
        n = 0
        vehicle = 0
        if car is not None:
            fed = bool(self.circuit_fed[wb.circuit])
            offered = wb.model.offered_a() if fed else 0.0
            a = car.step(dt, offered, self.volts if fed else 0.0)
            n = min(car.phases, len(wb.phases))
            vehicle = 2 if a > 0.0 else 1
            w = a * self.volts
            wb.energy_ws += w * n * dt
            for p in wb.phases[:n]:
                own_a[wb.circuit, p] += a
                own_w[wb.circuit, p] += w
        amps3 = wb.amps3
        if a != wb.last_a:
            amps3[:] = 0.0
            amps3[:n] = a
            wb.last_a = a
        temp = self.ambient_c + 2.0 + 0.02 * a * a
        wb.model.step(now, dt, vehicle, amps3, a * n * self.volts, temp)

    def _refresh_power(self) -> None:
        """Recompute what is fed after a trip, a reset or a voltage change (rare)."""
        dead = self.topo.path_open(self.breakers.closed)
        self.circuit_fed = ~dead
        self.circuit_fed_col = self.circuit_fed[:, None].astype(np.float64)
        self.socket_fed = self.circuit_fed[self.topo.socket_circuit]
        self._pile_volts = [self.volts if f else 0.0 for f in self.circuit_fed[self.pile_circuit]]
        self._cabinet = [
            float(self.ambient_c + self.cabinet_rise_c + x) for x in self.cabinet_extra_c
        ]
        self._wallbox_list = list(self.wallboxes.values())
        # A pile or wallbox whose power comes back reboots (meters keep nothing that matters).
        was = getattr(self, "_powered", {})
        self._powered = {}
        for dev, model in self.models.items():
            powered = self.device_powered(dev)
            self._powered[dev] = powered
            if powered and was.get(dev) is False and hasattr(model, "power_cycle"):
                model.power_cycle()
        if hasattr(self, "_load_a"):
            self._scale_unmanaged()

    def _publish_meters(self) -> None:
        window = self._window_s
        if window > 0:
            amps = np.sqrt(self._amps2_s / window)
            watts = self._watts_s / window
        else:  # before the first step: what flows now
            amps, watts = self.circuit_amps, self.circuit_watts
        self._meter_s = 0.0
        self._window_s = 0.0
        self._meters_published = True
        self._amps2_s = np.zeros_like(self._amps2_s)
        self._watts_s = np.zeros_like(self._watts_s)
        for _d, mm, c, ph in self.meters:
            if c is None:
                zeros = np.zeros(len(ph))
                mm.update(zeros + self.volts, zeros, zeros, FREQUENCY_HZ, 0.0)
                continue
            fed = bool(self.circuit_fed[c])
            volts = np.full(len(ph), self.volts if fed else 0.0)
            mm.update(
                volts,
                amps[c, ph].copy(),
                watts[c, ph].copy(),
                FREQUENCY_HZ if fed else 0.0,
                float(self.energy_ws[c].sum() / 3.6e6),
            )

    # ------------------------------------------------------------------ power of devices
    def device_powered(self, device_id: str) -> bool:
        """A device answers only when fed. A meter sits on the line side of the breaker of the
        circuit it measures: it stays up (reading 0 A) when that breaker trips, and goes down
        with the breakers above it."""
        d = self._device(device_id)
        if device_id in self._meter_circuit:
            c = self._meter_circuit[device_id]
            if c is None:
                return True
            parent = int(self.topo.parent[c])
            return parent < 0 or bool(self.circuit_fed[parent])
        return bool(self.circuit_fed[self.topo.circuit_index[str(d.circuit)]])

    # ------------------------------------------------------------------ read-back
    def truth(self, bays: bool = True) -> dict[str, Any]:
        """The physical truth, as plain JSON-able data."""
        return world_truth(self, bays)

    def bay_truth(self, bay: str) -> dict[str, Any]:
        return bay_truth(self, self._bay(bay))
