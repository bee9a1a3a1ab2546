"""The socket pile role: one generic driver for every pile template.

The template says where each field lives; this module says what a pile reading means and
which values make physical sense. The hot read is every non-slow read field, planned into
as few requests as the template allows: for the contract pile (hardware/pile.md) that is ONE
read of input 0..48+N-1 (status, tap, watchdog, pile current, port currents, port states).
The slow fields (energy, power, socket temperature) are read on the slow cadence. Writes go
in as few frames as the template allows: contiguous runs of registers become one function-16
write, of coils one function-15 write; the set-up is one frame when its registers are
contiguous.

Critical fields (a bad one raises `BadValue`: no reading): the identity, the status word, the
port currents, the relay feedback and the port faults. Every other field is non-critical (a
bad one is None and listed in `bad`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from chargectl.config.schema import Device
from chargectl.drivers.bus import ModbusBus
from chargectl.drivers.counters import CounterMemory
from chargectl.drivers.decode import (
    TEMP_MAX_C,
    TEMP_MIN_C,
    Fields,
    bits_mask,
    check_bits,
    check_identity,
    code_of,
    in_range,
    reported,
    tap,
)
from chargectl.drivers.errors import BadValue, ConfigError
from chargectl.drivers.mapped import read_blocks
from chargectl.drivers.readings import FAULT_NAMES, PileHot, PileSlow, Tap
from chargectl.drivers.template import (
    Block,
    Field,
    Image,
    Template,
    encode_value,
    image_of,
    plan_blocks,
    raw_value,
    shipped,
    words_of,
)
from chargectl.drivers.template_fields import PILE
from chargectl.drivers.writes import write_runs

PORT_MAX_A = 63.0  # a socket above this is garbage, not a load
PORT_MAX_W = 20_000  # 63 A at a generous 300 V
VOLTAGE_MAX_V = 500.0
LOAD_PRESENT_A = 0.02  # pile.md: load present = current >= 20 mA
INDICATORS = range(8)  # 0 off .. 7 charge complete
FAULT_CODE = {name: code for code, name in FAULT_NAMES.items()}
# When a brand's fault word has several bits set, the one reported: the worst first.
FAULT_ORDER = ("welded", "short", "over_temp", "over_power")
NO_FAULT = FAULT_CODE["none"]


@cache
def hot_blocks(template: Template, ports: int) -> tuple[Block, ...]:
    fields = [f for n, f in template.fields.items() if not PILE[n].write and not PILE[n].slow]
    return plan_blocks(fields, template.max_gap, ports=ports, readable=template.readable)


@cache
def slow_blocks(template: Template, ports: int) -> tuple[Block, ...]:
    fields = [f for n, f in template.fields.items() if PILE[n].slow]
    return plan_blocks(fields, template.max_gap, ports=ports, readable=template.readable)


def _port_fault(device: str, f: Field, word: int, port: int) -> int:
    """A port's FAULT_* code from its fault field (codes, or one bit per fault)."""
    if f.codes:
        code = code_of(f, word)
        meaning = f.codes.get(code)
        if meaning is None:
            raise BadValue(device, f.address_of(port), word, f"port {port}: unknown fault {code}")
        return FAULT_CODE[meaning]
    if word & ~bits_mask(f.bits.values()):
        check_bits(device, f.address_of(port), word, f.bits.values(), f"port {port}")
    for meaning in FAULT_ORDER:
        bit = f.bits.get(meaning)
        if bit is not None and word >> bit & 1:
            return FAULT_CODE[meaning]
    return FAULT_CODE["none"]


@dataclass(frozen=True, slots=True)
class HotPlan:
    """What `decode_hot` works out from the template alone, once per (template, ports)."""

    current: tuple[tuple[str, int] | None, ...]  # each port's current register (u16), or None
    state: tuple[tuple[str, int] | None, ...]  # the same for the port-state word
    state_bits: list[int]  # the bits a port-state word may have set
    state_mask: int
    state_faults: dict[int, int]  # a port-state code -> its FAULT_* code
    relay_bit: int | None  # the port-state bits of relay_closed and load_present
    load_bit: int | None
    fault_mask: int  # a port_fault field with one bit per fault: its defined bits
    fault_order: tuple[tuple[int, int], ...] | None  # (bit, FAULT_* code), worst first


@cache
def _hot_plan(template: Template, ports: int) -> HotPlan:
    def keys(f: Field | None) -> tuple[tuple[str, int] | None, ...]:
        if f is None or f.type != "u16":
            return (None,) * ports
        return tuple((f.table, f.address_of(p)) for p in range(1, ports + 1))

    state = template.fields.get("port_state")
    defined: list[int] = []
    if state is not None:
        defined = [*state.bits.values()]
        if state.code_bits is not None:
            defined += range(state.code_bits[0], state.code_bits[1] + 1)
        if state.codes and state.code_bits is None:
            defined = list(range(16))
    fault = template.fields.get("port_fault")
    order = None
    if fault is not None and not fault.codes:
        order = tuple(
            (fault.bits[m], FAULT_CODE[m]) for m in FAULT_ORDER if fault.bits.get(m) is not None
        )
    codes = state.codes if state is not None else {}
    bits = state.bits if state is not None else {}
    return HotPlan(
        current=keys(template.fields["port_current"]),
        state=keys(state),
        state_bits=defined,
        state_mask=bits_mask(defined),
        state_faults={c: FAULT_CODE[m] for c, m in codes.items() if m in FAULT_CODE},
        relay_bit=bits.get("relay_closed"),
        load_bit=bits.get("load_present"),
        fault_mask=bits_mask(fault.bits.values()) if fault is not None else 0,
        fault_order=order,
    )


def _port_current(device: str, cur: Field, image: Image, port: int, raw: float) -> float:
    """A port's current, range-checked (`in_range`; the message built only when it fails)."""
    value = raw * cur.scale
    if math.isfinite(value) and 0 <= value <= PORT_MAX_A:
        return value
    return in_range(device, cur.address_of(port), value, (0, PORT_MAX_A), f"port {port} current")


def decode_hot(template: Template, device: str, ports: int, image: Image) -> PileHot:
    """The hot fields of a pile configured with `ports` sockets, from a register image."""
    t = template.fields
    check_identity(device, template, image, ports=ports)
    flags = dict.fromkeys(("failsafe", "smoke", "over_temp", "supply_fault", "estop"), False)
    status = t.get("status")
    if status is not None:
        word = int(raw_value(status, image))
        check_bits(device, status.address, word, status.bits.values(), "pile_status")
        flags.update({m: bool(word >> b & 1) for m, b in status.bits.items()})
    plan = _hot_plan(template, ports)
    cur, cur_keys = t["port_current"], plan.current
    currents = tuple(
        _port_current(device, cur, image, p, image[key] if key else raw_value(cur, image, p))
        for p, key in enumerate(cur_keys, start=1)
    )
    relay = [False] * ports
    load = [a >= LOAD_PRESENT_A for a in currents]
    faults = [0] * ports
    state, closed_f, load_f, fault_f = (
        t.get(n) for n in ("port_state", "relay_closed", "load_present", "port_fault")
    )
    defined, state_mask = plan.state_bits, plan.state_mask
    for i, p in enumerate(range(1, ports + 1)):
        if state is not None:
            key = plan.state[i]
            word = int(image[key] if key else raw_value(state, image, p))
            if state.codes:
                fault = plan.state_faults.get(code_of(state, word))
                # An unknown code: `_port_fault` raises, as it always did.
                faults[i] = _port_fault(device, state, word, p) if fault is None else fault
            if word & ~state_mask:
                check_bits(device, state.address_of(p), word, defined, f"port {p}")
            if plan.relay_bit is not None:
                relay[i] = bool(word >> plan.relay_bit & 1)
            if plan.load_bit is not None:
                load[i] = bool(word >> plan.load_bit & 1)
        if closed_f is not None:
            relay[i] = raw_value(closed_f, image, p) != 0
        if load_f is not None:
            load[i] = raw_value(load_f, image, p) != 0
        if fault_f is not None:
            word = int(raw_value(fault_f, image, p))
            if plan.fault_order is None:
                faults[i] = _port_fault(device, fault_f, word, p)
            elif word & ~plan.fault_mask:
                faults[i] = _port_fault(device, fault_f, word, p)  # raises: undefined bits
            else:
                faults[i] = next((c for b, c in plan.fault_order if word >> b & 1), NO_FAULT)
    soft = Fields()

    def value(name: str, bounds: tuple[float, float], what: tuple[str, str]) -> float | None:
        f = t.get(name)
        return None if f is None else _soft_value(soft, device, f, image, bounds, what=what)

    temp = value(
        "cabinet_temperature",
        (TEMP_MIN_C, TEMP_MAX_C),
        ("cabinet temperature (C)", "temperature_c"),
    )
    volts = value("supply_voltage", (0, VOLTAGE_MAX_V), ("supply voltage (V)", "voltage_v"))
    tap_f = t.get("tap")
    latest = None
    if tap_f is not None:
        words = words_of(tap_f, image)
        latest = soft.soft("tap", lambda: tap(device, tap_f.address, words, ports))
    pile_a = value("pile_current", (0, PORT_MAX_A * ports), ("pile current (A)", "pile_current_a"))
    wd = t.get("watchdog_remaining")
    return PileHot(
        **flags,
        temperature_c=temp,
        voltage_v=volts,
        tap=latest,
        watchdog_remaining_s=0 if wd is None else int(raw_value(wd, image) * wd.scale),
        pile_current_a=pile_a,
        current_a=currents,
        relay_closed=tuple(relay),
        load_present=tuple(load),
        fault=tuple(faults),
        bad=soft.result(),
    )


def _soft_value(
    soft: Fields,
    device: str,
    f: Field,
    image: Image,
    bounds: tuple[float, float],
    *,
    what: tuple[str, str],
    port: int | None = None,
) -> float | None:
    """A non-critical value of a field (for a port), scaled and range-checked."""
    name = what[1] if port is None else f"{what[1]}[{port}]"
    return soft.soft(
        name,
        lambda: in_range(
            device, f.address_of(port), raw_value(f, image, port) * f.scale, bounds, what[0]
        ),
    )


def decode_slow(
    template: Template,
    device: str,
    ports: int,
    image: Image,
    *,
    counters: CounterMemory | None = None,
) -> PileSlow:
    """The slow fields (energy, power, socket temperature). Every one is non-critical: a bad
    one is None and listed in `bad`. With `counters`, an energy counter that went backwards
    is a bad field too (and the memory follows it). A field the template lacks is None."""
    t = template.fields
    soft = Fields()
    every = range(1, ports + 1)
    energy_f, power_f, temp_f = t.get("port_energy"), t.get("port_power"), t.get("port_temperature")

    def counter(p: int) -> int | None:
        assert energy_f is not None
        raw = int(raw_value(energy_f, image, p))
        wh = int(raw * energy_f.scale)
        if counters is None:
            return wh

        def forward() -> int:
            counters.check({energy_f.address_of(p): raw})
            return wh

        return soft.soft(f"energy_wh[{p}]", forward)

    def watts(p: int) -> int | None:
        assert power_f is not None
        what = (f"port {p} power (W)", "power_w")
        w = _soft_value(soft, device, power_f, image, (0, PORT_MAX_W), what=what, port=p)
        return None if w is None else int(w)

    def socket_c(p: int) -> float | None:
        assert temp_f is not None
        what = (f"port {p} temperature (C)", "temperature_c")
        return _soft_value(soft, device, temp_f, image, (TEMP_MIN_C, TEMP_MAX_C), what=what, port=p)

    return PileSlow(
        energy_wh=tuple(counter(p) if energy_f else None for p in every),
        power_w=tuple(watts(p) if power_f else None for p in every),
        temperature_c=tuple(socket_c(p) if temp_f else None for p in every),
        bad=soft.result(),
    )


def runs(values: Mapping[int, int]) -> list[tuple[int, list[int]]]:
    """Contiguous runs of port -> value: [(first port, [values...]), ...] in port order."""
    out: list[tuple[int, list[int]]] = []
    for port in sorted(values):
        if out and out[-1][0] + len(out[-1][1]) == port:
            out[-1][1].append(values[port])
        else:
            out.append((port, [values[port]]))
    return out


class PileDriver:
    role = "pile"

    def __init__(self, device: Device, bus: ModbusBus, template: Template | None = None) -> None:
        self.template = template if template is not None else shipped()[device.kind]
        lo, hi = self.template.ports
        if not lo <= device.ports <= hi:
            want = f"{lo}..{hi}" if lo != hi else f"{lo} (a {self.template.kind} has {lo})"
            raise ConfigError(device.id, f"ports must be {want}, got {device.ports}")
        self.device = device
        self.id = device.id
        self.ports = device.ports
        self.unit = device.unit
        self.capabilities = self.template.capabilities
        self._bus = bus
        self._counters = CounterMemory(device.id)
        self._beat = 0
        self._hot = hot_blocks(self.template, self.ports)
        self._slow = slow_blocks(self.template, self.ports)
        bus.attach(device.unit, device.id)

    # ------------------------------------------------------------------ reads
    async def read_hot(self) -> PileHot:
        replies = await read_blocks(self._bus, self.unit, self._hot)
        hot = reported(
            self._bus,
            self.unit,
            lambda: decode_hot(self.template, self.id, self.ports, image_of(self._hot, replies)),
        )
        self._bus.report_fields(self.unit, "hot", hot.bad)
        return hot

    async def read_tap(self) -> Tap | None:
        """The tap registers alone, for a controller that must see every tap (the page asks
        for two reads a second) between its ticks. Raises `BadValue` for a bad tap: here it is
        the whole reading. None without a tap reader."""
        f = self.template.fields.get("tap")
        if f is None:
            return None
        regs = await self._bus.read(f.table, self.unit, f.address, f.width)
        return reported(self._bus, self.unit, lambda: tap(self.id, f.address, regs, self.ports))

    async def read_slow(self) -> PileSlow:
        replies = await read_blocks(self._bus, self.unit, self._slow)
        image = image_of(self._slow, replies)
        mem = self._counters
        slow = reported(
            self._bus,
            self.unit,
            lambda: decode_slow(self.template, self.id, self.ports, image, counters=mem),
        )
        self._bus.report_fields(self.unit, "slow", slow.bad)
        return slow

    # ------------------------------------------------------------------ writes
    async def setup(
        self,
        watchdog_s: int,
        failsafe_mask: int,
        port_power_limit_w: int | None = None,
        *,
        retry_for_s: float = 0.0,
    ) -> None:
        """Fail-safe mask, per-port cut-off, watchdog and a fresh heartbeat: in one frame when
        the template's registers are contiguous (the contract pile: holding 0..4), the mask
        before the watchdog otherwise, so the watchdog starts with the mask in place."""
        t = self.template.fields
        limit = self.device.port_power_limit_w if port_power_limit_w is None else port_power_limit_w
        if not 0 <= watchdog_s <= 0xFFFF:
            raise ValueError(f"{self.id}: watchdog_s must be 0..65535, got {watchdog_s}")
        words: dict[int, int] = {}
        cut = t.get("port_power_limit")
        if cut is not None:
            lo, hi = cut.min or 0, cut.max if cut.max is not None else 0xFFFF * cut.scale
            if not lo <= limit <= hi:
                raise ValueError(
                    f"{self.id}: port_power_limit_w must be {lo:g}..{hi:g}, got {limit}"
                )
            self._put(words, cut, limit / cut.scale)
        if "watchdog_timeout" in t:
            self._put(words, t["watchdog_timeout"], watchdog_s / t["watchdog_timeout"].scale)
        if "heartbeat" in t:
            self._put(words, t["heartbeat"], self._next_beat())
        mask = t.get("failsafe_mask")
        if mask is not None and mask.table == "coil":
            await self.set_failsafe_mask(failsafe_mask, retry_for_s=retry_for_s)
        elif mask is not None:
            self._put(words, mask, self._check_mask(failsafe_mask))
        await write_runs(self._bus, self.unit, "holding", words, retry_for_s=retry_for_s)

    async def set_failsafe_mask(self, mask: int, *, retry_for_s: float = 0.0) -> None:
        """Bit (p - 1) set: port p stays closed in failsafe."""
        f = self.template.fields.get("failsafe_mask")
        if f is None:
            raise ValueError(f"{self.id}: a {self.template.kind} has no fail-safe mask")
        self._check_mask(mask)
        words: dict[int, int] = {}
        if f.table == "coil":
            for p in range(1, self.ports + 1):
                words[f.address_of(p)] = mask >> (p - 1) & 1
        else:
            self._put(words, f, mask)
        await write_runs(self._bus, self.unit, f.table, words, retry_for_s=retry_for_s)

    async def heartbeat(self) -> None:
        f = self.template.fields.get("heartbeat")
        if f is not None:
            await write_runs(self._bus, self.unit, f.table, {f.address: self._next_beat()})

    async def write_relays(self, relays: Mapping[int, bool]) -> int:
        """Command relays (port -> closed); returns the frames sent."""
        return await self._write_ports("relay", {p: int(bool(v)) for p, v in relays.items()})

    async def write_indicators(self, lamps: Mapping[int, int]) -> int:
        """Set port lamps (port -> 0..7); returns the frames sent (0 without lamps)."""
        for port, code in lamps.items():
            if code not in INDICATORS:
                raise ValueError(f"{self.id}: port {port}: indicator must be 0..7, got {code}")
        if "indicator" not in self.template.fields:
            return 0
        return await self._write_ports("indicator", dict(lamps))

    async def fault_reset(self, port: int | None = None) -> None:
        """Clear the latched fault of one port, or of all ports (None)."""
        if port is not None:
            self._check_port(port)
        f = self.template.fields.get("fault_reset")
        if f is None:
            return
        if port is None and "all" not in f.special:
            for p in range(1, self.ports + 1):
                await write_runs(self._bus, self.unit, f.table, {f.address: p})
            return
        value = f.special["all"] if port is None else port
        await write_runs(self._bus, self.unit, f.table, {f.address: value})

    # ------------------------------------------------------------------ helpers
    async def _write_ports(self, name: str, values: Mapping[int, int]) -> int:
        for port in values:
            self._check_port(port)
        f = self.template.fields[name]
        words: dict[int, int] = {}
        for port, v in values.items():
            for i, w in enumerate(encode_value(v, f.type, f.word_order)):
                words[f.address_of(port) + i] = w
        return await write_runs(self._bus, self.unit, f.table, words)

    def _put(self, words: dict[int, int], f: Field, value: float) -> None:
        for i, w in enumerate(encode_value(value, f.type, f.word_order)):
            words[f.address + i] = w

    def _check_port(self, port: int) -> None:
        if not 1 <= port <= self.ports:
            raise ValueError(f"{self.id}: port must be 1..{self.ports}, got {port}")

    def _check_mask(self, mask: int) -> int:
        if not 0 <= mask < (1 << self.ports):
            raise ValueError(
                f"{self.id}: failsafe mask {mask:#x} has bits beyond port {self.ports}"
            )
        return mask

    def _next_beat(self) -> int:
        # Any write restarts the watchdog; a changing value makes the read-back show liveness.
        self._beat = self._beat % 0xFFFF + 1
        return self._beat
