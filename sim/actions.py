"""The vocabulary that drives the simulator: one table, used by the control API and scenarios.

An action is a mapping `{"do": NAME, ...params}`. Each row of `ACTIONS` names its parameters
(type, default; no default = required) and the function that carries it out, so a new action is
one row, and the API, the scenario checker and docs/simulator.md all see the same list.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chargectl.sim.server import GARBAGE_TABLES, WRITE_TABLES
from chargectl.sim.world import WorldError

if TYPE_CHECKING:
    from chargectl.sim.runner import Simulator


class ActionError(ValueError):
    """A bad action: names the action, the parameter and what was wrong."""


REQUIRED = object()


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    kind: type | tuple[type, ...]
    default: Any = REQUIRED
    help: str = ""


@dataclass(frozen=True, slots=True)
class Action:
    name: str
    params: tuple[Param, ...]
    run: Callable[[Simulator, dict[str, Any]], Any]
    help: str


def _uid(text: str) -> bytes:
    try:
        uid = bytes.fromhex(text.replace(":", "").replace(" ", ""))
    except ValueError:
        raise ActionError(f"uid: hex bytes expected (e.g. 04a1b2c3), got {text!r}") from None
    if len(uid) not in (4, 7, 8):
        raise ActionError(f"uid: a card UID has 4, 7 or 8 bytes, got {len(uid)}")
    return uid


def _plug(sim: Simulator, p: dict[str, Any]) -> None:
    w = sim.world
    if p["bay"] in w.wallboxes:
        w.plug_car(
            p["bay"],
            max_a=p["max_a"],
            phases=p["phases"],
            soc=p["soc"],
            capacity_kwh=p["capacity_kwh"],
            drop_s=p["drop_s"],
        )
    else:
        pf = p["power_factor"]
        w.plug_charger(p["bay"], p["profile"], p["soc"], None if pf is None else float(pf))


def _faults(sim: Simulator, device: str) -> Any:
    try:
        return sim.faults[device]
    except KeyError:
        raise ActionError(f"device {device!r}: no such device") from None


def _set_fault(field: str) -> Callable[[Simulator, dict[str, Any]], None]:
    def run(sim: Simulator, p: dict[str, Any]) -> None:
        setattr(_faults(sim, p["device"]), field, p["active"])

    return run


def _delay(sim: Simulator, p: dict[str, Any]) -> None:
    if p["seconds"] < 0:
        raise ActionError("delay.seconds: must be >= 0")
    _faults(sim, p["device"]).delay_s = float(p["seconds"])


def _exception(sim: Simulator, p: dict[str, Any]) -> None:
    code = p["code"]
    if code is not None and not 1 <= code <= 255:
        raise ActionError(f"exception.code: a Modbus exception code is 1..255, got {code}")
    _faults(sim, p["device"]).exception = code


def _garbage(sim: Simulator, p: dict[str, Any]) -> None:
    f = _faults(sim, p["device"])
    addr, value, table = p["addr"], p["value"], p["table"]
    if table not in GARBAGE_TABLES:
        raise ActionError(f"garbage.table: one of {', '.join(GARBAGE_TABLES)}, got {table!r}")
    if not 0 <= addr <= 0xFFFF:
        raise ActionError(f"garbage.addr: 0..65535, got {addr}")
    top = 1 if table in ("coil", "discrete") else 0xFFFF
    served = f.garbage_of(table)
    if value is None:
        served.pop(addr, None)
    elif not 0 <= value <= top:
        raise ActionError(f"garbage.value: a {table} entry holds 0..{top}, got {value}")
    else:
        served[addr] = value


def _refuse_writes(sim: Simulator, p: dict[str, Any]) -> None:
    f = _faults(sim, p["device"])
    addr, count, table = p["addr"], p["count"], p["table"]
    if table not in WRITE_TABLES:
        raise ActionError(f"refuse_writes.table: one of {', '.join(WRITE_TABLES)}, got {table!r}")
    if not 0 <= addr <= 0xFFFF:
        raise ActionError(f"refuse_writes.addr: 0..65535, got {addr}")
    if not 1 <= count <= 0x10000:
        raise ActionError(f"refuse_writes.count: 1..65536, got {count}")
    rng = (addr, count)
    ranges = f.refused_ranges(table)
    if p["active"]:
        if rng not in ranges:
            ranges.append(rng)
    elif rng in ranges:
        ranges.remove(rng)


def _evse_rcd(sim: Simulator, p: dict[str, Any]) -> None:
    wb = sim.world.wallboxes.get(p["device"])
    if wb is None:
        raise ActionError(f"rcd.device: no wallbox {p['device']!r}")
    wb.model.set_faults(rcd=p["active"])


_NUM = (int, float)
_OPT_INT = (int, type(None))
ROWS: tuple[Action, ...] = (
    Action(
        "plug",
        (
            Param("bay", str, help="<pile>/<port>, or a wallbox id (plugs a car)"),
            Param("profile", str, "li48", "charger profile (sockets)"),
            Param("soc", _NUM, 0.2, "state of charge 0..1"),
            Param("max_a", _NUM, 16.0, "car: its own maximum current"),
            Param("phases", int, 3, "car: 1 or 3"),
            Param("capacity_kwh", _NUM, 40.0, "car: battery size"),
            Param(
                "power_factor",
                (int, float, type(None)),
                None,
                "charger: 0.5..0.99 (null: the profile's)",
            ),
            Param("drop_s", _NUM, 2.0, "car: time constant following a lower offer (<= 5 s)"),
        ),
        _plug,
        "plug a charger into a socket, or a car into a wallbox",
    ),
    Action(
        "unplug",
        (Param("bay", str),),
        lambda s, p: s.world.unplug(p["bay"]),
        "unplug the charger / appliance, or the car",
    ),
    Action(
        "tap",
        (Param("bay", str), Param("uid", str, help="hex, 4, 7 or 8 bytes")),
        lambda s, p: s.world.tap(p["bay"], _uid(p["uid"])),
        "a card tapped at a socket or wallbox",
    ),
    Action(
        "load",
        (Param("circuit", str), Param("amps", list, help="one value per phase of the circuit")),
        lambda s, p: s.world.set_load_step(p["circuit"], [float(a) for a in p["amps"]]),
        "unmanaged load step on a circuit (replaces its previous step; [0] removes it)",
    ),
    Action(
        "heater",
        (Param("bay", str), Param("watts", _NUM, 2000.0)),
        lambda s, p: s.world.set_appliance(p["bay"], float(p["watts"])),
        "an appliance on a socket (resistive; 0 removes it)",
    ),
    Action(
        "hot",
        (Param("bay", str), Param("extra_c", _NUM, 60.0)),
        lambda s, p: s.world.set_socket_hot(p["bay"], float(p["extra_c"])),
        "socket over-temperature: a bad contact running extra_c above normal (0 heals it)",
    ),
    Action(
        "no_taper",
        (Param("bay", str), Param("active", bool, True)),
        lambda s, p: s.world.set_no_taper(p["bay"], p["active"]),
        "the plugged pack never tapers: CC past its cv_soc until cut or unplugged",
    ),
    Action(
        "cell_short",
        (
            Param("bay", str),
            Param("watts", _NUM, 100.0, "extra power once it develops (0 heals it)"),
            Param("at_soc", _NUM, 0.95, "develops after the taper, from this state of charge"),
            Param("after_s", _NUM, 0.0, "... and this many seconds of power later"),
            Param("grow_w_per_min", _NUM, 0.0, "then grows by this much per minute of power"),
        ),
        lambda s, p: s.world.set_cell_short(
            p["bay"],
            float(p["watts"]),
            float(p["at_soc"]),
            float(p["after_s"]),
            float(p["grow_w_per_min"]),
        ),
        "a cell of the plugged pack shorts late in the charge: the charger draws more again",
    ),
    Action(
        "modified_pack",
        (
            Param("bay", str),
            Param("watts", _NUM, 1000.0, "CC power at the socket (0: the profile's)"),
        ),
        lambda s, p: s.world.set_modified_pack(p["bay"], float(p["watts"])),
        "the plugged charger and pack are modified: CC at watts, far above any e-bike charger",
    ),
    Action(
        "poor_contact",
        (
            Param("bay", str),
            Param("depth", _NUM, 0.8, "each second 1 - depth * u of the power passes, u in [0, 1)"),
            Param("extra_c", _NUM, 15.0, "the socket runs this much hotter"),
            Param("active", bool, True),
        ),
        lambda s, p: s.world.set_poor_contact(
            p["bay"], float(p["depth"]), float(p["extra_c"]), p["active"]
        ),
        "a poor contact at a socket: erratic power and extra heat",
    ),
    Action(
        "welded",
        (Param("bay", str), Param("active", bool, True)),
        lambda s, p: s.world.set_welded(p["bay"], p["active"]),
        "relay contacts stuck closed",
    ),
    Action(
        "short",
        (Param("bay", str),),
        lambda s, p: s.world.set_short(p["bay"]),
        "short circuit / port fuse blown (fault 4)",
    ),
    Action(
        "smoke",
        (Param("device", str), Param("active", bool, True)),
        lambda s, p: s.world.set_pile_inputs(p["device"], smoke=p["active"]),
        "smoke alarm input of a pile",
    ),
    Action(
        "estop",
        (Param("device", str), Param("active", bool, True)),
        lambda s, p: s.world.set_pile_inputs(p["device"], estop=p["active"]),
        "emergency stop input of a pile (opens every relay)",
    ),
    Action(
        "cabinet",
        (Param("device", str), Param("extra_c", _NUM, 50.0)),
        lambda s, p: s.world.set_cabinet_extra(p["device"], float(p["extra_c"])),
        "pile cabinet temperature above normal (>= 70 C sets the pile's over-temperature bit)",
    ),
    Action(
        "rcd",
        (Param("device", str), Param("active", bool, True)),
        _evse_rcd,
        "residual-current trip of a wallbox",
    ),
    Action(
        "meter_frozen",
        (Param("device", str), Param("active", bool, True)),
        lambda s, p: s.world.set_meter_frozen(p["device"], p["active"]),
        "the meter keeps serving its last values",
    ),
    Action(
        "meter_gone",
        (Param("device", str), Param("active", bool, True)),
        lambda s, p: setattr(_faults(s, p["device"]), "silent", p["active"]),
        "the meter stops answering (same as silent)",
    ),
    Action(
        "silent",
        (Param("device", str), Param("active", bool, True)),
        _set_fault("silent"),
        "the device does not answer at all",
    ),
    Action(
        "delay",
        (Param("device", str), Param("seconds", _NUM)),
        _delay,
        "the device answers this late, e.g. 0.42 (0 ends it)",
    ),
    Action(
        "exception",
        (Param("device", str), Param("code", _OPT_INT, 4)),
        _exception,
        "the device answers every request with this exception code (null ends it)",
    ),
    Action(
        "garbage",
        (
            Param("device", str),
            Param("addr", int),
            Param("value", _OPT_INT),
            Param("table", str, "input", "input, holding, coil or discrete"),
        ),
        _garbage,
        "serve a raw value at an address of a table (null ends it)",
    ),
    Action(
        "supply_v",
        (Param("volts", _NUM),),
        lambda s, p: s.world.set_supply_voltage(float(p["volts"])),
        "supply voltage (0: a supply outage)",
    ),
    Action(
        "sag",
        (
            Param("volts", _NUM, help="the level during the sag"),
            Param("seconds", _NUM, help="how long it holds that level"),
            Param("ramp_s", _NUM, 0.0, "ramp down before and back up after"),
        ),
        lambda s, p: s.world.sag(float(p["volts"]), float(p["seconds"]), float(p["ramp_s"])),
        "a supply sag: down to volts, held for seconds, then back",
    ),
    Action(
        "refuse_writes",
        (
            Param("device", str),
            Param("addr", int, 0, "first address refused"),
            Param("count", int, 0x10000, "how many (default: every address)"),
            Param("active", bool, True),
            Param("table", str, "holding", "holding (06/16) or coil (05/15)"),
        ),
        _refuse_writes,
        "writes touching addr..addr+count-1 of the table answer exception 04; reads still work",
    ),
    Action(
        "breaker_reset",
        (Param("circuit", str),),
        lambda s, p: s.world.reset_breaker(p["circuit"]),
        "close a tripped breaker again",
    ),
)
ACTIONS: dict[str, Action] = {a.name: a for a in ROWS}


def check(action: Mapping[str, Any], where: str = "action") -> tuple[Action, dict[str, Any]]:
    """Validate an action mapping: (the row, its parameters with defaults filled in)."""
    if not isinstance(action, Mapping):
        raise ActionError(f"{where}: a mapping with 'do' expected, got {type(action).__name__}")
    name = action.get("do")
    if name not in ACTIONS:
        raise ActionError(
            f"{where}.do: unknown action {name!r}; known: {', '.join(sorted(ACTIONS))}"
        )
    row = ACTIONS[name]
    known = {p.name for p in row.params}
    # str(): YAML 1.1 reads a bare `on:` key as the boolean True.
    extra = sorted(str(k) for k in set(action) - known - {"do", "at"})
    if extra:
        raise ActionError(
            f"{where}: unknown parameter(s) {', '.join(extra)} for {name!r}; "
            f"it takes: {', '.join(sorted(known)) or 'nothing'}"
        )
    params: dict[str, Any] = {}
    for p in row.params:
        if p.name in action:
            value = action[p.name]
            ok = isinstance(value, p.kind) and not (
                isinstance(value, bool) and bool not in _kinds(p.kind)
            )
            if not ok:
                raise ActionError(f"{where}.{p.name}: {_kind_name(p.kind)} expected, got {value!r}")
            params[p.name] = value
        elif p.default is REQUIRED:
            raise ActionError(f"{where}.{p.name}: required by {name!r}")
        else:
            params[p.name] = p.default
    return row, params


def apply(sim: Simulator, action: Mapping[str, Any], where: str = "action") -> None:
    """Check and carry out one action; every failure is an ActionError naming where."""
    row, params = check(action, where)
    try:
        row.run(sim, params)
    except ActionError as exc:
        raise ActionError(f"{where} ({row.name}): {exc}") from None
    except (WorldError, ValueError, KeyError) as exc:
        msg = exc.args[0] if exc.args else str(exc)
        raise ActionError(f"{where} ({row.name}): {msg}") from None


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    if kind == _NUM:
        return "number"
    names = {"NoneType": "null", "int": "integer", "float": "number", "str": "string"}
    return " or ".join(names.get(k.__name__, k.__name__) for k in _kinds(kind))
