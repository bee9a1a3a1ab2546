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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np

from chargectl.config.schema import Device, Shed
from chargectl.drivers.registry import role_of
from chargectl.sim.devices.evse import EvseModel
from chargectl.sim.devices.meter import MeterModel
from chargectl.sim.devices.pile import PileModel
from chargectl.sim.physics import topology
from chargectl.sim.physics.breakers import BreakerBank, Trip
from chargectl.sim.physics.cars import Car
from chargectl.sim.physics.chargers import (
    INRUSH_TAU_S,
    PROFILE_NAMES,
    STAGE_NAMES,
    ChargerBank,
)
from chargectl.sim.physics.kernels import circuit_totals, inrush_peaks
from chargectl.sim.physics.load import UnmanagedLoad
from chargectl.sim.physics.supply import Supply
from chargectl.sim.physics.thermal import SocketThermal

Model: TypeAlias = PileModel | EvseModel | MeterModel
MAX_STEP_S = 0.1
SLOW_S = 1.0  # state of charge and socket temperatures move over minutes: updated each second
FREQUENCY_HZ = 50.0


class WorldError(ValueError):
    """A request the world cannot carry out (unknown bay, device, circuit; bad value)."""


@dataclass(slots=True)
class Wallbox:
    device: Device
    model: EvseModel
    circuit: int
    phases: np.ndarray  # supply phase index 0..2 of the box's L1, L2, L3 (as wired)
    car: Car | None = None
    amps3: np.ndarray = field(default_factory=lambda: np.zeros(3))  # per L1..L3 of the box
    last_a: float = -1.0


class World:
    def __init__(self, shed: Shed, *, ambient_c: float = 25.0, start: float = 0.0) -> None:
        self.shed = shed
        self.topo = topo = topology.build(shed)
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
        self.piles: list[tuple[PileModel, slice]] = []
        for slot in topo.piles:
            pm = PileModel(slot.device.ports, slot.device.port_power_limit_w)
            pm.instant = self._instant_now
            self.models[slot.device.id] = pm
            self.piles.append((pm, slice(slot.start, slot.stop)))
        self.pile_circuit = np.array(
            [topo.circuit_index[str(s.device.circuit)] for s in topo.piles], dtype=np.int64
        )
        self.cabinet_extra_c = np.zeros(len(topo.piles))
        self.wallboxes: dict[str, Wallbox] = {}
        for d in topo.evses:
            em = EvseModel(d.max_current_a, len(d.phases) or 3)
            self.models[d.id] = em
            c = topo.circuit_index[str(d.circuit)]
            ph = d.phases or topo.circuit_phases[c]
            self.wallboxes[d.id] = Wallbox(d, em, c, np.array([p - 1 for p in ph], dtype=np.int64))
        self.meters: list[tuple[Device, MeterModel, int | None, np.ndarray]] = []
        for d, c_idx in topo.meters:
            mm = MeterModel(d.kind)
            self.models[d.id] = mm
            ph = d.phases or ((1,) if d.kind == "sdm120" else (1, 2, 3))
            self.meters.append((d, mm, c_idx, np.array([p - 1 for p in ph], dtype=np.int64)))

        self.breakers = BreakerBank(list(topo.circuit_ids), [c.breaker for c in shed.circuits])
        self.chargers = ChargerBank(n_s, nominal_v=self.nominal_v)
        self.thermal = SocketThermal(n_s, ambient_c=ambient_c, rating_a=shed.sim.socket_rating_a)
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
        self._energy_ws = np.zeros((n_c, 3))  # true energy through each breaker, W s
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
            self._energy_ws,
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
                float(self._energy_ws[c].sum() / 3.6e6),
            )

    # ------------------------------------------------------------------ power of devices
    def device_powered(self, device_id: str) -> bool:
        """A device answers only when fed. A meter sits on the line side of the breaker of the
        circuit it measures: it stays up (reading 0 A) when that breaker trips, and goes down
        with the breakers above it."""
        d = self._device(device_id)
        if role_of(d.kind) == "meter":
            for dev, _mm, c, _ph in self.meters:
                if dev.id == device_id:
                    if c is None:
                        return True
                    parent = int(self.topo.parent[c])
                    return parent < 0 or bool(self.circuit_fed[parent])
        return bool(self.circuit_fed[self.topo.circuit_index[str(d.circuit)]])

    # ------------------------------------------------------------------ actions
    def plug_charger(
        self, bay: str, profile: str, soc: float = 0.2, power_factor: float | None = None
    ) -> None:
        i = self._bay(bay)
        try:
            self.chargers.plug(i, profile, soc, power_factor)
        except (KeyError, ValueError) as exc:
            raise WorldError(f"plug {bay}: {exc.args[0]}") from None
        self._event_t[i] = self.instant()  # into a live socket: the inrush at this instant

    def unplug(self, bay: str) -> None:
        if bay in self.wallboxes:
            self.wallboxes[bay].car = None
            return
        i = self._bay(bay)
        self.chargers.unplug(i)
        self.chargers.set_appliance(i, 0.0)

    def set_appliance(self, bay: str, watts: float) -> None:
        try:
            self.chargers.set_appliance(self._bay(bay), watts)
        except ValueError as exc:
            raise WorldError(f"appliance {bay}: {exc}") from None

    def plug_car(  # noqa: PLR0917 (the car's fields, in the config's order)
        self,
        device: str,
        max_a: float = 16.0,
        phases: int = 3,
        soc: float = 0.3,
        capacity_kwh: float = 40.0,
        drop_s: float = 2.0,
    ) -> None:
        wb = self._wallbox(device)
        try:
            wb.car = Car(
                max_a=max_a, phases=phases, soc=soc, capacity_kwh=capacity_kwh, drop_s=drop_s
            )
        except ValueError as exc:
            raise WorldError(f"car at {device}: {exc}") from None

    def tap(self, bay: str, uid: bytes) -> None:
        if len(uid) not in (4, 7, 8):
            raise WorldError(f"tap {bay}: a UID has 4, 7 or 8 bytes, got {len(uid)}")
        if bay in self.wallboxes:
            self.wallboxes[bay].model.tap(uid)
            return
        pm, port = self._pile_port(bay)
        pm.tap(port, uid)

    def set_load_step(self, circuit: str, amps: list[float]) -> None:
        c = self._circuit(circuit)
        phs = self.topo.circuit_phases[c]
        if len(amps) != len(phs):
            raise WorldError(
                f"load step {circuit}: one value per phase of the circuit {list(phs)}, "
                f"got {len(amps)}"
            )
        row = np.zeros(3)
        for p, a in zip(phs, amps, strict=True):
            row[p - 1] = a
        try:
            self.load.set_step(c, row)
        except ValueError as exc:
            raise WorldError(f"load step {circuit}: {exc}") from None

    def set_welded(self, bay: str, welded: bool) -> None:
        pm, port = self._pile_port(bay)
        pm.set_welded(port, welded)

    def set_short(self, bay: str) -> None:
        pm, port = self._pile_port(bay)
        pm.set_short(port)

    def set_socket_hot(self, bay: str, extra_c: float) -> None:
        """A bad contact: the socket settles `extra_c` above what its current explains."""
        self.thermal.extra_c[self._bay(bay)] = extra_c

    def set_pile_inputs(
        self, device: str, smoke: bool | None = None, estop: bool | None = None
    ) -> None:
        self._pile(device).set_inputs(smoke=smoke, estop=estop)

    def set_cabinet_extra(self, device: str, extra_c: float) -> None:
        self._pile(device)
        idx = [s.device.id for s in self.topo.piles].index(device)
        self.cabinet_extra_c[idx] = extra_c
        self._refresh_power()

    def set_meter_frozen(self, device: str, frozen: bool) -> None:
        m = self.models.get(device)
        if not isinstance(m, MeterModel):
            raise WorldError(f"meter {device!r}: no such meter")
        m.frozen = frozen

    def set_supply_voltage(self, volts: float) -> None:
        """The supply's level (the wander, if configured, rides on it within 198..242 V)."""
        try:
            self.supply.set_level(volts)
        except ValueError as exc:
            raise WorldError(str(exc)) from None
        self._set_volts(self.supply.volts(self.now))

    def sag(self, volts: float, seconds: float, ramp_s: float = 0.0) -> None:
        """A sag of the supply to `volts` for `seconds`, ramping `ramp_s` down and back."""
        try:
            self.supply.start_sag(self.now, volts, seconds, ramp_s)
        except ValueError as exc:
            raise WorldError(str(exc)) from None
        self._set_volts(self.supply.volts(self.now))

    def reset_breaker(self, circuit: str) -> None:
        self.breakers.reset(self._circuit(circuit))
        self._event_t[:] = self.instant()  # whatever is closed below gets power at once
        self._refresh_power()

    # ------------------------------------------------------------------ read-back
    def truth(self, bays: bool = True) -> dict[str, Any]:
        """The physical truth, as plain JSON-able data."""
        topo = self.topo
        ratio = self.breakers.ratio()
        ttt = self.breakers.seconds_to_trip(self.circuit_amps)
        circuits: dict[str, Any] = {}
        for i, cid in enumerate(topo.circuit_ids):
            c = self.shed.circuits[i]
            phs = topo.circuit_phases[i]
            circuits[cid] = {
                "phases": list(phs),
                "limit_a": c.limit_a,
                "powered": bool(self.circuit_fed[i]),
                "amps": [round(float(self.circuit_amps[i, p - 1]), 3) for p in phs],
                "watts": [round(float(self.circuit_watts[i, p - 1]), 1) for p in phs],
                "unmanaged_a": [round(float(self.unmanaged_a[i, p - 1]), 3) for p in phs],
                "energy_wh": round(float(self._energy_ws[i].sum() / 3600.0), 3),
                "max_inrush_a": [round(float(self.max_inrush_a[i, p - 1]), 1) for p in phs],
                "breaker": {
                    "rating_a": c.breaker.rating_a,
                    "curve": c.breaker.curve,
                    "closed": bool(self.breakers.closed[i]),
                    "thermal_ratio": [round(float(ratio[i, p - 1]), 4) for p in phs],
                    "seconds_to_trip": [_finite(ttt[i, p - 1]) for p in phs],
                },
            }
        out: dict[str, Any] = {
            "time": round(self.now, 6),
            "supply_v": self.volts,
            "circuits": circuits,
            "trips": [t.as_dict() for t in self.breakers.trips],
            "wallboxes": {wid: self._wallbox_truth(wb) for wid, wb in self.wallboxes.items()},
            "bays_charging": int((self.chargers.watts > 1.0).sum()),
        }
        if bays:
            out["bays"] = {b: self.bay_truth(b) for b in topo.socket_bays}
        return out

    def bay_truth(self, bay: str) -> dict[str, Any]:
        i = self._bay(bay)
        ch = self.chargers
        p = int(ch.profile_idx[i])
        return {
            "closed": bool(self.closed[i]),
            "energized": bool(self.closed[i] and self.socket_fed[i] and self.volts > 0),
            "amps": round(float(ch.amps[i]), 4),
            "watts": round(float(ch.watts[i]), 2),
            "temp_c": round(float(self.thermal.temp_c[i]), 2),
            "plugged": bool(ch.plugged[i]),
            "profile": PROFILE_NAMES[p] if p >= 0 else None,
            "soc": round(float(ch.soc[i]), 5) if ch.plugged[i] else None,
            "stage": STAGE_NAMES[int(ch.stage[i])],
            "power_factor": round(1.0 / float(ch.inv_pf[i]), 3) if ch.plugged[i] else None,
            "appliance_w": float(ch.appliance_w[i]),
        }

    def _wallbox_truth(self, wb: Wallbox) -> dict[str, Any]:
        car = wb.car
        return {
            "powered": bool(self.circuit_fed[wb.circuit]),
            "offered_a": float(wb.model.offered_a()),
            "amps": [round(float(a), 3) for a in wb.amps3],
            "car": None
            if car is None
            else {
                "max_a": car.max_a,
                "phases": car.phases,
                "soc": round(car.soc, 5),
                "capacity_kwh": car.capacity_kwh,
            },
        }

    # ------------------------------------------------------------------ lookups
    def _bay(self, bay: str) -> int:
        try:
            return self.bay_index[bay]
        except KeyError:
            raise WorldError(f"unknown socket bay {bay!r} (a bay is <pile>/<port>)") from None

    def _pile_port(self, bay: str) -> tuple[PileModel, int]:
        self._bay(bay)
        dev, port = bay.rsplit("/", 1)
        return self._pile(dev), int(port)

    def _pile(self, device: str) -> PileModel:
        m = self.models.get(device)
        if not isinstance(m, PileModel):
            raise WorldError(f"pile {device!r}: no such pile")
        return m

    def _wallbox(self, device: str) -> Wallbox:
        try:
            return self.wallboxes[device]
        except KeyError:
            raise WorldError(f"wallbox {device!r}: no such wallbox") from None

    def _device(self, device: str) -> Device:
        try:
            return self.shed.device(device)
        except KeyError:
            raise WorldError(f"device {device!r}: no such device") from None

    def _circuit(self, circuit: str) -> int:
        try:
            return self.topo.circuit_index[circuit]
        except KeyError:
            raise WorldError(f"circuit {circuit!r}: no such circuit") from None


def _finite(x: float) -> float | None:
    return None if not np.isfinite(x) else round(float(x), 2)
