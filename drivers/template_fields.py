"""The vocabulary of device templates: the field names the core knows, per role.

A template (drivers/templates/<kind>.yaml) maps these names onto one model's registers. The
driver, `chargectl check` and the simulator read the same template, so a name means the same
thing everywhere: its unit (what `register value x scale` is), whether it is per port, read
or written, read every tick (hot) or on the slow cadence, and which meanings its `bits` or
`codes` may name. A name not listed here is refused, and so is a meaning outside the labels
the outputs report (`readings.FAULT_NAMES`, `readings.CP_STATES`, the pile alarms): a
template maps its own raw codes and bits onto this vocabulary, never the other way round.

Optional names may be left out: the capability they give goes with them (`capabilities`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from chargectl.drivers.readings import CP_STATES, FAULT_NAMES

ROLES = ("pile", "evse", "meter")

PILE_STATUS = frozenset({"failsafe", "smoke", "over_temp", "supply_fault", "estop"})
EVSE_STATUS = frozenset({"failsafe", "over_temp", "rcd_trip", "contactor_welded"})
PORT_STATE = frozenset({"relay_closed", "load_present"})
# Meanings a port fault may have: the outputs' fault labels but "none" (which is the absence
# of a fault: code 0 of a code field, no bit of a bit field).
PORT_FAULTS = frozenset(name for name in FAULT_NAMES.values() if name != "none")
CP_LETTERS = frozenset(CP_STATES.values())
TAP_WIDTH = 6  # seq, info (UID length << 8 | port), 4 words of UID (hardware/pile.md)


@dataclass(frozen=True, slots=True)
class Term:
    """One name of the vocabulary.

    unit: what `register x scale` is in ("" for a dimensionless value, a word of bits, a code).
    per_port: a pile's per-socket field (address of port p = address + (p - 1) x stride).
    write: written by the driver (holding or coil); else read (input, holding, discrete, coil).
    slow: read on the slow cadence rather than every tick.
    bits / codes: the meanings its `bits` / `codes` may name (empty: not allowed).
    equals: an identity check (`equals:` is required, and this is what it may be).
    """

    unit: str = ""
    per_port: bool = False
    required: bool = False
    write: bool = False
    slow: bool = False
    bits: frozenset[str] = frozenset()
    codes: frozenset[str] = frozenset()
    equals: bool = False
    ranged: bool = False  # a written value with a `min`/`max` range
    special: frozenset[str] = frozenset()  # named raw values, e.g. fault_reset `all`
    label: str = ""  # how messages name it; default: the name with spaces


def _phases(prefix: str, unit: str, required: bool) -> dict[str, Term]:
    return {f"{prefix}_l{n}": Term(unit=unit, required=required) for n in (1, 2, 3)}


PILE: Mapping[str, Term] = {
    "model": Term(equals=True, label="model id"),
    "protocol_version": Term(equals=True),
    "port_count": Term(equals=True, label="port count (config `ports`)"),
    "status": Term(bits=PILE_STATUS, label="pile_status"),
    "cabinet_temperature": Term(unit="degC"),
    "supply_voltage": Term(unit="V"),
    "tap": Term(),
    "watchdog_remaining": Term(unit="s"),
    "pile_current": Term(unit="A"),
    "port_current": Term(unit="A", per_port=True, required=True),
    "port_state": Term(per_port=True, bits=PORT_STATE, codes=PORT_FAULTS),
    "relay_closed": Term(per_port=True),
    "load_present": Term(per_port=True),
    "port_fault": Term(per_port=True, bits=PORT_FAULTS, codes=PORT_FAULTS),
    "port_energy": Term(unit="Wh", per_port=True, slow=True),
    "port_power": Term(unit="W", per_port=True, slow=True),
    "port_temperature": Term(unit="degC", per_port=True, slow=True),
    # Writes.
    "watchdog_timeout": Term(unit="s", write=True),
    "heartbeat": Term(write=True),
    "failsafe_mask": Term(write=True),
    "port_power_limit": Term(unit="W", write=True, ranged=True),
    "fault_reset": Term(write=True, special=frozenset({"all"})),
    "relay": Term(per_port=True, required=True, write=True),
    "indicator": Term(per_port=True, write=True),
}

EVSE: Mapping[str, Term] = {
    "model": Term(equals=True, label="model id"),
    "protocol_version": Term(equals=True),
    "cp_state": Term(required=True, codes=CP_LETTERS),
    "status": Term(bits=EVSE_STATUS),
    **_phases("current", "A", True),
    "power": Term(unit="W"),
    "energy": Term(unit="Wh"),
    "temperature": Term(unit="degC"),
    "phases": Term(),
    "hw_max_current": Term(unit="A"),
    "tap": Term(),
    "watchdog_remaining": Term(unit="s"),
    # Writes.
    "watchdog_timeout": Term(unit="s", write=True),
    "heartbeat": Term(write=True),
    "current_limit": Term(unit="A", required=True, write=True, ranged=True),
    "failsafe_current": Term(unit="A", write=True, ranged=True),
    "indicator": Term(write=True),
    "enable": Term(write=True),
}

METER: Mapping[str, Term] = {
    **_phases("voltage", "V", False),
    **_phases("current", "A", False),
    **_phases("power", "W", False),
    "power_total": Term(unit="W"),
    "frequency": Term(unit="Hz", required=True),
    "import_energy": Term(unit="kWh", required=True),
}

VOCABULARY: Mapping[str, Mapping[str, Term]] = {"pile": PILE, "evse": EVSE, "meter": METER}


def label(role: str, name: str) -> str:
    term = VOCABULARY[role].get(name)
    return term.label if term is not None and term.label else name.replace("_", " ")


def meter_required(phases: int) -> list[str]:
    """A meter template's required fields for its number of channels."""
    names = [f"{q}_l{n}" for n in range(1, phases + 1) for q in ("voltage", "current", "power")]
    return [*names, "frequency", "import_energy"]


# Capabilities: what a template can do, derived from the fields it has. `check` compares a
# device's settings with them; the adapter asks for them instead of a driver's class.
CAPABILITIES = frozenset(
    {
        "per_port_relay",
        "per_port_current",
        "per_port_power",
        "port_temperature",
        "cabinet_temperature",
        "tap_reader",
        "watchdog",
        "failsafe_mask",
        "failsafe_current",
        "port_power_cutoff",
        "lamps",
        "fault_reset",
        "energy",
        "hw_max_current",
    }
)

# capability -> the fields that give it (all of them)
_GIVEN_BY: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "pile": {
        "per_port_relay": ("relay",),
        "per_port_current": ("port_current",),
        "per_port_power": ("port_power",),
        "port_temperature": ("port_temperature",),
        "cabinet_temperature": ("cabinet_temperature",),
        "tap_reader": ("tap",),
        "watchdog": ("watchdog_timeout", "heartbeat"),
        "failsafe_mask": ("failsafe_mask",),
        "port_power_cutoff": ("port_power_limit",),
        "lamps": ("indicator",),
        "fault_reset": ("fault_reset",),
        "energy": ("port_energy",),
    },
    "evse": {
        "tap_reader": ("tap",),
        "watchdog": ("watchdog_timeout", "heartbeat"),
        "failsafe_current": ("failsafe_current",),
        "lamps": ("indicator",),
        "energy": ("energy",),
        "hw_max_current": ("hw_max_current",),
    },
    "meter": {"energy": ("import_energy",)},
}


def capabilities_of(role: str, fields: set[str], *, setpoint_watchdog: bool) -> frozenset[str]:
    """The capabilities `fields` give. `setpoint_watchdog`: a wallbox whose timeout is set on
    the box and restarted by every setpoint write (no heartbeat register) has a watchdog too."""
    caps = {cap for cap, needs in _GIVEN_BY[role].items() if all(n in fields for n in needs)}
    if role == "evse" and setpoint_watchdog:
        caps.add("watchdog")
    return frozenset(caps)
