"""A multi-port socket pile: the role's behaviour, served through any pile template.

The register image (tables, addresses, types, scaling, bits and codes) is the template's,
built by `image.RegisterImage`; this module is what every pile does behind it, as
../shared/hardware/pile.md states it for the contract pile: a relay per port, a watchdog and
a fail-safe mask, the pile's own per-port cut-off, latched faults, card taps and lamps. A
template without some of it (no lamps, no smoke input) simply does not show that part.

The physics side (contact_closed, step) is what the world calls once per step with arrays of
all ports. The pile has no clock: its time is the `now` of the latest `step`, so a write
between two steps happens at the earlier one (0.1 s resolution is far below the 1 s watchdog
unit).

Decisions where the page is silent (docs/modbus.md lists them):
- A latched fault (1, 2, 4) or the emergency stop sets relay_cmd to 0; a close command while
  it lasts is accepted and has no effect (relay_cmd keeps reading 0), so clearing a fault never
  closes a relay by itself.
- In failsafe, relay_cmd writes are accepted and ignored; a failsafe_mask write re-drives the
  relays to the new mask. A port with a latched fault stays open in failsafe.
- failsafe_mask bits of ports above N, fault_reset 0, and values above 65535 answer 03.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from chargectl.drivers.readings import FAULT_NAMES
from chargectl.drivers.template import Template, shipped
from chargectl.sim.devices import pile_kernel as k
from chargectl.sim.devices.image import ImageDevice, RegisterImage
from chargectl.sim.devices.registers import TapLatch, Watchdog, WriteLog

CONTRACT = "pile"  # the template of ../shared/hardware/pile.md, the default
MAX_INDICATOR = 7  # the lamp vocabulary: 0 off .. 7 charge complete (pile.md)
CABINET_HOT_C = 70.0
SUPPLY_MIN_V = 176.0
SUPPLY_MAX_V = 264.0
FAULT_MEANINGS = tuple(FAULT_NAMES[c] for c in range(len(FAULT_NAMES)))  # by kernel code


class PileModel(ImageDevice):
    def __init__(
        self,
        ports: int,
        port_power_limit_w: int = 2000,
        *,
        template: Template | None = None,
        supply_v: float = 220.0,
        cabinet_c: float = 25.0,
        write_log_size: int = 1000,
    ) -> None:
        t = template or shipped()[CONTRACT]
        if t.role != "pile":
            raise ValueError(f"template {t.kind!r} is a {t.role} template, not a pile's")
        lo, hi = t.ports
        if not lo <= ports <= hi:
            raise ValueError(f"{t.kind} pile ports must be {lo}..{hi}, got {ports}")
        cutoff = t.fields.get("port_power_limit")
        if cutoff is None:
            port_power_limit_w = 0  # the model has no cut-off of its own
        elif not (cutoff.min or 0) <= port_power_limit_w <= (cutoff.max or 0xFFFF):
            raise ValueError(
                f"{t.kind} pile port_power_limit_w must be {cutoff.min or 0:g}.."
                f"{cutoff.max or 0xFFFF:g}, got {port_power_limit_w}"
            )
        self.kind = t.kind
        self.ports = ports
        self.image = RegisterImage(t, ports)
        self._mask_per_port = "failsafe_mask" in t.fields and t.fields["failsafe_mask"].per_port
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
        self._numbers: dict[str, Callable[[], Any]] = {
            "cabinet_temperature": lambda: self._cabinet_c,
            "supply_voltage": lambda: self._supply_v,
            "watchdog_remaining": lambda: self._watchdog.remaining(self._now),
            "pile_current": lambda: float(self._amps().sum()),
            "port_current": self._amps,
            "relay_closed": lambda: self._b[k.CLOSED],
            "load_present": self._load_present,
            "port_energy": lambda: self._f[k.ENERGY],
            "port_power": lambda: self._f[k.WATTS],
            "port_temperature": lambda: self._f[k.TEMP],
            "watchdog_timeout": lambda: self._watchdog.timeout_s,
            "heartbeat": lambda: self._heartbeat,
            "failsafe_mask": self._mask_value,
            "port_power_limit": lambda: self._limit_w,
            "fault_reset": lambda: 0,  # reads 0
            "relay": lambda: self._b[k.CMD],
            "indicator": lambda: self._indicator,
        }

    # ------------------------------------------------------------------ the image's source
    def number(self, name: str) -> Any:
        return self._numbers[name]()

    def flags(self, name: str) -> Mapping[str, Any]:
        if name == "status":
            return {
                "failsafe": self._watchdog.failsafe,
                "smoke": self._smoke,
                "over_temp": self._cabinet_c >= CABINET_HOT_C - k.EPS,
                "supply_fault": not SUPPLY_MIN_V <= self._supply_v <= SUPPLY_MAX_V,
                "estop": self._estop,
            }
        if name == "port_state":
            return {"relay_closed": self._b[k.CLOSED], "load_present": self._load_present()}
        fault = self._b[k.FAULT]  # port_fault as bits: one per meaning
        return {FAULT_NAMES[c]: fault == c for c in FAULT_NAMES if c}

    def meanings(self, name: str) -> tuple[tuple[str, ...], Any]:
        return FAULT_MEANINGS, self._b[k.FAULT]

    def words(self, name: str) -> list[int]:
        return self._tap.words()

    def _amps(self) -> np.ndarray:
        return np.maximum(self._f[k.AMPS], 0.0)

    def _load_present(self) -> np.ndarray:
        return self._amps() >= k.LOAD_PRESENT_A - k.EPS

    def _mask_value(self) -> Any:
        if self._mask_per_port:
            return (self._mask >> np.arange(self.ports)) & 1
        return self._mask

    def valid(self, name: str, port: int | None, value: float | str) -> bool:
        if name == "fault_reset":
            return value == "all" or (
                isinstance(value, float | int) and value == int(value) and 1 <= value <= self.ports
            )
        if isinstance(value, str) or value != int(value) or value < 0:
            return False
        if name == "failsafe_mask" and port is None:
            return int(value) >> self.ports == 0  # a bit for a port the pile does not have
        if name in ("relay", "failsafe_mask"):
            return value <= 1
        if name == "indicator":
            return value <= MAX_INDICATOR
        return True  # watchdog_timeout and heartbeat take any value; the cut-off its range

    def apply(self, name: str, port: int | None, value: float | str) -> None:
        if name == "fault_reset":
            self._reset_faults(None if value == "all" else int(value) - 1)
            return
        v = int(value)
        if name == "watchdog_timeout":
            self._watchdog.set_timeout(self._now, v)
        elif name == "heartbeat":
            self._heartbeat = v
            self._watchdog.heartbeat(self._now)
        elif name == "failsafe_mask":
            if port is None:
                self._mask = v
            else:
                bit = 1 << (port - 1)
                self._mask = self._mask | bit if v else self._mask & ~bit
            self._drive_failsafe()
        elif name == "port_power_limit":
            self._limit_w = v
        elif name == "relay" and port is not None:
            self._command_relay(port - 1, v)
        elif name == "indicator" and port is not None:
            self._indicator[port - 1] = v

    def _command_relay(self, p: int, value: int) -> None:
        held_open = self._estop or self._b[k.LOCK, p] == 1
        if not self._watchdog.failsafe and not (held_open and value == 1):
            was = self._b[k.CLOSED, p]
            self._b[k.CMD, p] = value
            self._b[k.CLOSED, p] = value | self._b[k.WELDED, p]
            if self._b[k.CLOSED, p] and not was:
                self.close_t[p] = self._instant()

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

    # ------------------------------------------------------------------ read-back
    def snapshot(self) -> dict[str, Any]:
        return {
            "kind": "pile",
            "template": self.kind,
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
