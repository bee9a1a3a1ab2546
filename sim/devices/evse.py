"""An AC wallbox (one connector, IEC 61851 pilot): the role's behaviour, served through any
wallbox template (the contract's ../shared/hardware/evse.md, or a maker's map).

The register image is the template's (`image.RegisterImage`); this module is what every
wallbox does behind it: a current setpoint (0 pauses, else `min_current_a` up to the
hardware maximum), a watchdog with a fail-safe current, the pilot state, taps and a lamp. A
template whose timeout is set on the box (`watchdog_s`) has its watchdog running from
power-up, and with `setpoint_heartbeat` every setpoint write is the heartbeat. An `enable`
field (a coil) withdraws the offer while it reads 0.

Like the pile, its time is the `now` of the latest `step`. Decisions where the page is
silent (docs/modbus.md lists them):
- current_limit starts at 0 (paused): the box offers nothing until a controller asks.
- In failsafe the box applies failsafe_current and reports it in current_limit; current_limit
  writes are accepted and ignored until a heartbeat, a failsafe_current write re-applies.
- status bit1 (over-temperature) reads the measured temperature against 80.0 C; bits 2
  (residual-current trip) and 3 (welded) are injected with `set_faults`. A residual-current
  trip withdraws the offer and shows cp_state F until it is cleared.
- cp_state C needs a car that wants to charge and an offer above 0; with no offer it is B.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from chargectl.drivers.template import Template, shipped
from chargectl.sim.devices.image import ImageDevice, RegisterImage
from chargectl.sim.devices.registers import TapLatch, Watchdog, WriteLog

CONTRACT = "evse"  # the template of ../shared/hardware/evse.md, the default
MAX_INDICATOR = 7
HOT_C = 80.0
SETPOINT_EPS_A = 1e-6
HW_MAX_RANGE_A = (6.0, 80.0)  # when the template does not say

CP_LETTERS = ("A", "B", "C", "D", "E", "F")
VEHICLE_NONE, VEHICLE_CONNECTED, VEHICLE_CHARGING = 0, 1, 2


class EvseModel(ImageDevice):
    zero_is_off = frozenset({"current_limit", "failsafe_current"})  # 0 pauses, whatever `min`

    def __init__(
        self,
        hw_max_current_a: float,
        phases: int,
        *,
        template: Template | None = None,
        temp_c: float = 25.0,
        write_log_size: int = 1000,
    ) -> None:
        t = template or shipped()[CONTRACT]
        if t.role != "evse":
            raise ValueError(f"template {t.kind!r} is a {t.role} template, not a wallbox's")
        lo, hi = t.max_current_a or HW_MAX_RANGE_A
        if not lo <= hw_max_current_a <= hi:
            raise ValueError(
                f"{t.kind} hw_max_current_a must be {lo:g}..{hi:g} A, got {hw_max_current_a}"
            )
        if phases not in (1, 3) or phases > t.phases:
            allowed = "1 or 3" if t.phases == 3 else "1"
            raise ValueError(f"{t.kind} phases must be {allowed}, got {phases}")
        self.kind = t.kind
        self.template = t
        self.phases = phases
        self.image = RegisterImage(t)
        self.min_a = t.min_current_a if t.min_current_a is not None else HW_MAX_RANGE_A[0]
        self.hw_max_a = float(hw_max_current_a)
        self._now = 0.0
        self._amps = np.zeros(3)
        self._watts = 0.0
        self._energy_wh = 0.0
        self._temp_c = temp_c
        self._vehicle = VEHICLE_NONE
        self._rcd = False
        self._welded = False
        self.writes = WriteLog(write_log_size)
        self.power_cycle()
        self._numbers: dict[str, Callable[[], Any]] = {
            "current_l1": lambda: self._phase_amps(0),
            "current_l2": lambda: self._phase_amps(1),
            "current_l3": lambda: self._phase_amps(2),
            "power": lambda: max(0.0, self._watts),
            "energy": lambda: self._energy_wh,
            "temperature": lambda: self._temp_c,
            "phases": lambda: self.phases,
            "hw_max_current": lambda: self.hw_max_a,
            "watchdog_remaining": lambda: self._watchdog.remaining(self._now),
            "watchdog_timeout": lambda: self._watchdog.timeout_s,
            "heartbeat": lambda: self._heartbeat,
            "current_limit": lambda: self._limit_a,
            "failsafe_current": lambda: self._failsafe_a,
            "indicator": lambda: self._indicator,
            "enable": lambda: int(self._enabled),
        }

    def power_cycle(self) -> None:
        """Power came back after a loss: the box reboots paused, with its settings at their
        defaults (failsafe current 0, a watchdog set on the box running again) and no tap;
        energy survives."""
        self._limit_a = 0.0
        self._failsafe_a = 0.0
        self._indicator = 0
        self._heartbeat = 0
        self._enabled = True
        self._watchdog = Watchdog()
        if self.template.watchdog_s:
            self._watchdog.set_timeout(self._now, self.template.watchdog_s)
        self._tap = TapLatch()

    # ------------------------------------------------------------------ the image's source
    def number(self, name: str) -> Any:
        return self._numbers[name]()

    def flags(self, name: str) -> Mapping[str, Any]:
        return {
            "failsafe": self._watchdog.failsafe,
            "over_temp": self._temp_c >= HOT_C,
            "rcd_trip": self._rcd,
            "contactor_welded": self._welded,
        }

    def meanings(self, name: str) -> tuple[tuple[str, ...], int]:
        return CP_LETTERS, self.cp_state() - 1

    def words(self, name: str) -> list[int]:
        return self._tap.words()

    def _phase_amps(self, i: int) -> float:
        if i >= self.phases:
            return 0.0  # an unused phase reads 0
        return max(0.0, float(self._amps[i]))

    def _offer_ok(self, amps: float) -> bool:
        return amps == 0 or (self.min_a - SETPOINT_EPS_A <= amps <= self.hw_max_a + SETPOINT_EPS_A)

    def valid(self, name: str, port: int | None, value: float | str) -> bool:
        if isinstance(value, str):
            return False
        if name in ("current_limit", "failsafe_current"):
            return self._offer_ok(float(value))
        if name == "indicator":
            return value == int(value) and 0 <= value <= MAX_INDICATOR
        if name == "enable":
            return value in (0, 1)
        return value == int(value) and value >= 0  # watchdog_timeout, heartbeat

    def apply(self, name: str, port: int | None, value: float | str) -> None:
        v = float(value)
        if name == "watchdog_timeout":
            self._watchdog.set_timeout(self._now, int(v))
        elif name == "heartbeat":
            self._heartbeat = int(v)
            self._watchdog.heartbeat(self._now)
        elif name == "current_limit":
            if self.template.setpoint_heartbeat:
                self._watchdog.heartbeat(self._now)  # the setpoint is the heartbeat
            if not self._watchdog.failsafe:
                self._limit_a = v
        elif name == "failsafe_current":
            self._failsafe_a = v
            if self._watchdog.failsafe:
                self._limit_a = v
        elif name == "indicator":
            self._indicator = int(v)
        elif name == "enable":
            self._enabled = bool(v)

    # ------------------------------------------------------------------ physics side
    def offered_a(self) -> float:
        """The pilot's offer in A (0 = paused): current_limit, failsafe and trips applied."""
        return 0.0 if self._rcd or not self._enabled else self._limit_a

    def step(  # noqa: PLR0917 (the world's contract: positional, one call per step)
        self,
        now: float,
        dt: float,
        vehicle: int,
        amps: np.ndarray,
        watts: float,
        temp_c: float,
    ) -> None:
        """Record the step that just ran: the car's state (0 none, 1 connected, 2 wants to
        charge), the true per-phase current (A, shape (3,)), power (W) and temperature (C)."""
        if dt <= 0:
            raise ValueError(f"evse step: dt must be > 0, got {dt}")
        if vehicle not in (VEHICLE_NONE, VEHICLE_CONNECTED, VEHICLE_CHARGING):
            raise ValueError(f"evse step: vehicle must be 0, 1 or 2, got {vehicle}")
        self._now = now
        self._vehicle = vehicle
        self._amps[:] = amps
        self._watts = watts
        self._temp_c = temp_c
        self._energy_wh += watts * dt / 3600.0
        if self._watchdog.expired(now):
            self._limit_a = self._failsafe_a

    # ------------------------------------------------------------------ faults and people
    def tap(self, uid: bytes) -> None:
        self._tap.tap(uid, 1)

    def set_faults(self, rcd: bool | None = None, welded: bool | None = None) -> None:
        """A residual-current trip (withdraws the offer, cp_state F) or a welded contactor
        (status bit3 only: the box cannot open it)."""
        if rcd is not None:
            self._rcd = rcd
        if welded is not None:
            self._welded = welded

    def set_energy_wh(self, wh: float) -> None:
        if wh < 0:
            raise ValueError(f"evse energy must be >= 0 Wh, got {wh}")
        self._energy_wh = wh

    # ------------------------------------------------------------------ registers
    def cp_state(self) -> int:
        """1..6 for A..F."""
        if self._rcd:
            return 6  # F: EVSE fault
        if self._vehicle == VEHICLE_NONE:
            return 1  # A: no vehicle
        if self._vehicle == VEHICLE_CHARGING and self.offered_a() > 0:
            return 3  # C: charging
        return 2  # B: connected, not charging

    # ------------------------------------------------------------------ read-back
    def snapshot(self) -> dict[str, Any]:
        return {
            "kind": "evse",
            "template": self.kind,
            "phases": self.phases,
            "now": self._now,
            "hw_max_current_a": self.hw_max_a,
            "current_limit_a": self._limit_a,
            "failsafe_current_a": self._failsafe_a,
            "enabled": self._enabled,
            "offered_a": self.offered_a(),
            "failsafe": self._watchdog.failsafe,
            "watchdog_timeout_s": self._watchdog.timeout_s,
            "watchdog_remaining_s": self._watchdog.remaining(self._now),
            "cp_state": self.cp_state(),
            "indicator": self._indicator,
            "amps": self._amps.tolist(),
            "watts": self._watts,
            "energy_wh": self._energy_wh,
            "temp_c": self._temp_c,
            "rcd_trip": self._rcd,
            "welded": self._welded,
            "tap_seq": self._tap.seq,
            "writes_total": self.writes.total,
            "writes": [r.as_dict() for r in self.writes.records()],
        }
