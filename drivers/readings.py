"""What the drivers hand to the controller: typed, validated, frozen.

A reading exists only if every value in it made physical sense (the decoders raise
`BadValue` otherwise), so nothing downstream checks for garbage again. Per-port and
per-phase values are tuples indexed from 0 (port p at p - 1; meter channel L1 at 0).
"""

from __future__ import annotations

from dataclasses import dataclass

# Port fault codes (pile port_state bits 8..15; hardware/pile.md).
FAULT_NONE = 0
FAULT_OVER_POWER = 1
FAULT_OVER_TEMP = 2
FAULT_WELDED = 3
FAULT_SHORT = 4
FAULT_NAMES = {
    FAULT_NONE: "none",
    FAULT_OVER_POWER: "over_power",
    FAULT_OVER_TEMP: "over_temp",
    FAULT_WELDED: "welded",
    FAULT_SHORT: "short",
}

# IEC 61851 control pilot states as the wallbox reports them (cp_state 1..6).
CP_STATES = {1: "A", 2: "B", 3: "C", 4: "D", 5: "E", 6: "F"}


@dataclass(frozen=True, slots=True)
class Tap:
    """The latest card tap a device holds. `seq` counts taps since power-up (1..65535, wraps
    to 1): a new tap is a new `seq`. `uid` is upper-case hex of the 4, 7 or 8 UID bytes."""

    seq: int
    port: int
    uid: str


@dataclass(frozen=True, slots=True)
class PileHot:
    """The pile's hot block (input 0..48+N-1): everything one control tick needs."""

    failsafe: bool  # watchdog expired: the relays follow failsafe_mask
    smoke: bool
    over_temp: bool  # cabinet >= 70 C
    supply_fault: bool  # supply below 176 V or above 264 V
    estop: bool
    temperature_c: float  # cabinet
    voltage_v: float
    tap: Tap | None  # None: no tap since the pile powered up (tap_seq 0)
    watchdog_remaining_s: int
    pile_current_a: float
    current_a: tuple[float, ...]  # per port
    relay_closed: tuple[bool, ...]  # contact feedback
    load_present: tuple[bool, ...]  # current >= 20 mA
    fault: tuple[int, ...]  # FAULT_* per port

    @property
    def alarm(self) -> str | None:
        """ "smoke" or "estop" when either input is active (smoke first), else None."""
        if self.smoke:
            return "smoke"
        return "estop" if self.estop else None


@dataclass(frozen=True, slots=True)
class PileSlow:
    """The pile's slow blocks: read on the slow cadence, not every tick."""

    energy_wh: tuple[int, ...]  # lifetime counter per port (u32, wraps at 2**32)
    power_w: tuple[int, ...]
    temperature_c: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class EvseHot:
    """The wallbox's hot block (input 0..20)."""

    cp_state: int  # 1..6 = A..F
    failsafe: bool
    over_temp: bool
    rcd_trip: bool
    contactor_welded: bool
    current_a: tuple[float, float, float]  # L1..L3 of the connector; an unused phase reads 0
    power_w: int
    energy_wh: int  # lifetime, u32
    temperature_c: float
    phases: int  # 1 or 3
    hw_max_current_a: float
    tap: Tap | None
    watchdog_remaining_s: int

    @property
    def cp_letter(self) -> str:
        return CP_STATES[self.cp_state]

    @property
    def vehicle_connected(self) -> bool:
        return self.cp_state in (2, 3, 4)

    @property
    def charging(self) -> bool:
        return self.cp_state in (3, 4)

    @property
    def faulted(self) -> bool:
        """A state the controller must not offer current into."""
        return self.cp_state in (5, 6) or self.over_temp or self.rcd_trip or self.contactor_welded


@dataclass(frozen=True, slots=True)
class MeterReading:
    """One meter's values; channel i (L1 = 0) measures the supply phase `Device.phases[i]`."""

    volts: tuple[float, ...]
    amps: tuple[float, ...]
    watts: tuple[float, ...]
    total_w: float
    hz: float
    import_kwh: float
