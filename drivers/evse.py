"""The AC wallbox (hardware/evse.md, protocol version 1).

The hot read is one request of input 0..20; energy lives in it, so a wallbox has no slow read.
The setpoint is written in 0.1 A, rounded down so the box never offers more than planned.
"""

from __future__ import annotations

from collections.abc import Sequence

from chargectl.config.schema import Device
from chargectl.drivers.bus import ModbusBus
from chargectl.drivers.counters import CounterMemory
from chargectl.drivers.decode import Fields, expect, in_range, reported, tap, temperature
from chargectl.drivers.errors import BadValue, ConfigError
from chargectl.drivers.mapped import u32
from chargectl.drivers.readings import CP_STATES, EvseHot, Tap

MODEL = 0x4556
PROTOCOL = 1

# Input registers.
R_MODEL, R_PROTOCOL, R_CP_STATE, R_STATUS, R_CURRENT = 0, 1, 2, 3, 4  # current: 4..6
R_POWER, R_ENERGY, R_TEMP, R_PHASES, R_HW_MAX = 7, 9, 11, 12, 13
R_TAP, R_WATCHDOG = 14, 20  # tap: seq, info, 4 words of UID (14..19)
HOT_COUNT = 21

# Holding registers.
H_WATCHDOG, H_HEARTBEAT, H_CURRENT_LIMIT, H_FAILSAFE_CURRENT, H_INDICATOR = 0, 1, 2, 3, 4

MIN_CURRENT_A = 6.0  # IEC 61851: below this the car must pause, so 0 is the only lower value
PHASE_MAX_A = 100.0
POWER_MAX_W = 100_000
HW_MAX_RANGE_A = (MIN_CURRENT_A, PHASE_MAX_A)


STATUS_BITS = 0b1111  # failsafe, over-temperature, residual-current trip, contactor welded


def decode_hot(
    device: str, phases: int | None, regs: Sequence[int], counters: CounterMemory | None = None
) -> EvseHot:
    """The hot block (input 0..20). `phases`: what the config wires (None: not checked).

    Critical (a bad one raises `BadValue`: no reading): the identity, cp_state, the status
    word, the phase currents and the phase count. Non-critical (None and listed in `bad`):
    power, energy (also when it went backwards, with `counters`), temperature, the hardware
    maximum and the tap."""
    if len(regs) < HOT_COUNT:
        raise BadValue(device, 0, len(regs), f"hot block needs {HOT_COUNT} registers")
    expect(device, R_MODEL, regs[R_MODEL], MODEL, "model id")
    expect(device, R_PROTOCOL, regs[R_PROTOCOL], PROTOCOL, "protocol version")
    cp = regs[R_CP_STATE]
    if cp not in CP_STATES:
        raise BadValue(device, R_CP_STATE, cp, "cp_state must be 1..6 (A..F)")
    status = regs[R_STATUS]
    if status & ~STATUS_BITS:
        raise BadValue(device, R_STATUS, status, "status has bits above bit3 set")
    n_phases = regs[R_PHASES]
    if n_phases not in (1, 3):
        raise BadValue(device, R_PHASES, n_phases, "phases must be 1 or 3")
    if phases is not None and n_phases != phases:
        raise BadValue(device, R_PHASES, n_phases, f"the config wires {phases} phase(s)")
    a = [
        in_range(device, R_CURRENT + i, w / 100.0, (0, PHASE_MAX_A), f"L{i + 1} current (A)")
        for i, w in enumerate(regs[R_CURRENT : R_CURRENT + 3])
    ]
    soft = Fields()
    watts = u32(regs[R_POWER], regs[R_POWER + 1])
    power = soft.soft(
        "power_w", lambda: int(in_range(device, R_POWER, watts, (0, POWER_MAX_W), "power (W)"))
    )
    energy = u32(regs[R_ENERGY], regs[R_ENERGY + 1])

    def forward() -> int:
        if counters is not None:
            counters.check({R_ENERGY: energy})
        return energy

    return EvseHot(
        cp_state=cp,
        failsafe=bool(status & 1),
        over_temp=bool(status & 2),
        rcd_trip=bool(status & 4),
        contactor_welded=bool(status & 8),
        current_a=(a[0], a[1], a[2]),
        power_w=power,
        energy_wh=soft.soft("energy_wh", forward),
        temperature_c=soft.soft(
            "temperature_c", lambda: temperature(device, R_TEMP, regs[R_TEMP], "temperature")
        ),
        phases=n_phases,
        hw_max_current_a=soft.soft(
            "hw_max_current_a",
            lambda: in_range(
                device, R_HW_MAX, regs[R_HW_MAX] / 10.0, HW_MAX_RANGE_A, "hardware maximum (A)"
            ),
        ),
        tap=soft.soft("tap", lambda: tap(device, R_TAP, regs[R_TAP : R_TAP + 6], 1)),
        watchdog_remaining_s=regs[R_WATCHDOG],
        bad=soft.result(),
    )


def deci_amps(amps: float) -> int:
    """A current as the box's 0.1 A register value, rounded down (never offer more)."""
    return int(amps * 10 + 1e-6)


class EvseDriver:
    role = "evse"

    def __init__(self, device: Device, bus: ModbusBus, template: object = None) -> None:
        if device.max_current_a < MIN_CURRENT_A:
            raise ConfigError(device.id, f"max_current_a must be >= 6, got {device.max_current_a}")
        self.device = device
        self.id = device.id
        self.unit = device.unit
        self._bus = bus
        self._phases = len(device.phases) or None
        self._counters = CounterMemory(device.id)
        self._max_a = device.max_current_a  # lowered to the box's own maximum once read
        self._beat = 0
        bus.attach(device.unit, device.id)

    @property
    def max_current_a(self) -> float:
        """The most `set_current` accepts: the config's maximum, or the box's if lower (its
        last good reading of `hw_max_current`)."""
        return self._max_a

    async def read_hot(self) -> EvseHot:
        regs = await self._bus.read_input(self.unit, 0, HOT_COUNT)
        hot = reported(
            self._bus, self.unit, lambda: decode_hot(self.id, self._phases, regs, self._counters)
        )
        self._bus.report_fields(self.unit, "hot", hot.bad)
        if hot.hw_max_current_a is not None:  # a bad one keeps the last good maximum
            self._max_a = min(self.device.max_current_a, hot.hw_max_current_a)
        return hot

    async def read_tap(self) -> Tap | None:
        """The tap registers alone (input 14..19); see `PileDriver.read_tap`."""
        regs = await self._bus.read_input(self.unit, R_TAP, 6)
        return reported(self._bus, self.unit, lambda: tap(self.id, R_TAP, regs, 1))

    async def read_setpoint(self) -> float:
        """The current limit the box applies now (in failsafe: its failsafe current)."""
        (raw,) = await self._bus.read_holding(self.unit, H_CURRENT_LIMIT, 1)
        return raw / 10.0

    async def setup(
        self,
        watchdog_s: int,
        failsafe_current_a: float = 0.0,
        current_a: float = 0.0,
        *,
        retry_for_s: float = 0.0,
    ) -> None:
        """Watchdog, heartbeat, setpoint and failsafe current in one frame (holding 0..3).
        The setpoint defaults to 0 (paused): nothing is offered before the first plan."""
        if not 0 <= watchdog_s <= 0xFFFF:
            raise ValueError(f"{self.id}: watchdog_s must be 0..65535, got {watchdog_s}")
        values = [
            watchdog_s,
            self._next_beat(),
            self._setpoint(current_a, "current_a"),
            self._setpoint(failsafe_current_a, "failsafe_current_a"),
        ]
        await self._bus.write_registers(self.unit, H_WATCHDOG, values, retry_for_s=retry_for_s)

    async def set_current(self, amps: float) -> None:
        """Offer `amps` (0 pauses; else 6 .. max_current_a)."""
        await self._bus.write_register(self.unit, H_CURRENT_LIMIT, self._setpoint(amps, "amps"))

    async def set_indicator(self, code: int) -> None:
        if not 0 <= code <= 7:
            raise ValueError(f"{self.id}: indicator must be 0..7, got {code}")
        await self._bus.write_register(self.unit, H_INDICATOR, code)

    async def heartbeat(self) -> None:
        await self._bus.write_register(self.unit, H_HEARTBEAT, self._next_beat())

    def _setpoint(self, amps: float, what: str) -> int:
        if amps == 0:
            return 0
        if not MIN_CURRENT_A <= amps <= self._max_a:
            raise ValueError(
                f"{self.id}: {what} must be 0 or {MIN_CURRENT_A:g}..{self._max_a:g} A, got {amps}"
            )
        return deci_amps(amps)

    def _next_beat(self) -> int:
        self._beat = self._beat % 0xFFFF + 1
        return self._beat
