"""What one tick saw and what it wants: the plain data between the edges and the pure core.

The daemon fills an `Observation` from the drivers' readings and a `Demand` from the sessions;
`ControlCore.step` turns them into a `Decision`. Arrays are indexed like `Layout` (bays B,
circuits C, phases 3).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from chargectl.control.external_limits import Cap
from chargectl.control.layout import BoolArray, FloatArray, IntArray, Layout

# Pile fault codes (hardware/pile.md) and the controller's own.
FAULT_NONE = 0
FAULT_OVER_POWER = 1
FAULT_OVER_TEMP = 2
FAULT_WELDED = 3
FAULT_SHORT = 4
FAULT_WALLBOX = 16  # a wallbox status bit (over-temperature, RCD trip, welded) or cp state E/F
# Each code's name, as the metrics' `fault` label and the event log say it.
FAULT_NAMES = {
    FAULT_OVER_POWER: "over_power",
    FAULT_OVER_TEMP: "over_temp",
    FAULT_WELDED: "welded",
    FAULT_SHORT: "short_circuit",
    FAULT_WALLBOX: "evse_fault",
}

BAY_STATES = ("idle", "waiting", "charging", "paused", "fault", "disabled")


@dataclass
class Observation:
    bay_up: BoolArray  # [B] its device answered this tick
    bay_current_a: FloatArray  # [B] measured RMS current (a wallbox: its highest phase)
    bay_fault: IntArray  # [B] fault code, FAULT_NONE when healthy
    wallbox_plugged: BoolArray  # [B] a vehicle is connected (False for sockets)
    wallbox_hw_max_a: FloatArray  # [B] hardware maximum (0 for sockets)
    meter_a: FloatArray  # [C, 3] the circuit's meter, NaN where none or down
    alarm: str | None = None  # "smoke" / "estop" on some pile, None when clear
    alarm_at: str | None = None  # the pile that raised it
    # [B] the relay (or setpoint) the controller decided is not confirmed by the device: a
    # write failed or was not sent. Such a bay may be in either state.
    command_unsure: BoolArray | None = None
    # [B] the bay may be on once its device falls to fail-safe: its bit in every mask the
    # pile may hold (all bits while unknown), a wallbox whose fail-safe current of 0 is not
    # confirmed. None: only what the core decided.
    failsafe_on: BoolArray | None = None
    # Pile id -> "pile_overtemp" (cabinet >= 70 C) or "supply_fault" (supply out of range).
    pile_alarms: dict[str, str] = field(default_factory=dict)

    @classmethod
    def empty(cls, layout: Layout) -> Observation:
        b, c = layout.n_bays, layout.n_circuits
        return cls(
            bay_up=np.zeros(b, dtype=np.bool_),
            bay_current_a=np.zeros(b),
            bay_fault=np.zeros(b, dtype=np.int64),
            wallbox_plugged=np.zeros(b, dtype=np.bool_),
            wallbox_hw_max_a=np.zeros(b),
            meter_a=np.full((c, 3), np.nan),
        )


@dataclass
class Demand:
    wants: BoolArray  # [B] an open session wants current
    credit: FloatArray  # [B] energy served in the session so far (Wh): lower goes first
    priority: IntArray  # [B] staff priority, higher first (0 by default)

    @classmethod
    def none(cls, layout: Layout) -> Demand:
        b = layout.n_bays
        return cls(np.zeros(b, dtype=np.bool_), np.zeros(b), np.zeros(b, dtype=np.int64))


@dataclass
class Decision:
    relay_on: BoolArray  # [B] sockets: relay commanded closed; wallboxes: setpoint > 0
    setpoint_a: FloatArray  # [B] a wallbox's offered current; a socket's planned current
    circuit_current_a: FloatArray  # [C, 3] measured (meter) or estimated
    limit_a: FloatArray  # [C, 3] the limit planned against (thermal derating, external cap)
    planned_a: FloatArray  # [C, 3]
    binding: BoolArray  # [C, 3]
    infeasible: BoolArray  # [C, 3]
    overloaded: BoolArray  # [C] a measured phase above its configured limit this tick
    new_overloads: BoolArray  # [C] overloads that began this tick (for the event counter)
    thermal_ratio: FloatArray  # [C]
    unmanaged_a: FloatArray  # [C, 3] as estimated this tick
    bay_state: tuple[str, ...]  # [B] one of BAY_STATES
    failsafe_mask: dict[str, int]  # pile id -> bit (port - 1) set: closed in failsafe
    welded: BoolArray  # [B]
    alarm: str | None  # "smoke" / "estop", latched until staff clear it
    notes: list[str] = field(default_factory=list)  # state changes worth one log line
    alarm_at: str | None = None  # the pile that raised the latched alarm
    pile_alarms: dict[str, str] = field(default_factory=dict)  # as observed this tick
    # circuit id -> the cap set from above in force this tick (limit_a above is under it)
    external_caps: dict[str, Cap] = field(default_factory=dict)
