"""The faults a scenario may schedule: the simulator's actions (sim/actions.py) that break
something, each with what it acts on and the action that ends it, plus the controller's crash
and the staff actions that clear a latch (`clear_alarm`, `clear_fault`), which the runner
carries out through the daemon's own staff commands (`alarm/clear`, `bays/clear-fault`).

One row per fault; a fault the simulator learns is one row here. A fault without an ending
(`short`: a blown fuse; `sag`: it has its own `seconds`) takes no `for`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from chargectl.sim.actions import Param

Target = Literal["device", "bay", "supply", "controller", "staff"]
CRASH = "crash"  # the controller killed (no shutdown); `restart` after `for`
RESTART = "restart"
CLEAR_ALARM = "clear_alarm"
CLEAR_FAULT = "clear_fault"
# A staff action -> the daemon's staff command that carries it out (its parameters the body).
STAFF_COMMANDS = {CLEAR_ALARM: "alarm/clear", CLEAR_FAULT: "bays/clear-fault"}


def _set(**values: Any) -> Callable[[Mapping[str, Any], float], dict[str, Any]]:
    def end(params: Mapping[str, Any], nominal_v: float) -> dict[str, Any]:
        return {**params, **values}

    return end


def _nominal_volts(params: Mapping[str, Any], nominal_v: float) -> dict[str, Any]:
    return {**params, "volts": nominal_v}


@dataclass(frozen=True, slots=True)
class FaultKind:
    name: str  # a row of chargectl.sim.actions.ACTIONS, `crash`, or a staff action
    target: Target
    roles: frozenset[str] = frozenset()  # a device's roles it applies to (empty: any)
    sockets_only: bool = False  # a bay: a pile's socket, not a wallbox
    # The action that ends it, from the starting one's parameters and the nominal voltage.
    end: Callable[[Mapping[str, Any], float], dict[str, Any]] | None = None
    needs_for: bool = False
    status_bit: str | None = None  # a pile input its template must have
    params: tuple[Param, ...] = ()  # a row that is no simulator action: its parameters


_PILE = frozenset({"pile"})
FAULT_ROWS: tuple[FaultKind, ...] = (
    FaultKind("meter_gone", "device", frozenset({"meter"}), end=_set(active=False)),
    FaultKind("meter_frozen", "device", frozenset({"meter"}), end=_set(active=False)),
    FaultKind("silent", "device", end=_set(active=False)),
    FaultKind("delay", "device", end=_set(seconds=0.0)),
    FaultKind("exception", "device", end=_set(code=None)),
    FaultKind("garbage", "device", end=_set(value=None)),
    FaultKind("refuse_writes", "device", end=_set(active=False)),
    FaultKind("smoke", "device", _PILE, end=_set(active=False), status_bit="smoke"),
    FaultKind("estop", "device", _PILE, end=_set(active=False), status_bit="estop"),
    FaultKind("cabinet", "device", _PILE, end=_set(extra_c=0.0)),
    FaultKind("rcd", "device", frozenset({"evse"}), end=_set(active=False)),
    FaultKind("hot", "bay", sockets_only=True, end=_set(extra_c=0.0)),
    FaultKind("welded", "bay", sockets_only=True, end=_set(active=False)),
    FaultKind("short", "bay", sockets_only=True),
    FaultKind("heater", "bay", sockets_only=True, end=_set(watts=0.0)),
    FaultKind("no_taper", "bay", sockets_only=True, end=_set(active=False)),
    FaultKind("cell_short", "bay", sockets_only=True, end=_set(watts=0.0)),
    FaultKind("modified_pack", "bay", sockets_only=True, end=_set(watts=0.0)),
    FaultKind("poor_contact", "bay", sockets_only=True, end=_set(active=False)),
    FaultKind("supply_v", "supply", end=_nominal_volts),
    FaultKind("sag", "supply"),
    FaultKind(CRASH, "controller", needs_for=True),
    FaultKind(CLEAR_ALARM, "staff"),
    FaultKind(CLEAR_FAULT, "staff", params=(Param("bay", str),)),
)
FAULTS: dict[str, FaultKind] = {f.name: f for f in FAULT_ROWS}

# Parameters the replay sets itself: a fault is on from `at` for `for`.
SET_BY_REPLAY = frozenset({"active"})


def value_problem(name: str, param: str, value: Any) -> str | None:
    """What is wrong with a parameter's value beyond its type (what the action would refuse
    an hour into the run), or None."""
    if isinstance(value, float | int) and not isinstance(value, bool):
        nonneg = ("extra_c", "seconds", "watts", "volts", "ramp_s", "after_s", "grow_w_per_min")
        if param in nonneg and value < 0:
            return f"must be >= 0, got {value}"
        if param in ("at_soc", "depth") and not 0 <= value <= 1:
            return f"0..1, got {value}"
        if name == "exception" and param == "code" and not 1 <= value <= 255:
            return f"a Modbus exception code is 1..255, got {value}"
        if param == "addr" and not 0 <= value <= 0xFFFF:
            return f"0..65535, got {value}"
        if param == "count" and not 1 <= value <= 0x10000:
            return f"1..65536, got {value}"
        if param == "value" and not 0 <= value <= 0xFFFF:
            return f"0..65535, got {value}"
        if param == "volts" and value > 300:
            return f"at most 300 V, got {value}"
    if param == "table" and isinstance(value, str):
        from chargectl.sim.server import GARBAGE_TABLES, WRITE_TABLES

        tables = GARBAGE_TABLES if name == "garbage" else WRITE_TABLES
        if value not in tables:
            return f"one of {', '.join(tables)}, got {value!r}"
    return None
