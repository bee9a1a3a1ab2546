"""What people and faults do to the simulated shed: plug, tap, load, heat, weld, short, trip.

`WorldActions` is the part of `World` the actions (sim/actions.py), scenarios and tests
call; it changes the world's state and never steps it. Every refusal is a WorldError naming
the bay, device or circuit and what is wrong. A fault the device's template cannot show (a
smoke input on a pile without one, a tap at a wallbox without a card reader) is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from chargectl.config.schema import Device, Shed
from chargectl.sim.devices.evse import EvseModel
from chargectl.sim.devices.meter import MeterModel
from chargectl.sim.devices.pile import PileModel
from chargectl.sim.physics.cars import Car

if TYPE_CHECKING:
    from chargectl.sim.devices.build import Model
    from chargectl.sim.physics.breakers import BreakerBank
    from chargectl.sim.physics.chargers import ChargerBank
    from chargectl.sim.physics.load import UnmanagedLoad
    from chargectl.sim.physics.supply import Supply
    from chargectl.sim.physics.thermal import SocketThermal
    from chargectl.sim.physics.topology import Topology


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
    energy_ws: float = 0.0  # true energy to the car, W s (a replay's truth)


class WorldActions:
    """The world's state as these methods use it (World sets it all in its constructor)."""

    shed: Shed
    topo: Topology
    now: float
    models: dict[str, Model]
    wallboxes: dict[str, Wallbox]
    bay_index: dict[str, int]
    chargers: ChargerBank
    thermal: SocketThermal
    load: UnmanagedLoad
    supply: Supply
    breakers: BreakerBank
    cabinet_extra_c: np.ndarray
    hot_c: np.ndarray
    contact_c: np.ndarray
    instant: Callable[[], float]
    _event_t: np.ndarray

    def _set_volts(self, volts: float) -> None:
        raise NotImplementedError

    def _refresh_power(self) -> None:
        raise NotImplementedError

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
            model: PileModel | EvseModel = self.wallboxes[bay].model
        else:
            model, port = self._pile_port(bay)
        if "tap" not in model.image.template.fields:
            raise WorldError(f"tap {bay}: {model.kind} has no card reader (no tap in its template)")
        if isinstance(model, EvseModel):
            model.tap(uid)
        else:
            model.tap(port, uid)

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
        i = self._bay(bay)
        self.hot_c[i] = extra_c
        self.thermal.extra_c[i] = self.hot_c[i] + self.contact_c[i]

    # ------------------------------------------------------------------ anomalies (issue 12)
    # Of the pack at a socket (cleared when a charger is plugged or unplugged; starting one on
    # an empty socket is refused, ending one there does nothing), then of the socket itself.
    def set_no_taper(self, bay: str, active: bool) -> None:
        i = self._bay(bay)
        self._charger_fault(bay, lambda: self.chargers.set_no_taper(i, active))

    def set_cell_short(
        self, bay: str, watts: float, at_soc: float, after_s: float, grow_w_per_min: float
    ) -> None:
        i = self._bay(bay)
        self._charger_fault(
            bay,
            lambda: self.chargers.set_cell_short(i, watts, at_soc, after_s, grow_w_per_min / 60.0),
        )

    def set_modified_pack(self, bay: str, watts: float) -> None:
        i = self._bay(bay)
        self._charger_fault(bay, lambda: self.chargers.set_cc_w(i, watts))

    def set_poor_contact(self, bay: str, depth: float, extra_c: float, active: bool) -> None:
        """Erratic power (each second 1 - depth * u of it passes) and `extra_c` of heat at the
        socket, until `active` is False."""
        i = self._bay(bay)
        if extra_c < 0:
            raise WorldError(f"poor contact {bay}: extra_c must be >= 0, got {extra_c}")
        self._charger_fault(bay, lambda: self.chargers.set_contact(i, depth if active else 0.0))
        self.contact_c[i] = extra_c if active else 0.0
        self.thermal.extra_c[i] = self.hot_c[i] + self.contact_c[i]

    def _charger_fault(self, bay: str, change: Callable[[], None]) -> None:
        try:
            change()
        except ValueError as exc:
            raise WorldError(f"{bay}: {exc.args[0]}") from None

    def set_pile_inputs(
        self, device: str, smoke: bool | None = None, estop: bool | None = None
    ) -> None:
        pm = self._pile(device)
        status = pm.image.template.fields.get("status")
        for name, value in (("smoke", smoke), ("estop", estop)):
            if value is not None and (status is None or name not in status.bits):
                raise WorldError(
                    f"{name} {device}: {pm.kind} has no {name} input (no such status bit in its "
                    "template)"
                )
        pm.set_inputs(smoke=smoke, estop=estop)

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
