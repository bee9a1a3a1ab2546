"""The generic energy meter: any kind whose register map has `role: meter`.

No meter model appears in this code. A map names its quantities from a fixed vocabulary:
`voltage_lN`, `current_lN`, `power_lN` for each of its `phases` channels (N = 1..3),
`frequency`, `import_energy` (kWh) and, optionally, `power_total` (else: the sum of the
channels). Adding a meter is adding a map file.
"""

from __future__ import annotations

from chargectl.config.schema import Device
from chargectl.drivers.bus import ModbusBus
from chargectl.drivers.counters import CounterMemory
from chargectl.drivers.decode import Fields, in_range, reported
from chargectl.drivers.errors import ConfigError
from chargectl.drivers.mapped import RegisterMap, decode_blocks, read_blocks
from chargectl.drivers.readings import MeterReading

VOLTS_MAX = 1000.0
AMPS_MAX = 2000.0
WATTS_MAX = 1_000_000.0  # per channel, either direction
HZ_MAX = 100.0


def required_quantities(phases: int) -> list[str]:
    names = [f"{q}_l{n}" for n in range(1, phases + 1) for q in ("voltage", "current", "power")]
    return [*names, "frequency", "import_energy"]


def check_map(reg_map: RegisterMap) -> None:
    """A meter map must carry the whole vocabulary for its phases."""
    where = f"register map {reg_map.kind}"
    if reg_map.role != "meter":
        raise ConfigError(where, f"role is {reg_map.role!r}, not meter")
    missing = [q for q in required_quantities(reg_map.phases) if q not in reg_map.quantities]
    if missing:
        raise ConfigError(where, f"missing quantities: {', '.join(missing)}")
    allowed = {*required_quantities(3), "power_total"}
    unknown = sorted(set(reg_map.quantities) - allowed)
    if unknown:
        raise ConfigError(where, f"unknown quantities {', '.join(unknown)}")


def to_reading(
    device: str,
    reg_map: RegisterMap,
    channels: int,
    values: dict[str, float],
    counters: CounterMemory | None = None,
) -> MeterReading:
    """Validated reading of the first `channels` channels from scaled values. The currents are
    critical (one bad and `BadValue` fails the reading: the controller protects breakers with
    them); every other quantity is None and listed in `bad` when it is out of range (an import
    energy also when it went backwards, with `counters`)."""

    def check(name: str, bounds: tuple[float, float]) -> float:
        q = reg_map.quantities[name]
        return in_range(device, q.address, values[name], bounds, name)

    soft = Fields()

    def get(name: str, field: str, bounds: tuple[float, float]) -> float | None:
        return soft.soft(field, lambda: check(name, bounds))

    ch = range(1, channels + 1)
    amps = tuple(check(f"current_l{n}", (0.0, AMPS_MAX)) for n in ch)
    volts = tuple(get(f"voltage_l{n}", f"volts[{n}]", (0.0, VOLTS_MAX)) for n in ch)
    watts = tuple(get(f"power_l{n}", f"watts[{n}]", (-WATTS_MAX, WATTS_MAX)) for n in ch)
    total: float | None
    if "power_total" in reg_map.quantities:
        total = get("power_total", "total_w", (-3 * WATTS_MAX, 3 * WATTS_MAX))
    else:
        every = range(1, 1 + reg_map.phases)  # the device's total, not only the channels used

        def channel_sum() -> float:
            return sum(check(f"power_l{n}", (-WATTS_MAX, WATTS_MAX)) for n in every)

        total = soft.soft("total_w", channel_sum)
    energy = reg_map.quantities["import_energy"]

    def import_kwh() -> float:
        kwh = check("import_energy", (0.0, float("inf")))
        if counters is not None:
            counters.check_float(energy.address, kwh)
        return kwh

    return MeterReading(
        volts=volts,
        amps=amps,
        watts=watts,
        total_w=total,
        hz=get("frequency", "hz", (0.0, HZ_MAX)),
        import_kwh=soft.soft("import_kwh", import_kwh),
        bad=soft.result(),
    )


class MeterDriver:
    role = "meter"

    def __init__(self, device: Device, bus: ModbusBus, reg_map: RegisterMap) -> None:
        check_map(reg_map)
        channels = len(device.phases) or reg_map.phases
        if channels > reg_map.phases:
            raise ConfigError(
                device.id,
                f"{len(device.phases)} phases configured, a {reg_map.kind} has {reg_map.phases}",
            )
        self.device = device
        self.id = device.id
        self.unit = device.unit
        self.map = reg_map
        self.channels = channels
        self._bus = bus
        self._counters = CounterMemory(device.id)
        bus.attach(device.unit, device.id)

    async def read(self) -> MeterReading:
        """Every block of the map, in turn (an SDM630 takes 3 reads, an SDM120 4)."""
        replies = await read_blocks(self._bus, self.unit, self.map)

        def decode() -> MeterReading:
            values = decode_blocks(self.map, self.id, replies)
            return to_reading(self.id, self.map, self.channels, values, self._counters)

        reading = reported(self._bus, self.unit, decode)
        self._bus.report_fields(self.unit, "meter", reading.bad)
        return reading
