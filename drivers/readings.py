"""What the drivers hand to the controller: typed, validated, frozen.

Validity is per field (the table is in docs/modbus.md). A reading exists only if every
CRITICAL value in it made physical sense: port currents, relay feedback, fault codes, status
bits, a wallbox's cp state and currents, a meter's currents, the device's identity. One bad
critical value and the decoder raises `BadValue` for the whole reading (the controller counts
the device at its worst case). A bad value in a NON-critical field (a tap, a temperature, a
supply voltage, a power, an energy counter) makes that field `None` and lists it in the
reading's `bad` with its register and why: never a plausible stand-in, and the device stays
up. A `None` that is not listed in `bad` means what the field says it means (no tap yet).
Per-port and per-phase values are tuples indexed from 0 (port p at p - 1; meter channel L1
at 0).
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
class BadField:
    """A non-critical field the device answered with a value outside physical sense. `name` is
    the reading's attribute, with `[p]` for a port or channel (from 1): "tap", "voltage_v",
    "temperature_c[3]", "energy_wh[2]"."""

    name: str
    register: int
    value: object
    why: str

    def __str__(self) -> str:
        return f"{self.name} (register {self.register}): bad value {self.value!r}: {self.why}"


def bad_names(bad: tuple[BadField, ...]) -> frozenset[str]:
    return frozenset(b.name for b in bad)


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
    temperature_c: float | None  # cabinet; None: bad (in `bad`)
    voltage_v: float | None  # None: bad (in `bad`)
    tap: Tap | None  # None: no tap since the pile powered up (tap_seq 0), or bad (in `bad`)
    watchdog_remaining_s: int
    pile_current_a: float | None  # None: bad (in `bad`)
    current_a: tuple[float, ...]  # per port
    relay_closed: tuple[bool, ...]  # contact feedback
    load_present: tuple[bool, ...]  # current >= 20 mA
    fault: tuple[int, ...]  # FAULT_* per port
    bad: tuple[BadField, ...] = ()  # the non-critical fields that were bad

    @property
    def tap_bad(self) -> bool:
        """The tap registers were malformed: `tap` is None but says nothing about taps."""
        return "tap" in bad_names(self.bad)

    @property
    def alarm(self) -> str | None:
        """ "smoke" or "estop" when either input is active (smoke first), else None."""
        if self.smoke:
            return "smoke"
        return "estop" if self.estop else None


@dataclass(frozen=True, slots=True)
class PileSlow:
    """The pile's slow blocks: read on the slow cadence, not every tick."""

    energy_wh: tuple[int | None, ...]  # lifetime counter per port (u32, wraps at 2**32)
    power_w: tuple[int | None, ...]
    temperature_c: tuple[float | None, ...]  # a socket's; None: bad (in `bad`)
    bad: tuple[BadField, ...] = ()


@dataclass(frozen=True, slots=True)
class EvseHot:
    """The wallbox's hot block (input 0..20)."""

    cp_state: int  # 1..6 = A..F
    failsafe: bool
    over_temp: bool
    rcd_trip: bool
    contactor_welded: bool
    current_a: tuple[float, float, float]  # L1..L3 of the connector; an unused phase reads 0
    power_w: int | None  # None: bad (in `bad`), as for every optional field below
    energy_wh: int | None  # lifetime, u32
    temperature_c: float | None
    phases: int  # 1 or 3
    hw_max_current_a: float | None  # None: bad; the driver keeps the last good maximum
    tap: Tap | None  # None: no tap yet, or bad (in `bad`)
    watchdog_remaining_s: int
    bad: tuple[BadField, ...] = ()

    @property
    def tap_bad(self) -> bool:
        return "tap" in bad_names(self.bad)

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

    volts: tuple[float | None, ...]
    amps: tuple[float, ...]  # critical: every one valid, or no reading
    watts: tuple[float | None, ...]
    total_w: float | None
    hz: float | None
    import_kwh: float | None
    bad: tuple[BadField, ...] = ()
