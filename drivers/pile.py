"""The multi-port socket pile (hardware/pile.md, protocol version 1).

The hot read is ONE request of input 0..48+N-1: status, tap, watchdog, pile current, the port
currents (16..) and the port states (48..). Registers above that (states of ports above N)
carry nothing the controller needs. The slow blocks (energy, power, temperature) are three
reads on the slow cadence. Writes go in as few frames as the map allows: contiguous runs of
relay commands or lamps become one function-16 write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from chargectl.config.schema import Device
from chargectl.drivers.bus import ModbusBus
from chargectl.drivers.counters import CounterMemory
from chargectl.drivers.decode import Fields, expect, in_range, reported, tap, temperature
from chargectl.drivers.errors import BadValue, ConfigError
from chargectl.drivers.mapped import u32
from chargectl.drivers.readings import FAULT_NAMES, PileHot, PileSlow, Tap

MODEL = 0x4350
PROTOCOL = 1
MAX_PORTS = 32

# Input registers.
R_MODEL, R_PROTOCOL, R_PORTS, R_STATUS, R_TEMP, R_VOLTAGE = 0, 1, 2, 3, 4, 5
R_TAP = 6  # seq, info, 4 words of UID (6..11)
R_WATCHDOG, R_PILE_CURRENT = 12, 13
R_PORT_CURRENT, R_PORT_STATE = 16, 48
R_ENERGY, R_POWER, R_PORT_TEMP = 100, 200, 240

# Holding registers.
H_WATCHDOG, H_HEARTBEAT, H_FAILSAFE_MASK, H_PORT_POWER_LIMIT, H_FAULT_RESET = 0, 1, 2, 4, 5
H_RELAY, H_INDICATOR = 16, 48
FAULT_RESET_ALL = 0xFFFF

PORT_MAX_A = 63.0  # a socket above this is garbage, not a load
PORT_MAX_W = 20_000  # 63 A at a generous 300 V
VOLTAGE_MAX_V = 500.0
PORT_POWER_LIMIT_MAX_W = 3500
INDICATORS = range(8)  # 0 off .. 7 charge complete


def hot_count(ports: int) -> int:
    """Registers in the hot read: through the port-state entry of port N."""
    return R_PORT_STATE + ports


STATUS_BITS = 0b11111  # failsafe, smoke, over-temperature, supply fault, e-stop
PORT_STATE_BITS = 0xFF03  # relay closed, load present, fault code


def decode_hot(device: str, ports: int, regs: Sequence[int]) -> PileHot:
    """The hot block (from input 0) of a pile configured with `ports` sockets.

    Critical (a bad one raises `BadValue`: no reading): the identity, the status word, the
    port currents and the port states. Non-critical (a bad one is None and listed in `bad`):
    the cabinet temperature, the supply voltage, the tap and the pile current."""
    if len(regs) < hot_count(ports):
        raise BadValue(device, 0, len(regs), f"hot block needs {hot_count(ports)} registers")
    expect(device, R_MODEL, regs[R_MODEL], MODEL, "model id")
    expect(device, R_PROTOCOL, regs[R_PROTOCOL], PROTOCOL, "protocol version")
    expect(device, R_PORTS, regs[R_PORTS], ports, "port count (config `ports`)")
    status = regs[R_STATUS]
    if status & ~STATUS_BITS:
        # Bits the page does not define: the word is not a status word, so neither are its
        # smoke, e-stop and failsafe bits.
        raise BadValue(device, R_STATUS, status, "pile_status has bits above bit4 set")
    currents = tuple(
        in_range(device, R_PORT_CURRENT + i, ma / 1000.0, (0, PORT_MAX_A), f"port {i + 1} current")
        for i, ma in enumerate(regs[R_PORT_CURRENT : R_PORT_CURRENT + ports])
    )
    states = regs[R_PORT_STATE : R_PORT_STATE + ports]
    faults = []
    for i, word in enumerate(states):
        code = word >> 8
        if code not in FAULT_NAMES:
            raise BadValue(device, R_PORT_STATE + i, word, f"port {i + 1}: unknown fault {code}")
        if word & ~PORT_STATE_BITS:
            raise BadValue(device, R_PORT_STATE + i, word, f"port {i + 1}: bits 2..7 set")
        faults.append(code)
    soft = Fields()
    temp = soft.soft(
        "temperature_c", lambda: temperature(device, R_TEMP, regs[R_TEMP], "cabinet temperature")
    )
    volts = soft.soft(
        "voltage_v",
        lambda: in_range(
            device, R_VOLTAGE, regs[R_VOLTAGE] / 10.0, (0, VOLTAGE_MAX_V), "supply voltage (V)"
        ),
    )
    latest = soft.soft("tap", lambda: tap(device, R_TAP, regs[R_TAP : R_TAP + 6], ports))
    pile_a = soft.soft(
        "pile_current_a",
        lambda: in_range(
            device,
            R_PILE_CURRENT,
            regs[R_PILE_CURRENT] / 100.0,
            (0, PORT_MAX_A * ports),
            "pile current (A)",
        ),
    )
    return PileHot(
        failsafe=bool(status & 1),
        smoke=bool(status & 2),
        over_temp=bool(status & 4),
        supply_fault=bool(status & 8),
        estop=bool(status & 16),
        temperature_c=temp,
        voltage_v=volts,
        tap=latest,
        watchdog_remaining_s=regs[R_WATCHDOG],
        pile_current_a=pile_a,
        current_a=currents,
        relay_closed=tuple(bool(w & 1) for w in states),
        load_present=tuple(bool(w & 2) for w in states),
        fault=tuple(faults),
        bad=soft.result(),
    )


def decode_slow(
    device: str,
    ports: int,
    energy: Sequence[int],
    power: Sequence[int],
    temps: Sequence[int],
    *,
    counters: CounterMemory | None = None,
) -> PileSlow:
    """The three slow blocks (energy from 100, power from 200, temperature from 240). Every
    field is non-critical: a bad one is None and listed in `bad`. With `counters`, an energy
    counter that went backwards is a bad field too (and the memory follows it)."""
    if len(energy) < 2 * ports or len(power) < ports or len(temps) < ports:
        raise BadValue(device, R_ENERGY, len(energy), f"slow blocks need {ports} ports")
    soft = Fields()

    def counter(i: int) -> int | None:
        value = u32(energy[2 * i], energy[2 * i + 1])
        if counters is None:
            return value

        def forward() -> int:
            counters.check({R_ENERGY + 2 * i: value})
            return value

        return soft.soft(f"energy_wh[{i + 1}]", forward)

    def watts(i: int) -> int | None:
        bounds = (0, PORT_MAX_W)
        what = f"port {i + 1} power (W)"
        return soft.soft(
            f"power_w[{i + 1}]", lambda: int(in_range(device, R_POWER + i, power[i], bounds, what))
        )

    def socket_c(i: int) -> float | None:
        what = f"port {i + 1} temperature"
        return soft.soft(
            f"temperature_c[{i + 1}]",
            lambda: temperature(device, R_PORT_TEMP + i, temps[i], what),
        )

    return PileSlow(
        energy_wh=tuple(counter(i) for i in range(ports)),
        power_w=tuple(watts(i) for i in range(ports)),
        temperature_c=tuple(socket_c(i) for i in range(ports)),
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

    def __init__(self, device: Device, bus: ModbusBus, template: object = None) -> None:
        if not 1 <= device.ports <= MAX_PORTS:
            raise ConfigError(device.id, f"ports must be 1..{MAX_PORTS}, got {device.ports}")
        self.device = device
        self.id = device.id
        self.ports = device.ports
        self.unit = device.unit
        self._bus = bus
        self._counters = CounterMemory(device.id)
        self._beat = 0
        bus.attach(device.unit, device.id)

    # ------------------------------------------------------------------ reads
    async def read_hot(self) -> PileHot:
        regs = await self._bus.read_input(self.unit, 0, hot_count(self.ports))
        hot = reported(self._bus, self.unit, lambda: decode_hot(self.id, self.ports, regs))
        self._bus.report_fields(self.unit, "hot", hot.bad)
        return hot

    async def read_tap(self) -> Tap | None:
        """The tap registers alone (input 6..11), for a controller that must see every tap
        (the page asks for two reads a second) between its ticks. Raises `BadValue` for a bad
        tap: here it is the whole reading."""
        regs = await self._bus.read_input(self.unit, R_TAP, 6)
        return reported(self._bus, self.unit, lambda: tap(self.id, R_TAP, regs, self.ports))

    async def read_slow(self) -> PileSlow:
        n = self.ports
        energy = await self._bus.read_input(self.unit, R_ENERGY, 2 * n)
        power = await self._bus.read_input(self.unit, R_POWER, n)
        temps = await self._bus.read_input(self.unit, R_PORT_TEMP, n)

        mem = self._counters
        slow = reported(
            self._bus,
            self.unit,
            lambda: decode_slow(self.id, n, energy, power, temps, counters=mem),
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
        """Watchdog, heartbeat, failsafe mask and per-port cut-off in one frame (holding 0..4):
        the watchdog starts from a fresh heartbeat with the mask already in place."""
        limit = self.device.port_power_limit_w if port_power_limit_w is None else port_power_limit_w
        if not 0 <= watchdog_s <= 0xFFFF:
            raise ValueError(f"{self.id}: watchdog_s must be 0..65535, got {watchdog_s}")
        if not 0 <= limit <= PORT_POWER_LIMIT_MAX_W:
            raise ValueError(f"{self.id}: port_power_limit_w must be 0..3500, got {limit}")
        hi, lo = self._mask_words(failsafe_mask)
        values = [watchdog_s, self._next_beat(), hi, lo, limit]
        await self._bus.write_registers(self.unit, H_WATCHDOG, values, retry_for_s=retry_for_s)

    async def set_failsafe_mask(self, mask: int, *, retry_for_s: float = 0.0) -> None:
        """Bit (p - 1) set: port p stays closed in failsafe."""
        words = list(self._mask_words(mask))
        await self._bus.write_registers(self.unit, H_FAILSAFE_MASK, words, retry_for_s=retry_for_s)

    async def heartbeat(self) -> None:
        await self._bus.write_register(self.unit, H_HEARTBEAT, self._next_beat())

    async def write_relays(self, relays: Mapping[int, bool]) -> int:
        """Command relays (port -> closed); returns the frames sent."""
        return await self._write_ports(H_RELAY, {p: int(bool(v)) for p, v in relays.items()})

    async def write_indicators(self, lamps: Mapping[int, int]) -> int:
        """Set port lamps (port -> 0..7); returns the frames sent."""
        for port, code in lamps.items():
            if code not in INDICATORS:
                raise ValueError(f"{self.id}: port {port}: indicator must be 0..7, got {code}")
        return await self._write_ports(H_INDICATOR, dict(lamps))

    async def fault_reset(self, port: int | None = None) -> None:
        """Clear the latched fault of one port, or of all ports (None)."""
        if port is not None:
            self._check_port(port)
        value = FAULT_RESET_ALL if port is None else port
        await self._bus.write_register(self.unit, H_FAULT_RESET, value)

    # ------------------------------------------------------------------ helpers
    async def _write_ports(self, base: int, values: Mapping[int, int]) -> int:
        for port in values:
            self._check_port(port)
        frames = 0
        for first, run in runs(values):
            addr = base + first - 1
            if len(run) == 1:
                await self._bus.write_register(self.unit, addr, run[0])
            else:
                await self._bus.write_registers(self.unit, addr, run)
            frames += 1
        return frames

    def _check_port(self, port: int) -> None:
        if not 1 <= port <= self.ports:
            raise ValueError(f"{self.id}: port must be 1..{self.ports}, got {port}")

    def _mask_words(self, mask: int) -> tuple[int, int]:
        if not 0 <= mask < (1 << self.ports):
            raise ValueError(
                f"{self.id}: failsafe mask {mask:#x} has bits beyond port {self.ports}"
            )
        return mask >> 16, mask & 0xFFFF

    def _next_beat(self) -> int:
        # Any write restarts the watchdog; a changing value makes the read-back show liveness.
        self._beat = self._beat % 0xFFFF + 1
        return self._beat
