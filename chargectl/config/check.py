"""The semantic checks of a shed config: pass 2 of `chargectl.config.load`.

They run on a `Shed`, loaded or built in code: references (parent, meter, bus, circuit, the
simulator's bays and wallboxes), the circuit tree (one root, no cycles), duplicate ids, Modbus
units, phases (of the supply, of a circuit, of a device, of a meter), roles (a circuit meter is a
meter kind), ranges of limits, ratings and timings. Warnings are what may be intended but is
usually a mistake: a sub-circuit limit above its parent's, a limit above the breaker rating.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from chargectl.config.schema import (
    ApiSettings,
    BaseLoad,
    Bus,
    Circuit,
    ControlSettings,
    Device,
    Endpoint,
    MqttSettings,
    PluggedCar,
    PluggedCharger,
    RtuBus,
    SessionSettings,
    Shed,
    SimSettings,
    TcpBus,
    bay_id,
)
from chargectl.drivers.registry import ROLES

Severity = Literal["error", "warning"]

# Phases each meter kind measures (the `phases:` of its map in drivers/maps/). A meter kind
# missing here is not checked. TODO: read it from the registry once it records the maps' phases.
METER_PHASES: dict[str, int] = {"sdm120": 1, "sdm630": 3, "dtsu666": 3}

MAX_PILE_PORTS = 32  # pile.md: 1 <= N <= 32
UNIT_RANGE = (1, 247)  # Modbus serial unit ids
EVSE_MAX_CURRENT_RANGE = (6.0, 80.0)
# pile.md, holding register 4 takes 0..3500 W, 0 disabling the cut-off. The fail-safe budget
# counts every fail-safe socket at this cut-off, so it may not be disabled, and below 100 W no
# e-bike charger would run.
PORT_POWER_LIMIT_RANGE = (100, 3500)
# The phase (line-to-neutral) voltage of a low-voltage supply: 100..250 V. 400 V is a
# line-to-line figure and would make every watt-to-amp budget 1.8x too small.
VOLTAGE_RANGE = (100.0, 250.0)
SUPPLY_LOW_PCT_RANGE = (10.0, 40.0)  # never less than GB/T 12325's -10 %
# IEC 60898-1: a breaker must carry 1.13 In for an hour; above that it trips in time.
BREAKER_HOLD_RATIO = 1.13
U16_MAX = 65535  # watchdog_timeout is a u16 of seconds


def _listed(numbers: Iterable[int]) -> str:
    return ", ".join(str(n) for n in numbers)


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong (or doubtful) in a config file."""

    file: str
    line: int | None  # 1-based; None when unknown (a missing file, a Shed built in code)
    path: str  # where in the config: `circuits[1].limit_a`; "" for the file as a whole
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        message = self.message if self.severity == "error" else f"warning: {self.message}"
        # One line per problem, whatever a message quoted (a YAML error can span lines).
        return ": ".join(p for p in (where, self.path, " ".join(message.split())) if p)


def check_shed(
    shed: Shed,
    *,
    where: Mapping[int, str] | None = None,
    lines: Mapping[str, int] | None = None,
    left_out: Mapping[str, set[str]] | None = None,
) -> list[Problem]:
    """Every semantic problem of `shed` (references, cycles, ids, phases, ranges, ...).

    For a Shed built in code call it with the shed alone: paths are then positions
    (`circuits[1]`) and lines are unknown. The loader passes where each object came from.
    """
    return _Checks(shed, where or {}, lines or {}, left_out or {}).run()


@dataclass(frozen=True, slots=True)
class _Range:
    low: float
    high: float | None = None  # None: no upper bound
    low_open: bool = False  # True: the value must be strictly above `low`

    def __contains__(self, v: float) -> bool:
        above = v > self.low if self.low_open else v >= self.low
        return above and (self.high is None or v <= self.high)

    def text(self) -> str:
        if self.high is None:
            return f"must be {'>' if self.low_open else '>='} {self.low:g}"
        if self.low_open:
            return f"must be > {self.low:g} and <= {self.high:g}"
        return f"must be in {self.low:g}..{self.high:g}"


_POSITIVE = _Range(0, None, low_open=True)
_NON_NEGATIVE = _Range(0)
_FRACTION = _Range(0, 1)

# Numeric fields and their ranges. A time of 0 is allowed only where "no wait" makes sense.
_RANGES: dict[type, dict[str, _Range]] = {
    ControlSettings: {
        "tick_s": _POSITIVE,
        "watchdog_s": _Range(0, U16_MAX, low_open=True),
        "min_on_s": _NON_NEGATIVE,
        "min_off_s": _NON_NEGATIVE,
        "socket_nominal_a": _POSITIVE,
        "ramp_margin_a": _NON_NEGATIVE,
        "wallbox_probe_a": _NON_NEGATIVE,
        "slow_poll_s": _POSITIVE,
        "thermal_derate_ratio": _Range(0, 1, low_open=True),
        "max_closes_per_tick": _Range(1, 10_000),
        "meter_poll_s": _Range(0, 60),
    },
    SessionSettings: {
        "full_power_w": _NON_NEGATIVE,
        "full_fraction": _FRACTION,
        "full_hold_s": _POSITIVE,
        "full_topup_s": _NON_NEGATIVE,
        "unplugged_w": _NON_NEGATIVE,
        "unplugged_window_s": _POSITIVE,
        "no_load_s": _POSITIVE,
        "max_duration_s": _POSITIVE,
        "checkpoint_s": _POSITIVE,
        "load_w": _NON_NEGATIVE,
        "settle_s": _NON_NEGATIVE,
        "counter_power_margin": _Range(1, 1000),
        "tap_lamp_s": _NON_NEGATIVE,
        "complete_lamp_s": _NON_NEGATIVE,
        "load_sustain_s": _NON_NEGATIVE,
        "no_load_first_w": _NON_NEGATIVE,
        "no_load_first_s": _NON_NEGATIVE,
        "counter_confirm_s": _POSITIVE,
        "max_per_card": _Range(0, 1000),
        "max_per_card_wallbox": _Range(0, 1000),
        "tap_debounce_s": _Range(0, 60),
    },
    SimSettings: {
        "step_s": _POSITIVE,
        "meter_refresh_s": _POSITIVE,
        "meter_window_s": _POSITIVE,
    },
    MqttSettings: {
        "keepalive_s": _Range(5, U16_MAX),
        "state_interval_s": _POSITIVE,
        "queue_size": _Range(1, None),
        "reconnect_max_s": _Range(1, None),
    },
    BaseLoad: {"noise_a": _NON_NEGATIVE},
    PluggedCharger: {"soc": _FRACTION},
    PluggedCar: {"max_a": _POSITIVE, "soc": _FRACTION, "capacity_kwh": _POSITIVE},
    Endpoint: {"port": _Range(0, 65535)},
    ApiSettings: {"port": _Range(0, 65535)},
    TcpBus: {"port": _Range(0, 65535), "timeout_s": _POSITIVE},
    RtuBus: {"baudrate": _POSITIVE, "timeout_s": _POSITIVE},
}

_SUPPLY_PHASES = {1: (1,), 3: (1, 2, 3)}


class _Checks:
    def __init__(
        self,
        shed: Shed,
        where: Mapping[int, str],
        lines: Mapping[str, int],
        left_out: Mapping[str, set[str]],
    ) -> None:
        self.shed = shed
        self.where = where
        self.lines = lines
        self.left_out = left_out
        self.problems: list[Problem] = []
        self.supply = _SUPPLY_PHASES.get(shed.shed.phases, (1, 2, 3))
        self.circuits = {c.id: c for c in shed.circuits}
        self.devices = {d.id: d for d in shed.devices}
        self.buses = {b.id: b for b in shed.buses}
        self.phases: dict[str, tuple[int, ...]] = {}  # circuit id -> the phases it carries

    # -- reporting -----------------------------------------------------------------------

    def path(self, obj: object, fallback: str) -> str:
        return self.where.get(id(obj), fallback)

    def line(self, path: str) -> int | None:
        # The line of the path, or of its nearest enclosing part present in the file.
        while path:
            if path in self.lines:
                return self.lines[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return None

    def report(self, path: str, message: str, severity: Severity = "error") -> None:
        file = str(self.shed.source)
        self.problems.append(Problem(file, self.line(path), path, message, severity))

    def warn(self, path: str, message: str) -> None:
        self.report(path, message, "warning")

    def known(self, section: str, ref: str) -> bool:
        """Whether `ref` names an entry of `section`, or one left out for its own problems."""
        tables: dict[str, Mapping[str, object]] = {
            "circuits": self.circuits,
            "buses": self.buses,
            "devices": self.devices,
        }
        return ref in tables[section] or ref in self.left_out.get(section, set())

    def unknown(self, path: str, what: str, ref: str, names: Iterable[str]) -> None:
        names = sorted(names)
        close = difflib.get_close_matches(ref, names, n=1)
        hint = (
            f"; did you mean '{close[0]}'?" if close else f"; known: {', '.join(names) or 'none'}"
        )
        self.report(path, f"unknown {what} '{ref}'{hint}")

    # -- the checks ----------------------------------------------------------------------

    def run(self) -> list[Problem]:
        self.check_info()
        self.check_ranges(self.shed.control, "control")
        self.check_ranges(self.shed.sessions, "sessions")
        self.check_timing()
        self.duplicates("circuits", self.shed.circuits, "circuit")
        self.duplicates("buses", self.shed.buses, "bus")
        self.duplicates("devices", self.shed.devices, "device")
        self.check_tree()
        for i, c in enumerate(self.shed.circuits):
            self.check_circuit(c, self.path(c, f"circuits[{i}]"))
        for i, b in enumerate(self.shed.buses):
            self.check_bus(b, self.path(b, f"buses[{i}]"))
        self.check_bus_endpoints()
        units: dict[tuple[str, int], tuple[Device, str]] = {}
        for i, d in enumerate(self.shed.devices):
            self.check_device(d, self.path(d, f"devices[{i}]"), units)
        self.check_meters()
        self.check_endpoints()
        self.check_mqtt()
        self.check_bays()
        self.check_text()
        self.check_hosts()
        if not self.shed.ledger.strip():
            self.report("ledger", "must not be empty")
        self.check_sim()
        return self.problems

    def check_info(self) -> None:
        info = self.shed.shed
        if not info.name.strip():
            self.report("shed.name", "must not be empty")
        if info.phases not in _SUPPLY_PHASES:
            self.report("shed.phases", f"must be 1 or 3, got {info.phases!r}")
        low_v, high_v = VOLTAGE_RANGE
        if not low_v <= info.voltage_v <= high_v:
            self.report(
                "shed.voltage_v",
                f"the phase (line-to-neutral) voltage must be in {low_v:g}..{high_v:g} V, "
                f"got {info.voltage_v:g}",
            )
        low_p, high_p = SUPPLY_LOW_PCT_RANGE
        if not low_p <= info.supply_low_pct <= high_p:
            self.report(
                "shed.supply_low_pct",
                f"must be in {low_p:g}..{high_p:g} (the supply may sag at least 10 %), "
                f"got {info.supply_low_pct:g}",
            )

    def check_ranges(self, obj: object, path: str) -> None:
        for name, allowed in _RANGES.get(type(obj), {}).items():
            value = getattr(obj, name)
            if value not in allowed:
                self.report(_join(path, name), f"{allowed.text()}, got {value:g}")

    def check_timing(self) -> None:
        c = self.shed.control
        if c.tick_s > 0 and c.watchdog_s > 0 and c.watchdog_s <= c.tick_s:
            self.report(
                "control.watchdog_s",
                f"must be longer than control.tick_s ({c.tick_s:g} s): the devices would fall "
                f"into failsafe between ticks, got {c.watchdog_s}",
            )
        if c.tick_s > 0 and 0 < c.slow_poll_s < c.tick_s:
            self.warn("control.slow_poll_s", f"shorter than control.tick_s ({c.tick_s:g} s)")
        settle = self.shed.sessions.settle_s
        if c.tick_s > 0 and c.slow_poll_s > 0 and settle < c.slow_poll_s + c.tick_s:
            self.warn(
                "sessions.settle_s",
                f"shorter than control.slow_poll_s + control.tick_s "
                f"({c.slow_poll_s + c.tick_s:g} s): an ended session may settle before its "
                f"bay's energy counter is read again, got {settle:g}",
            )
        if self.shed.sim.step_s > 0.1:
            self.warn(
                "sim.step_s", f"above 0.1 s the physics are coarse, got {self.shed.sim.step_s:g}"
            )

    def duplicates(self, section: str, items: Iterable[Any], what: str) -> None:
        first: dict[str, str] = {}
        for i, item in enumerate(items):
            path = self.path(item, f"{section}[{i}]")
            if not item.id.strip():
                self.report(_join(path, "id"), "must not be empty")
            elif item.id in first:
                at = self.line(first[item.id])
                where = f"line {at}" if at is not None else first[item.id]
                self.report(
                    _join(path, "id"), f"duplicate {what} id '{item.id}' (first at {where})"
                )
            else:
                first[item.id] = path

    def check_tree(self) -> None:
        circuits = self.shed.circuits
        if not circuits and not self.left_out.get("circuits"):
            self.report("circuits", "at least one circuit is needed: the supply (the root)")
            return
        roots = [c for c in circuits if c.parent is None]
        if not roots and circuits and not self.left_out.get("circuits"):
            self.report(
                "circuits", "no root circuit: exactly one circuit (the supply) has no parent"
            )
        for extra in roots[1:]:
            path = self.path(extra, f"circuits[{circuits.index(extra)}]")
            self.report(
                path,
                f"a second root circuit '{extra.id}' (no parent) besides '{roots[0].id}': "
                "give it a parent",
            )
        reported: set[str] = set()
        for i, c in enumerate(circuits):
            if c.parent is None:
                continue
            path = _join(self.path(c, f"circuits[{i}]"), "parent")
            if not self.known("circuits", c.parent):
                self.unknown(path, "circuit", c.parent, self.circuits)
                continue
            # Walk up; meeting `c` again is a cycle (reported once, at its first member).
            chain, seen, cur = [c.id], {c.id}, self.circuits.get(c.parent)
            while cur is not None and cur.id not in seen:
                chain.append(cur.id)
                seen.add(cur.id)
                cur = self.circuits.get(cur.parent) if cur.parent is not None else None
            if cur is not None and cur.id == c.id and not reported & seen:
                reported |= seen
                self.report(path, f"cycle: {' -> '.join([*chain, c.id])}")
        self.resolve_phases()

    def resolve_phases(self) -> None:
        # A circuit without its own phases carries its parent's; the root, the supply's.
        def resolve(c: Circuit, depth: int) -> tuple[int, ...]:
            if c.id in self.phases:
                return self.phases[c.id]
            parent = self.circuits.get(c.parent) if c.parent is not None else None
            if c.phases:
                result = c.phases
            elif parent is None or depth > len(self.circuits):  # root, or inside a cycle
                result = self.supply
            else:
                result = resolve(parent, depth + 1)
            self.phases[c.id] = result
            return result

        for c in self.shed.circuits:
            resolve(c, 0)

    def check_phase_list(self, phases: tuple[int, ...], path: str) -> bool:
        """Phases are 1..3, listed once each, and on the supply."""
        ok = True
        if not phases:
            self.report(path, "at least one phase is needed")
            return False
        absent = [p for p in phases if p not in (1, 2, 3)]
        if absent:
            self.report(path, f"phase {_listed(absent)} does not exist: phases are 1, 2, 3")
            ok = False
        off_supply = [p for p in phases if p in (1, 2, 3) and p not in self.supply]
        if off_supply:
            self.report(
                path, f"phase {_listed(off_supply)}: the supply is single-phase (shed.phases: 1)"
            )
            ok = False
        dups = sorted({p for p in phases if phases.count(p) > 1})
        if dups:
            self.report(path, f"phase {_listed(dups)} listed twice")
            ok = False
        return ok

    def check_circuit(self, c: Circuit, path: str) -> None:
        if not c.limit_a > 0:
            self.report(_join(path, "limit_a"), f"must be > 0, got {c.limit_a:g}")
        if not c.breaker.rating_a > 0:
            self.report(_join(path, "breaker.rating_a"), f"must be > 0, got {c.breaker.rating_a:g}")
        elif c.limit_a > BREAKER_HOLD_RATIO * c.breaker.rating_a:
            self.report(
                _join(path, "limit_a"),
                f"{c.limit_a:g} A is above {BREAKER_HOLD_RATIO:g} x the breaker rating "
                f"({c.breaker.rating_a:g} A): the breaker would trip on the planned load",
            )
        elif c.limit_a > c.breaker.rating_a:
            self.warn(
                _join(path, "limit_a"),
                f"{c.limit_a:g} A is above the breaker rating ({c.breaker.rating_a:g} A): "
                "the plan would run the breaker into its overload zone",
            )
        if c.unmanaged_worst_a is not None:
            if c.unmanaged_worst_a < 0:
                self.report(
                    _join(path, "unmanaged_worst_a"), f"must be >= 0, got {c.unmanaged_worst_a:g}"
                )
            elif c.limit_a > 0 and c.unmanaged_worst_a >= c.limit_a:
                self.warn(
                    _join(path, "unmanaged_worst_a"),
                    f"{c.unmanaged_worst_a:g} A leaves no room under limit_a ({c.limit_a:g} A)",
                )
        parent = self.circuits.get(c.parent) if c.parent is not None else None
        if parent is not None and parent.id != c.id and c.limit_a > parent.limit_a > 0:
            self.warn(
                _join(path, "limit_a"),
                f"{c.limit_a:g} A is above the limit of its parent '{parent.id}' "
                f"({parent.limit_a:g} A): the parent's limit binds first",
            )
        if c.phases:
            ppath = _join(path, "phases")
            if self.check_phase_list(c.phases, ppath) and parent is not None:
                lacking = [p for p in c.phases if p not in self.phases.get(parent.id, self.supply)]
                if lacking:
                    self.report(
                        ppath,
                        f"phase {_listed(lacking)}: the parent circuit "
                        f"'{parent.id}' does not carry it",
                    )
        if c.meter is not None and not self.known("devices", c.meter):
            self.unknown(_join(path, "meter"), "device", c.meter, self.devices)

    def check_bus(self, b: Bus, path: str) -> None:
        # The file nests a bus's connection under `tcp:` / `rtu:`; `timeout_s` sits beside it.
        kind = "tcp" if isinstance(b, TcpBus) else "rtu"
        for name, allowed in _RANGES[type(b)].items():
            value = getattr(b, name)
            if value not in allowed:
                where = name if name == "timeout_s" else f"{kind}.{name}"
                self.report(_join(path, where), f"{allowed.text()}, got {value:g}")
        if isinstance(b, TcpBus):
            if not b.host.strip():
                self.report(_join(path, "tcp.host"), "must not be empty")
        else:
            if not b.port.strip():
                self.report(_join(path, "rtu.port"), "must not be empty (a serial device path)")
            if b.stopbits not in (1, 2):
                self.report(_join(path, "rtu.stopbits"), f"must be 1 or 2, got {b.stopbits}")

    def check_bus_endpoints(self) -> None:
        first: dict[object, str] = {}
        for i, b in enumerate(self.shed.buses):
            path = self.path(b, f"buses[{i}]")
            key: object = (b.host, b.port) if isinstance(b, TcpBus) else b.port
            if isinstance(b, TcpBus) and b.port == 0:
                continue  # port 0: a free port picked at start (tests)
            if key in first:
                self.report(path, f"same line as bus '{first[key]}': one bus entry per line")
            else:
                first[key] = b.id

    def check_device(
        self, d: Device, path: str, units: dict[tuple[str, int], tuple[Device, str]]
    ) -> None:
        role = ROLES.get(d.kind)
        if role is None:
            self.report(
                _join(path, "kind"),
                f"unknown device kind '{d.kind}'; known: {', '.join(sorted(ROLES))}",
            )
        if not self.known("buses", d.bus):
            self.unknown(_join(path, "bus"), "bus", d.bus, self.buses)
        if not UNIT_RANGE[0] <= d.unit <= UNIT_RANGE[1]:
            self.report(_join(path, "unit"), f"must be in 1..247, got {d.unit}")
        elif (d.bus, d.unit) in units:
            other, other_path = units[(d.bus, d.unit)]
            at = self.line(other_path)
            where = f" (line {at})" if at is not None else ""
            self.report(
                _join(path, "unit"),
                f"unit {d.unit} on bus '{d.bus}' is taken by device '{other.id}'{where}",
            )
        else:
            units[(d.bus, d.unit)] = (d, path)
        ppath = _join(path, "phases")
        phases_ok = self.check_phase_list(d.phases, ppath)
        if d.circuit is not None:
            if not self.known("circuits", d.circuit):
                self.unknown(_join(path, "circuit"), "circuit", d.circuit, self.circuits)
            elif phases_ok and d.circuit in self.phases:
                lacking = [p for p in d.phases if p not in self.phases[d.circuit]]
                if lacking:
                    self.report(
                        ppath,
                        f"phase {_listed(lacking)}: circuit '{d.circuit}' does not "
                        f"carry it (it carries {_listed(self.phases[d.circuit])})",
                    )
        elif role in ("pile", "evse"):
            self.report(_join(path, "circuit"), f"missing: a {role} hangs on a circuit")
        self.check_role_fields(d, path, role, phases_ok)

    def check_role_fields(self, d: Device, path: str, role: str | None, phases_ok: bool) -> None:
        defaults = Device(id="", kind="", bus="", unit=0, circuit=None, phases=())
        if role == "pile":
            if not 1 <= d.ports <= MAX_PILE_PORTS:
                self.report(
                    _join(path, "ports"), f"a pile has 1..{MAX_PILE_PORTS} ports, got {d.ports}"
                )
            low, high = PORT_POWER_LIMIT_RANGE
            if not low <= d.port_power_limit_w <= high:
                self.report(
                    _join(path, "port_power_limit_w"),
                    f"must be in {low}..{high} W (the fail-safe budget counts every fail-safe "
                    f"socket at the pile's own cut-off, so it may not be disabled), "
                    f"got {d.port_power_limit_w}",
                )
            if phases_ok and len(d.phases) != 1:
                self.report(
                    _join(path, "phases"),
                    "a pile is wired to one phase (its sockets are single-phase), "
                    f"got {len(d.phases)}",
                )
        if role == "evse":
            low_a, high_a = EVSE_MAX_CURRENT_RANGE
            if not low_a <= d.max_current_a <= high_a:
                self.report(
                    _join(path, "max_current_a"),
                    f"must be in {low_a:g}..{high_a:g} A, got {d.max_current_a:g}",
                )
            if phases_ok and len(d.phases) not in (1, 3):
                self.report(
                    _join(path, "phases"), f"a wallbox has 1 or 3 phases, got {len(d.phases)}"
                )
        if role == "meter":
            expected = METER_PHASES.get(d.kind)
            if phases_ok and expected is not None and len(d.phases) != expected:
                self.report(
                    _join(path, "phases"),
                    f"kind '{d.kind}' measures {expected} phase{'s' if expected > 1 else ''}, "
                    f"got {len(d.phases)}",
                )
        # Settings of another role are a mistake (a wallbox with `ports`), not harmless noise.
        for name, owner in (
            ("ports", "pile"),
            ("port_power_limit_w", "pile"),
            ("max_current_a", "evse"),
        ):
            if role is not None and role != owner and getattr(d, name) != getattr(defaults, name):
                self.report(
                    _join(path, name), f"only a {owner} has '{name}' (this device is {_a(role)})"
                )

    def check_meters(self) -> None:
        measured: dict[str, str] = {}  # meter id -> the circuit it measures
        for i, c in enumerate(self.shed.circuits):
            if c.meter is None or c.meter not in self.devices:
                continue
            path = _join(self.path(c, f"circuits[{i}]"), "meter")
            meter = self.devices[c.meter]
            role = ROLES.get(meter.kind)
            if role is None:
                continue  # the unknown kind is reported at the device
            if role != "meter":
                self.report(path, f"'{c.meter}' is {_a(role)}, not a meter (kind '{meter.kind}')")
                continue
            if c.meter in measured:
                self.report(
                    path, f"meter '{c.meter}' already measures circuit '{measured[c.meter]}'"
                )
                continue
            measured[c.meter] = c.id
            if meter.circuit is not None and meter.circuit != c.id:
                self.report(
                    path,
                    f"meter '{c.meter}' says it is on circuit '{meter.circuit}', not '{c.id}'",
                )
            missing = [p for p in self.phases.get(c.id, ()) if p not in meter.phases]
            if missing:
                self.report(
                    path,
                    f"meter '{c.meter}' does not measure phase {_listed(missing)} "
                    f"of circuit '{c.id}'",
                )
        if self.left_out.get("circuits"):
            return  # a circuit left out for its own problems may be the one naming a meter
        for i, d in enumerate(self.shed.devices):
            if ROLES.get(d.kind) == "meter" and d.id not in measured:
                self.warn(
                    self.path(d, f"devices[{i}]"),
                    f"meter '{d.id}' is named by no circuit's 'meter': the controller ignores it",
                )

    def check_endpoints(self) -> None:
        first: dict[tuple[str, int], str] = {}
        for name, ep in (
            ("metrics", self.shed.metrics),
            ("api", self.shed.api),
            ("sim.control_api", self.shed.sim.control_api),
        ):
            self.check_ranges(ep, name)
            if not ep.host.strip():
                self.report(_join(name, "host"), "must not be empty")
            if ep.port == 0:
                continue
            key = (ep.host, ep.port)
            if key in first:
                self.report(_join(name, "port"), f"{ep.host}:{ep.port} is used by {first[key]} too")
            else:
                first[key] = name
        api = self.shed.api
        if api.token_file is not None and not api.token_file.strip():
            self.report("api.token_file", "must not be empty (leave it out instead)")
        elif api.token_file is None and api.host.strip() and not api.loopback:
            self.report(
                "api.host",
                f"{api.host} is beyond loopback: the API clears alarms and stops sessions, so "
                "it is bound there only with api.token_file (a bearer token)",
            )
        for i, b in enumerate(self.shed.buses):
            if isinstance(b, TcpBus) and (b.host, b.port) in first:
                path = _join(self.path(b, f"buses[{i}]"), "tcp.port")
                self.report(path, f"{b.host}:{b.port} is used by {first[(b.host, b.port)]} too")

    def check_mqtt(self) -> None:
        m = self.shed.mqtt
        self.check_ranges(m, "mqtt")
        if m.port is not None and not 1 <= m.port <= U16_MAX:
            self.report("mqtt.port", f"must be in 1..{U16_MAX}, got {m.port}")
        if m.host is None:
            return
        if not m.host.strip():
            self.report("mqtt.host", "must not be empty (leave it out to turn MQTT off)")
        if m.ca_file is not None and not m.tls:
            self.report("mqtt.ca_file", "needs tls: true")
        if m.password_file is not None and m.username is None:
            self.report("mqtt.password_file", "needs a username")
        for key in ("ca_file", "username", "password_file"):
            if getattr(m, key) == "":
                self.report(_join("mqtt", key), "must not be empty (leave it out instead)")
        # The name is a topic level (chargectl/<shed>/...) and the broker's user for the ACL.
        bad = sorted(set(self.shed.shed.name) & set("/+#"))
        if bad:
            self.report(
                "shed.name",
                f"is an MQTT topic level and must not contain {' '.join(bad)}, "
                f"got {self.shed.shed.name!r}",
            )

    def check_bays(self) -> None:
        """Bay ids are unique: a pile `wb` and a wallbox `wb/1` would both make bay `wb/1`."""
        first: dict[str, tuple[str, str]] = {}  # bay -> (what makes it, its device's path)
        ids: set[str] = set()
        for i, d in enumerate(self.shed.devices):
            role = ROLES.get(d.kind)
            if d.id in ids:
                continue  # a duplicate device id, reported as such
            ids.add(d.id)
            if role == "pile" and 1 <= d.ports <= MAX_PILE_PORTS:
                bays = [
                    (bay_id(d.id, port), f"port {port} of pile '{d.id}'")
                    for port in range(1, d.ports + 1)
                ]
            elif role == "evse":
                bays = [(bay_id(d.id, None), f"wallbox '{d.id}'")]
            else:
                continue
            path = self.path(d, f"devices[{i}]")
            for bay, what in bays:
                if bay not in first:
                    first[bay] = (what, path)
                    continue
                other, other_path = first[bay]
                at = self.line(other_path)
                where = f" (line {at})" if at is not None else ""
                self.report(
                    _join(path, "id"),
                    f"bay '{bay}' of {what} is also the bay of {other}{where}: bay ids (a "
                    "pile's '<pile>/<port>', a wallbox's id) must be unique",
                )
                break

    def check_text(self) -> None:
        """Names and ids end up in logs, CSV exports, metric labels and MQTT topics; paths are
        opened by the daemon. Control and bidi characters in them are never meant."""
        texts: list[tuple[str, str | None]] = [("shed.name", self.shed.shed.name)]
        for section in ("circuits", "buses", "devices"):
            for i, item in enumerate(getattr(self.shed, section)):
                texts.append((_join(self.path(item, f"{section}[{i}]"), "id"), item.id))
        for path, text in texts:
            if text is not None and _odd_char(text):
                self.report(path, f"must not contain control or bidi characters, got {text!r}")
        paths: list[tuple[str, str | None]] = [
            ("ledger", self.shed.ledger),
            ("mqtt.ca_file", self.shed.mqtt.ca_file),
            ("mqtt.password_file", self.shed.mqtt.password_file),
            ("api.token_file", getattr(self.shed.api, "token_file", None)),
        ]
        for i, b in enumerate(self.shed.buses):
            if isinstance(b, RtuBus):
                paths.append((_join(self.path(b, f"buses[{i}]"), "rtu.port"), b.port))
        for path, text in paths:
            if text is not None and _odd_char(text):
                self.report(path, f"a file path without control characters, got {text!r}")
        if self.shed.ledger.strip() and self.shed.ledger.endswith("/"):
            self.report("ledger", f"names a file, not a folder, got {self.shed.ledger!r}")

    def check_hosts(self) -> None:
        """Every host is one the daemon can use at start without a surprise: a TCP line's and
        the broker's a host name or an IP address; the addresses the daemon listens on an IP
        address of this machine or `localhost` (a name would need DNS before it can start)."""
        hosts: list[tuple[str, str | None]] = [("mqtt.host", self.shed.mqtt.host)]
        for i, b in enumerate(self.shed.buses):
            if isinstance(b, TcpBus):
                hosts.append((_join(self.path(b, f"buses[{i}]"), "tcp.host"), b.host))
        for path, host in hosts:
            if host is not None and host.strip() and not _is_host(host):
                self.report(path, f"must be a host name or an IP address, got {host!r}")
        # The metrics server binds the address's own family; the API's HTTP server IPv4 only.
        for path, host, families in (
            ("metrics.host", self.shed.metrics.host, (4, 6)),
            ("api.host", self.shed.api.host, (4,)),
        ):
            if host.strip() and not _is_bind_host(host, families):
                what = "an IPv4 address" if families == (4,) else "an IP address"
                self.report(path, f"must be {what} of this machine or localhost, got {host!r}")

    def check_sim(self) -> None:
        sim = self.shed.sim
        self.check_ranges(sim, "sim")
        if not 0.0 <= sim.voltage_noise_v <= 20.0:
            self.report("sim.voltage_noise_v", f"must be in 0..20 V, got {sim.voltage_noise_v:g}")
        if not sim.voltage_wander_s > 0:
            self.report("sim.voltage_wander_s", f"must be > 0, got {sim.voltage_wander_s:g}")
        if not sim.socket_rating_a > 0:
            self.report("sim.socket_rating_a", f"must be > 0, got {sim.socket_rating_a:g}")
        for i, load in enumerate(sim.base_load):
            path = self.path(load, f"sim.base_load[{i}]")
            self.check_ranges(load, path)
            if not self.known("circuits", load.circuit):
                self.unknown(_join(path, "circuit"), "circuit", load.circuit, self.circuits)
            elif load.circuit in self.phases:
                n = len(self.phases[load.circuit])
                if len(load.amps) != n:
                    self.report(
                        _join(path, "amps"),
                        f"one value per phase of circuit '{load.circuit}' ({n}), "
                        f"got {len(load.amps)}",
                    )
            if any(a < 0 for a in load.amps):
                self.report(_join(path, "amps"), "must be >= 0")
        self.check_chargers(sim.chargers)
        cars: set[str] = set()
        for i, car in enumerate(sim.cars):
            path = self.path(car, f"sim.cars[{i}]")
            self.check_ranges(car, path)
            dpath = _join(path, "device")
            if car.phases not in (1, 3):
                self.report(_join(path, "phases"), f"must be 1 or 3, got {car.phases}")
            if not 0.0 < car.drop_s <= 5.0:
                self.report(
                    _join(path, "drop_s"),
                    f"must be > 0 and <= 5 (IEC 61851-1: 5 s), got {car.drop_s:g}",
                )
            if not self.known("devices", car.device):
                self.unknown(dpath, "device", car.device, self.devices)
            elif car.device in self.devices and ROLES.get(self.devices[car.device].kind) not in (
                "evse",
                None,
            ):
                self.report(dpath, f"'{car.device}' is not a wallbox (evse)")
            if car.device in cars:
                self.report(dpath, f"a second car on wallbox '{car.device}'")
            cars.add(car.device)

    def check_chargers(self, chargers: Iterable[PluggedCharger]) -> None:
        bays: set[str] = set()
        for i, ch in enumerate(chargers):
            path = self.path(ch, f"sim.chargers[{i}]")
            self.check_ranges(ch, path)
            bpath = _join(path, "bay")
            if not ch.profile.strip():
                self.report(_join(path, "profile"), "must not be empty")
            if ch.power_factor is not None and not 0.5 <= ch.power_factor <= 0.99:
                self.report(
                    _join(path, "power_factor"), f"must be in 0.5..0.99, got {ch.power_factor:g}"
                )
            pile_id, sep, port_text = ch.bay.rpartition("/")
            if not sep or not port_text.isdigit():
                self.report(bpath, f"a bay is '<pile>/<port>', got '{ch.bay}'")
                continue
            if ch.bay in bays:
                self.report(bpath, f"a second charger in bay '{ch.bay}'")
            bays.add(ch.bay)
            if not self.known("devices", pile_id):
                self.unknown(bpath, "device", pile_id, self.devices)
                continue
            pile = self.devices.get(pile_id)
            if pile is None:
                continue  # left out for its own problems
            role = ROLES.get(pile.kind)
            if role is None:
                continue  # its unknown kind is reported at the device
            if role != "pile":
                self.report(bpath, f"'{pile_id}' is not a pile")
            elif not 1 <= int(port_text) <= pile.ports:
                self.report(bpath, f"pile '{pile_id}' has ports 1..{pile.ports}, got {port_text}")


# -- text and hosts ----------------------------------------------------------------------------

_HOST_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def _odd_char(text: str) -> bool:
    """A control character (NUL, newline, ESC, ...) or a format character (bidi overrides)."""
    return any(unicodedata.category(c) in ("Cc", "Cf") for c in text)


def _is_ip(host: str, families: tuple[int, ...] = (4, 6)) -> bool:
    try:
        return ipaddress.ip_address(host).version in families
    except ValueError:
        return False


def _is_host(host: str) -> bool:
    """An IP address, or a DNS name in its ASCII form (RFC 1123 labels)."""
    if _is_ip(host):
        return True
    name = host[:-1] if host.endswith(".") else host
    return 0 < len(name) <= 253 and all(_HOST_LABEL.fullmatch(p) for p in name.split("."))


def _is_bind_host(host: str, families: tuple[int, ...]) -> bool:
    return host == "localhost" or _is_ip(host, families)
