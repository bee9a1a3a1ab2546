"""The current-set wallbox role: one generic driver for every wallbox template.

The hot read is every read field, planned into as few requests as the template allows (the
contract wallbox, hardware/evse.md: one read of input 0..20; energy lives in it, so a
wallbox has no slow read). The setpoint is rounded DOWN to the template's `step_a`, so the
box never offers more than planned; 0 pauses, anything else lies within the template's
`min_current_a` (IEC 61851: 6 A) and the box's maximum.

A template without a heartbeat register whose box restarts its own timeout on every
setpoint write (`setpoint_heartbeat`, e.g. an Alfen NG9xx) gets its setpoint written again
as the heartbeat. A fail-safe current the installer sets on the box (`writable: false`) is
read at set-up: only a 0 A one counts as "off when the daemon is dead".

Critical fields (a bad one raises `BadValue`: no reading): the identity, cp_state, the status
word, the phase currents and the phase count. Every other field is non-critical.
"""

from __future__ import annotations

import math
from functools import cache

from chargectl.config.schema import Device
from chargectl.drivers.bus import ModbusBus
from chargectl.drivers.counters import CounterMemory
from chargectl.drivers.decode import (
    TEMP_MAX_C,
    TEMP_MIN_C,
    Fields,
    check_bits,
    check_identity,
    code_of,
    in_range,
    reported,
    tap,
)
from chargectl.drivers.errors import BadValue, ConfigError
from chargectl.drivers.mapped import read_blocks
from chargectl.drivers.readings import CP_STATES, EvseHot, Tap
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
from chargectl.drivers.template_fields import EVSE
from chargectl.drivers.writes import write_runs

PHASE_MAX_A = 100.0
POWER_MAX_W = 100_000
CP_NUMBER = {letter: n for n, letter in CP_STATES.items()}


@cache
def hot_blocks(template: Template) -> tuple[Block, ...]:
    fields = [f for n, f in template.fields.items() if not EVSE[n].write]
    return plan_blocks(fields, template.max_gap, readable=template.readable)


def decode_hot(
    template: Template,
    device: str,
    phases: int | None,
    image: Image,
    counters: CounterMemory | None = None,
) -> EvseHot:
    """The hot fields, from a register image. `phases`: what the config wires (None: not
    checked)."""
    t = template.fields
    check_identity(device, template, image)
    cp_f = t["cp_state"]
    word = int(raw_value(cp_f, image))
    letter = cp_f.codes.get(code_of(cp_f, word))
    if letter is None:
        codes = ", ".join(f"{c} = {m}" for c, m in sorted(cp_f.codes.items()))
        raise BadValue(device, cp_f.address, word, f"cp_state must be one of {codes}")
    flags = dict.fromkeys(("failsafe", "over_temp", "rcd_trip", "contactor_welded"), False)
    status = t.get("status")
    if status is not None:
        st = int(raw_value(status, image))
        check_bits(device, status.address, st, status.bits.values(), "status")
        flags.update({m: bool(st >> b & 1) for m, b in status.bits.items()})
    n_phases = template.phases if phases is None else phases
    ph_f = t.get("phases")
    if ph_f is not None:
        n_phases = int(raw_value(ph_f, image))
        if n_phases not in (1, 3):
            raise BadValue(device, ph_f.address, n_phases, "phases must be 1 or 3")
        if phases is not None and n_phases != phases:
            raise BadValue(device, ph_f.address, n_phases, f"the config wires {phases} phase(s)")
    amps = []
    for n in (1, 2, 3):
        f = t[f"current_l{n}"]
        phase_a = raw_value(f, image) * f.scale
        amps.append(in_range(device, f.address, phase_a, (0, PHASE_MAX_A), f"L{n} current (A)"))
    soft = Fields()

    def value(name: str, bounds: tuple[float, float], what: str, attr: str) -> float | None:
        f = t.get(name)
        if f is None:
            return None
        return soft.soft(
            attr, lambda: in_range(device, f.address, raw_value(f, image) * f.scale, bounds, what)
        )

    power = value("power", (0, POWER_MAX_W), "power (W)", "power_w")
    hw_range = (template.min_current_a or 0.0, PHASE_MAX_A)
    tap_f = t.get("tap")
    wd = t.get("watchdog_remaining")
    return EvseHot(
        cp_state=CP_NUMBER[letter],
        **flags,
        current_a=(amps[0], amps[1], amps[2]),
        power_w=None if power is None else int(power),
        energy_wh=_energy(soft, device, t.get("energy"), image, counters),
        temperature_c=value(
            "temperature", (TEMP_MIN_C, TEMP_MAX_C), "temperature (C)", "temperature_c"
        ),
        phases=n_phases,
        hw_max_current_a=value(
            "hw_max_current", hw_range, "hardware maximum (A)", "hw_max_current_a"
        ),
        tap=None
        if tap_f is None
        else soft.soft("tap", lambda: tap(device, tap_f.address, words_of(tap_f, image), 1)),
        watchdog_remaining_s=0 if wd is None else _seconds(raw_value(wd, image) * wd.scale),
        bad=soft.result(),
    )


def _seconds(value: float) -> int:
    return int(value) if math.isfinite(value) and 0 <= value < 1e9 else 0


def _energy(
    soft: Fields, device: str, f: Field | None, image: Image, counters: CounterMemory | None
) -> int | None:
    """The lifetime energy (Wh), or None: absent, bad, or gone backwards (with `counters`)."""
    if f is None:
        return None
    raw = raw_value(f, image)

    def forward() -> int:
        wh = in_range(device, f.address, raw * f.scale, (0, float("inf")), "energy (Wh)")
        if counters is not None:
            if f.type in ("f32", "f64"):
                counters.check_float(f.address, wh)
            else:
                counters.check({f.address: int(raw)})
        return int(wh)

    return soft.soft("energy_wh", forward)


def setpoint_raw(template: Template, amps: float, name: str = "current_limit") -> float:
    """The register value of `amps` for a current field, rounded down to the template's
    step (never offer more than planned)."""
    f = template.fields[name]
    step = template.step_a or f.scale
    offered = math.floor(amps / step + 1e-6) * step
    raw = offered / f.scale
    return raw if f.type in ("f32", "f64") else round(raw)


class EvseDriver:
    role = "evse"

    def __init__(self, device: Device, bus: ModbusBus, template: Template | None = None) -> None:
        self.template = template if template is not None else shipped()[device.kind]
        self.min_current_a = self.template.min_current_a or 0.0
        if device.max_current_a < self.min_current_a:
            raise ConfigError(
                device.id,
                f"max_current_a must be >= {self.min_current_a:g}, got {device.max_current_a}",
            )
        self.device = device
        self.id = device.id
        self.unit = device.unit
        self.capabilities = self.template.capabilities
        self.step_a = self.template.step_a or 0.1
        self._bus = bus
        self._phases = len(device.phases) or None
        self._counters = CounterMemory(device.id)
        self._max_a = device.max_current_a  # lowered to the box's own maximum once read
        self._beat = 0
        self._setpoint: int | float | None = None  # the last current_limit value written
        self._hot = hot_blocks(self.template)
        bus.attach(device.unit, device.id)

    @property
    def max_current_a(self) -> float:
        """The most `set_current` accepts: the config's maximum, or the box's if lower (its
        last good reading of `hw_max_current`)."""
        return self._max_a

    async def read_hot(self) -> EvseHot:
        replies = await read_blocks(self._bus, self.unit, self._hot)
        image = image_of(self._hot, replies)
        hot = reported(
            self._bus,
            self.unit,
            lambda: decode_hot(self.template, self.id, self._phases, image, self._counters),
        )
        self._bus.report_fields(self.unit, "hot", hot.bad)
        if hot.hw_max_current_a is not None:  # a bad one keeps the last good maximum
            self._max_a = min(self.device.max_current_a, hot.hw_max_current_a)
        return hot

    async def read_tap(self) -> Tap | None:
        """The tap registers alone; see `PileDriver.read_tap`. None without a tap reader."""
        f = self.template.fields.get("tap")
        if f is None:
            return None
        regs = await self._bus.read(f.table, self.unit, f.address, f.width)
        return reported(self._bus, self.unit, lambda: tap(self.id, f.address, regs, 1))

    async def read_setpoint(self) -> float:
        """The current limit the box applies now (in failsafe: its failsafe current)."""
        f = self.template.fields["current_limit"]
        regs = await self._bus.read(f.table, self.unit, f.address, f.width)
        image: Image = {(f.table, f.address + i): w for i, w in enumerate(regs)}
        return raw_value(f, image) * f.scale

    async def setup(
        self,
        watchdog_s: int,
        failsafe_current_a: float = 0.0,
        current_a: float = 0.0,
        *,
        retry_for_s: float = 0.0,
    ) -> bool:
        """Watchdog, heartbeat, setpoint and fail-safe current: one frame when the registers
        are contiguous (the contract wallbox: holding 0..3). The setpoint defaults to 0
        (paused): nothing is offered before the first plan. Returns whether the box's
        fail-safe current is known to be 0 (written so, or read so when the box's installer
        sets it)."""
        t = self.template.fields
        if not 0 <= watchdog_s <= 0xFFFF:
            raise ValueError(f"{self.id}: watchdog_s must be 0..65535, got {watchdog_s}")
        words: dict[int, int] = {}
        if "watchdog_timeout" in t:
            self._put(words, t["watchdog_timeout"], watchdog_s / t["watchdog_timeout"].scale)
        if "heartbeat" in t:
            self._put(words, t["heartbeat"], self._next_beat())
        raw = self._setpoint_raw(current_a, "current_a")
        self._put(words, t["current_limit"], raw)
        fs = t.get("failsafe_current")
        self._setpoint_raw(failsafe_current_a, "failsafe_current_a")  # its range
        if fs is not None and fs.writable:
            self._put(words, fs, setpoint_raw(self.template, failsafe_current_a, fs.name))
        enable = t.get("enable")
        if enable is not None:
            await write_runs(
                self._bus, self.unit, enable.table, {enable.address: 1}, retry_for_s=retry_for_s
            )
        await write_runs(self._bus, self.unit, "holding", words, retry_for_s=retry_for_s)
        self._setpoint = raw
        if fs is None:
            return False
        if fs.writable:
            return failsafe_current_a == 0
        regs = await self._bus.read(
            fs.table, self.unit, fs.address, fs.width, retry_for_s=retry_for_s
        )
        image: Image = {(fs.table, fs.address + i): w for i, w in enumerate(regs)}
        return raw_value(fs, image) * fs.scale == 0

    async def set_current(self, amps: float) -> None:
        """Offer `amps` (0 pauses; else min_current_a .. max_current_a)."""
        f = self.template.fields["current_limit"]
        raw = self._setpoint_raw(amps, "amps")
        words: dict[int, int] = {}
        self._put(words, f, raw)
        await write_runs(self._bus, self.unit, f.table, words)
        self._setpoint = raw

    async def set_indicator(self, code: int) -> None:
        if not 0 <= code <= 7:
            raise ValueError(f"{self.id}: indicator must be 0..7, got {code}")
        f = self.template.fields.get("indicator")
        if f is not None:
            await write_runs(self._bus, self.unit, f.table, {f.address: code})

    async def heartbeat(self) -> None:
        """A heartbeat write; without a heartbeat register, the setpoint again when each
        setpoint write restarts the box's own timeout."""
        t = self.template.fields
        if "heartbeat" in t:
            await write_runs(
                self._bus,
                self.unit,
                t["heartbeat"].table,
                {t["heartbeat"].address: self._next_beat()},
            )
        elif self.template.setpoint_heartbeat and self._setpoint is not None:
            words: dict[int, int] = {}
            self._put(words, t["current_limit"], self._setpoint)
            await write_runs(self._bus, self.unit, t["current_limit"].table, words)

    def _setpoint_raw(self, amps: float, what: str) -> int | float:
        if amps == 0:
            return 0
        if not self.min_current_a <= amps <= self._max_a:
            raise ValueError(
                f"{self.id}: {what} must be 0 or {self.min_current_a:g}..{self._max_a:g} A, "
                f"got {amps}"
            )
        return setpoint_raw(self.template, amps)

    def _put(self, words: dict[int, int], f: Field, value: float) -> None:
        for i, w in enumerate(encode_value(value, f.type, f.word_order)):
            words[f.address + i] = w

    def _next_beat(self) -> int:
        self._beat = self._beat % 0xFFFF + 1
        return self._beat
