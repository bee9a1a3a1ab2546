"""A multi-port socket pile, exactly as ../shared/hardware/pile.md describes it.

The Modbus side (read_input, read_holding, write_holding) is the register image; the physics
side (contact_closed, step) is what the world calls once per step with arrays of all ports.
The pile has no clock: its time is the `now` of the latest `step`, so a write between two
steps happens at the earlier one (0.1 s resolution is far below the 1 s watchdog unit).

Decisions where the page is silent (docs/modbus.md lists them):
- A latched fault (1, 2, 4) or the emergency stop sets relay_cmd to 0; a close command while
  it lasts is accepted and has no effect (relay_cmd keeps reading 0), so clearing a fault never
  closes a relay by itself.
- In failsafe, relay_cmd writes are accepted and ignored; a failsafe_mask write re-drives the
  relays to the new mask. A port with a latched fault stays open in failsafe.
- failsafe_mask bits of ports above N, fault_reset 0, and values above 65535 answer 03.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from chargectl.sim.devices import pile_kernel as k
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
    u16_array,
    u32_words,
    wh_counter,
)

MODEL = 0x4350
PROTOCOL_VERSION = 1
MAX_PORTS = 32
HOT_SIZE = 80
PORT_CURRENT = 16
PORT_STATE = 48
PORT_ENERGY = 100
PORT_POWER = 200
PORT_TEMPERATURE = 240

# holding
WATCHDOG_TIMEOUT = 0
HEARTBEAT = 1
FAILSAFE_MASK_HI = 2
FAILSAFE_MASK_LO = 3
PORT_POWER_LIMIT = 4
FAULT_RESET = 5
RELAY_CMD = 16
INDICATOR = 48

MAX_POWER_LIMIT_W = 3500
MAX_INDICATOR = 7
RESET_ALL = 0xFFFF

CABINET_HOT_C = 70.0
SUPPLY_MIN_V = 176.0
SUPPLY_MAX_V = 264.0


class PileModel(RegisterDevice):
    def __init__(
        self,
        ports: int,
        port_power_limit_w: int = 2000,
        *,
        supply_v: float = 220.0,
        cabinet_c: float = 25.0,
        write_log_size: int = 1000,
    ) -> None:
        if not 1 <= ports <= MAX_PORTS:
            raise ValueError(f"pile ports must be 1..{MAX_PORTS}, got {ports}")
        if not 0 <= port_power_limit_w <= MAX_POWER_LIMIT_W:
            raise ValueError(
                f"pile port_power_limit_w must be 0..{MAX_POWER_LIMIT_W}, got {port_power_limit_w}"
            )
        self.ports = ports
        self._f = np.zeros((k.F_ROWS, ports), dtype=np.float64)
        self._b = np.zeros((k.B_ROWS, ports), dtype=np.uint8)
        # The world gets a read-only bool view that follows the contacts without a copy.
        self._closed = self._b[k.CLOSED].view(np.bool_)
        self._closed.flags.writeable = False
        self._indicator = np.zeros(ports, dtype=np.int64)
        self._limit_w = port_power_limit_w
        self._default_limit_w = port_power_limit_w
        self._mask = 0
        self._heartbeat = 0
        self._watchdog = Watchdog()
        self._tap = TapLatch()
        self._smoke = False
        self._estop = False
        self._supply_v = supply_v  # until the first step: the initial conditions
        self._cabinet_c = cabinet_c
        self._now = 0.0
        # When each port's contacts last closed (s), for the chargers' inrush: closes at the
        # same instant add up. `instant` tells the time of a write between two steps (the
        # runner sets it; alone, a write happens at the latest step's time).
        self.close_t = np.zeros(ports)
        self.instant: Callable[[], float] | None = None
        self.writes = WriteLog(write_log_size)
        self._input_blocks = (
            Block(0, HOT_SIZE, self._hot_block),
            Block(PORT_ENERGY, 2 * ports, self._energy_block),
            Block(PORT_POWER, ports, lambda: u16_array(self._f[k.WATTS])),
            Block(PORT_TEMPERATURE, ports, self._temperature_block),
        )
        self._holding_blocks = (
            Block(0, 6, self._config_block),
            Block(RELAY_CMD, ports, lambda: self._b[k.CMD].astype(np.int64)),
            Block(INDICATOR, ports, lambda: self._indicator),
        )

    # ------------------------------------------------------------------ Modbus side
    def _check_write(self, addr: int, values: Sequence[int]) -> int | None:
        """Every address first (02), then every value (03): a rejected write changes nothing."""
        if not 1 <= len(values) <= MAX_WRITE:
            return ILLEGAL_VALUE
        for a in range(addr, addr + len(values)):
            if not any(b.start <= a < b.end for b in self._holding_blocks):
                return ILLEGAL_ADDRESS
        mask_hi, mask_lo = self._mask >> 16, self._mask & 0xFFFF
        for offset, value in enumerate(values):
            a = addr + offset
            if not 0 <= value <= 0xFFFF:
                return ILLEGAL_VALUE
            if a == FAILSAFE_MASK_HI:
                mask_hi = value
            elif a == FAILSAFE_MASK_LO:
                mask_lo = value
            elif not self._value_ok(a, value):
                return ILLEGAL_VALUE
        if ((mask_hi << 16) | mask_lo) >> self.ports:
            return ILLEGAL_VALUE  # a bit for a port the pile does not have
        return None

    def _value_ok(self, addr: int, value: int) -> bool:
        if addr == PORT_POWER_LIMIT:
            return value <= MAX_POWER_LIMIT_W
        if addr == FAULT_RESET:
            return 1 <= value <= self.ports or value == RESET_ALL
        if RELAY_CMD <= addr < RELAY_CMD + self.ports:
            return value <= 1
        if INDICATOR <= addr < INDICATOR + self.ports:
            return value <= MAX_INDICATOR
        return True  # watchdog_timeout and heartbeat take any u16

    def _apply(self, addr: int, value: int) -> None:
        if addr == WATCHDOG_TIMEOUT:
            self._watchdog.set_timeout(self._now, value)
        elif addr == HEARTBEAT:
            self._heartbeat = value
            self._watchdog.heartbeat(self._now)
        elif addr == FAILSAFE_MASK_HI:
            self._mask = (value << 16) | (self._mask & 0xFFFF)
            self._drive_failsafe()
        elif addr == FAILSAFE_MASK_LO:
            self._mask = (self._mask & 0xFFFF0000) | value
            self._drive_failsafe()
        elif addr == PORT_POWER_LIMIT:
            self._limit_w = value
        elif addr == FAULT_RESET:
            self._reset_faults(None if value == RESET_ALL else value - 1)
        elif RELAY_CMD <= addr < RELAY_CMD + self.ports:
            p = addr - RELAY_CMD
            held_open = self._estop or self._b[k.LOCK, p] == 1
            if not self._watchdog.failsafe and not (held_open and value == 1):
                was = self._b[k.CLOSED, p]
                self._b[k.CMD, p] = value
                self._b[k.CLOSED, p] = value | self._b[k.WELDED, p]
                if self._b[k.CLOSED, p] and not was:
                    self.close_t[p] = self._instant()
        elif INDICATOR <= addr < INDICATOR + self.ports:
            self._indicator[addr - INDICATOR] = value

    def _instant(self) -> float:
        return self._now if self.instant is None else self.instant()

    def _drive_failsafe(self, at: float | None = None) -> None:
        if not self._watchdog.failsafe:
            return
        bits = (self._mask >> np.arange(self.ports)) & 1
        held_open = self._b[k.LOCK] == 1
        if self._estop:
            held_open[:] = True
        was = self._b[k.CLOSED].copy()
        self._b[k.CMD] = np.where(held_open, 0, bits)
        self._b[k.CLOSED] = self._b[k.CMD] | self._b[k.WELDED]
        # Every relay the failsafe closes closes at the same instant.
        self.close_t[(self._b[k.CLOSED] == 1) & (was == 0)] = self._instant() if at is None else at

    def _reset_faults(self, port_index: int | None) -> None:
        sel = slice(None) if port_index is None else slice(port_index, port_index + 1)
        self._b[k.FAULT, sel] = 0
        self._b[k.LOCK, sel] = 0
        self._f[k.OVER_S, sel] = 0.0

    def power_cycle(self) -> None:
        """Power came back after a loss (a breaker tripped and was reset): the pile reboots.
        Relays open (welded contacts stay closed), the holding registers return to their
        defaults (watchdog off, mask 0, the default cut-off), latched faults and the tap latch
        are gone; the lifetime energy counters survive."""
        self._b[k.CMD] = 0
        self._b[k.CLOSED] = self._b[k.WELDED]
        self._reset_faults(None)
        self._indicator[:] = 0
        self._limit_w = self._default_limit_w
        self._mask = 0
        self._heartbeat = 0
        self._watchdog = Watchdog()
        self._tap = TapLatch()

    # ------------------------------------------------------------------ physics side
    def contact_closed(self) -> np.ndarray:
        """bool[ports], read-only, live: relay command, failsafe, faults and welds applied."""
        return self._closed

    def step(  # noqa: PLR0917 (the world's contract: positional, one call per step)
        self,
        now: float,
        dt: float,
        amps: np.ndarray,
        watts: np.ndarray,
        temp_c: np.ndarray,
        supply_v: float,
        cabinet_c: float,
    ) -> None:
        """Record the true per-port current (A), power (W) and socket temperature (C) of the
        step that just ran with `contact_closed()`, then run the watchdog."""
        if dt <= 0:
            raise ValueError(f"pile step: dt must be > 0, got {dt}")
        self._now = now
        self._supply_v = supply_v
        self._cabinet_c = cabinet_c
        k.step_ports(amps, watts, temp_c, self._f, self._b, dt, float(self._limit_w))
        if self._watchdog.expired(now):
            self._drive_failsafe(at=now)

    # ------------------------------------------------------------------ faults and people
    def _port_index(self, port: int) -> int:
        if not 1 <= port <= self.ports:
            raise ValueError(f"pile port must be 1..{self.ports}, got {port}")
        return port - 1

    def tap(self, port: int, uid: bytes) -> None:
        self._port_index(port)
        self._tap.tap(uid, port)

    def set_welded(self, port: int, welded: bool) -> None:
        p = self._port_index(port)
        was = self._b[k.CLOSED, p]
        self._b[k.WELDED, p] = int(welded)
        self._b[k.CLOSED, p] = self._b[k.CMD, p] | self._b[k.WELDED, p]
        if self._b[k.CLOSED, p] and not was:
            self.close_t[p] = self._instant()

    def set_short(self, port: int) -> None:
        """Fault 4 (short circuit / port fuse blown): latched, relay opened."""
        p = self._port_index(port)
        self._b[k.FAULT, p] = k.FAULT_SHORT
        self._b[k.LOCK, p] = 1
        self._b[k.CMD, p] = 0
        self._b[k.CLOSED, p] = self._b[k.WELDED, p]

    def set_inputs(self, smoke: bool | None = None, estop: bool | None = None) -> None:
        """The smoke alarm input only reports; the emergency stop opens every relay."""
        if smoke is not None:
            self._smoke = smoke
        if estop is not None:
            self._estop = estop
            if estop:
                self._b[k.CMD] = 0
                self._b[k.CLOSED] = self._b[k.WELDED]

    def set_energy_wh(self, port: int, wh: float) -> None:
        """Set a port's lifetime counter (a pile that has been in service for years)."""
        if wh < 0:
            raise ValueError(f"pile port {port} energy must be >= 0 Wh, got {wh}")
        self._f[k.ENERGY, self._port_index(port)] = wh

    # ------------------------------------------------------------------ registers
    def _status(self) -> int:
        return (
            int(self._watchdog.failsafe)
            | int(self._smoke) << 1
            | int(self._cabinet_c >= CABINET_HOT_C - k.EPS) << 2
            | int(not SUPPLY_MIN_V <= self._supply_v <= SUPPLY_MAX_V) << 3
            | int(self._estop) << 4
        )

    def _hot_block(self) -> np.ndarray:
        n = self.ports
        amps = np.maximum(self._f[k.AMPS], 0.0)
        block = np.zeros(HOT_SIZE, dtype=np.int64)
        block[0:6] = (
            MODEL,
            PROTOCOL_VERSION,
            n,
            self._status(),
            i16(self._cabinet_c * 10),
            u16(self._supply_v * 10),
        )
        block[6:12] = self._tap.words()
        block[12] = self._watchdog.remaining(self._now)
        block[13] = u16(float(amps.sum()) * 100)
        block[PORT_CURRENT : PORT_CURRENT + n] = u16_array(amps * 1000)
        state = (
            self._b[k.CLOSED].astype(np.int64)
            | (amps >= k.LOAD_PRESENT_A - k.EPS).astype(np.int64) << 1
            | self._b[k.FAULT].astype(np.int64) << 8
        )
        block[PORT_STATE : PORT_STATE + n] = state
        return block

    def _energy_block(self) -> list[int]:
        out: list[int] = []
        for wh in self._f[k.ENERGY]:
            out.extend(u32_words(wh_counter(wh)))
        return out

    def _temperature_block(self) -> list[int]:
        return [i16(t * 10) for t in self._f[k.TEMP]]

    def _config_block(self) -> list[int]:
        return [
            self._watchdog.timeout_s,
            self._heartbeat,
            self._mask >> 16,
            self._mask & 0xFFFF,
            self._limit_w,
            0,  # fault_reset reads 0
        ]

    # ------------------------------------------------------------------ read-back
    def snapshot(self) -> dict[str, Any]:
        return {
            "kind": "pile",
            "ports": self.ports,
            "now": self._now,
            "failsafe": self._watchdog.failsafe,
            "watchdog_timeout_s": self._watchdog.timeout_s,
            "watchdog_remaining_s": self._watchdog.remaining(self._now),
            "failsafe_mask": self._mask,
            "port_power_limit_w": self._limit_w,
            "relay_cmd": self._b[k.CMD].astype(int).tolist(),
            "contact_closed": self._closed.tolist(),
            "welded": self._b[k.WELDED].astype(bool).tolist(),
            "faults": self._b[k.FAULT].astype(int).tolist(),
            "indicator": self._indicator.tolist(),
            "amps": self._f[k.AMPS].tolist(),
            "watts": self._f[k.WATTS].tolist(),
            "temp_c": self._f[k.TEMP].tolist(),
            "energy_wh": self._f[k.ENERGY].tolist(),
            "smoke": self._smoke,
            "estop": self._estop,
            "tap_seq": self._tap.seq,
            "writes_total": self.writes.total,
            "writes": [r.as_dict() for r in self.writes.records()],
        }
