"""An AC wallbox (one connector, IEC 61851 pilot), exactly as ../shared/hardware/evse.md says.

Like the pile, its time is the `now` of the latest `step`. Decisions where the page is silent
(docs/modbus.md lists them):
- current_limit starts at 0 (paused): the box offers nothing until a controller asks.
- In failsafe the box applies failsafe_current and reports it in current_limit; current_limit
  writes are accepted and ignored until a heartbeat, a failsafe_current write re-applies.
- status bit1 (over-temperature) reads the measured temperature against 80.0 C; bits 2
  (residual-current trip) and 3 (welded) are injected with `set_faults`. A residual-current
  trip withdraws the offer and shows cp_state F until it is cleared.
- cp_state C needs a car that wants to charge and an offer above 0; with no offer it is B.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from chargectl.sim.devices.registers import (
    ILLEGAL_ADDRESS,
    ILLEGAL_VALUE,
    MAX_WRITE,
    Block,
    RegisterDevice,
    TapLatch,
    Watchdog,
    WriteLog,
    i16,
    u16,
    u32_words,
    wh_counter,
)

MODEL = 0x4556
PROTOCOL_VERSION = 1
HOT_SIZE = 21

WATCHDOG_TIMEOUT = 0
HEARTBEAT = 1
CURRENT_LIMIT = 2
FAILSAFE_CURRENT = 3
INDICATOR = 4
HOLDING_SIZE = 5

MIN_OFFER_DA = 60  # 6.0 A, in the register's 0.1 A
MAX_INDICATOR = 7
HOT_C = 80.0

CP_A, CP_B, CP_C, CP_D, CP_E, CP_F = 1, 2, 3, 4, 5, 6
VEHICLE_NONE, VEHICLE_CONNECTED, VEHICLE_CHARGING = 0, 1, 2


class EvseModel(RegisterDevice):
    def __init__(
        self,
        hw_max_current_a: float,
        phases: int,
        *,
        temp_c: float = 25.0,
        write_log_size: int = 1000,
    ) -> None:
        if not 6.0 <= hw_max_current_a <= 80.0:
            raise ValueError(f"evse hw_max_current_a must be 6..80 A, got {hw_max_current_a}")
        if phases not in (1, 3):
            raise ValueError(f"evse phases must be 1 or 3, got {phases}")
        self.phases = phases
        self.hw_max_da = round(hw_max_current_a * 10)
        self._limit_da = 0
        self._failsafe_da = 0
        self._indicator = 0
        self._heartbeat = 0
        self._watchdog = Watchdog()
        self._tap = TapLatch()
        self._amps = np.zeros(3)
        self._watts = 0.0
        self._energy_wh = 0.0
        self._temp_c = temp_c
        self._vehicle = VEHICLE_NONE
        self._rcd = False
        self._welded = False
        self._now = 0.0
        self.writes = WriteLog(write_log_size)
        self._input_blocks = (Block(0, HOT_SIZE, self._hot_block),)
        self._holding_blocks = (Block(0, HOLDING_SIZE, self._holding_block),)

    # ------------------------------------------------------------------ Modbus side
    def power_cycle(self) -> None:
        """Power came back after a loss: the box reboots paused, with its holding registers at
        their defaults (watchdog off, failsafe current 0) and no tap; energy survives."""
        self._limit_da = 0
        self._failsafe_da = 0
        self._indicator = 0
        self._heartbeat = 0
        self._watchdog = Watchdog()
        self._tap = TapLatch()

    def _offer_ok(self, value: int) -> bool:
        return value == 0 or MIN_OFFER_DA <= value <= self.hw_max_da

    def _check_write(self, addr: int, values: Sequence[int]) -> int | None:
        if not 1 <= len(values) <= MAX_WRITE:
            return ILLEGAL_VALUE
        if addr < 0 or addr + len(values) > HOLDING_SIZE:
            return ILLEGAL_ADDRESS
        for offset, value in enumerate(values):
            a = addr + offset
            if not 0 <= value <= 0xFFFF:
                return ILLEGAL_VALUE
            if a in (CURRENT_LIMIT, FAILSAFE_CURRENT) and not self._offer_ok(value):
                return ILLEGAL_VALUE
            if a == INDICATOR and value > MAX_INDICATOR:
                return ILLEGAL_VALUE
        return None

    def _apply(self, addr: int, value: int) -> None:
        if addr == WATCHDOG_TIMEOUT:
            self._watchdog.set_timeout(self._now, value)
        elif addr == HEARTBEAT:
            self._heartbeat = value
            self._watchdog.heartbeat(self._now)
        elif addr == CURRENT_LIMIT:
            if not self._watchdog.failsafe:
                self._limit_da = value
        elif addr == FAILSAFE_CURRENT:
            self._failsafe_da = value
            if self._watchdog.failsafe:
                self._limit_da = value
        elif addr == INDICATOR:
            self._indicator = value

    # ------------------------------------------------------------------ physics side
    def offered_a(self) -> float:
        """The pilot's offer in A (0 = paused): current_limit, failsafe and trips applied."""
        return 0.0 if self._rcd else self._limit_da / 10.0

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
            self._limit_da = self._failsafe_da

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
        if self._rcd:
            return CP_F
        if self._vehicle == VEHICLE_NONE:
            return CP_A
        if self._vehicle == VEHICLE_CHARGING and self.offered_a() > 0:
            return CP_C
        return CP_B

    def _status(self) -> int:
        return (
            int(self._watchdog.failsafe)
            | int(self._temp_c >= HOT_C) << 1
            | int(self._rcd) << 2
            | int(self._welded) << 3
        )

    def _hot_block(self) -> list[int]:
        currents = [u16(max(0.0, float(a)) * 100) for a in self._amps]
        if self.phases == 1:
            currents[1:] = [0, 0]  # an unused phase reads 0
        return [
            MODEL,
            PROTOCOL_VERSION,
            self.cp_state(),
            self._status(),
            *currents,
            *u32_words(max(0, round(self._watts))),
            *u32_words(wh_counter(self._energy_wh)),
            i16(self._temp_c * 10),
            self.phases,
            self.hw_max_da,
            *self._tap.words(),
            self._watchdog.remaining(self._now),
        ]

    def _holding_block(self) -> list[int]:
        return [
            self._watchdog.timeout_s,
            self._heartbeat,
            self._limit_da,
            self._failsafe_da,
            self._indicator,
        ]

    # ------------------------------------------------------------------ read-back
    def snapshot(self) -> dict[str, Any]:
        return {
            "kind": "evse",
            "phases": self.phases,
            "now": self._now,
            "hw_max_current_a": self.hw_max_da / 10.0,
            "current_limit_a": self._limit_da / 10.0,
            "failsafe_current_a": self._failsafe_da / 10.0,
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
