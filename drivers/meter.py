"""The generic energy meter: any kind whose template has `role: meter`.

No meter model appears in this code. A template names its fields from a fixed vocabulary
(template_fields.METER): `voltage_lN`, `current_lN`, `power_lN` for each of its `phases`
channels (N = 1..3), `frequency`, `import_energy` (kWh) and, optionally, `power_total`
(else: the sum of the channels). Adding a meter is adding a template file.
"""

from __future__ import annotations

from chargectl.config.schema import Device
from chargectl.drivers.bus import ModbusBus
from chargectl.drivers.counters import CounterMemory
from chargectl.drivers.decode import Fields, in_range, reported
from chargectl.drivers.errors import ConfigError
from chargectl.drivers.mapped import decode_blocks, meter_blocks, read_blocks
from chargectl.drivers.readings import MeterReading
from chargectl.drivers.template import Template
from chargectl.drivers.template_fields import meter_required

VOLTS_MAX = 1000.0
AMPS_MAX = 2000.0
WATTS_MAX = 1_000_000.0  # per channel, either direction
HZ_MAX = 100.0


def check_template(template: Template) -> None:
    """A meter template carries the whole vocabulary for its phases (the parser made sure;
    a template built in code is checked here)."""
    where = f"template {template.kind}"
    if template.role != "meter":
        raise ConfigError(where, f"role is {template.role!r}, not meter")
    missing = [q for q in meter_required(template.phases) if q not in template.fields]
    if missing:
        raise ConfigError(where, f"missing fields: {', '.join(missing)}")


def to_reading(
    device: str,
    reg_map: Template,
    channels: int,
    values: dict[str, float],
    counters: CounterMemory | None = None,
) -> MeterReading:
    """Validated reading of the first `channels` channels from scaled values. The currents are
    critical (one bad and `BadValue` fails the reading: the controller protects breakers with
    them); every other quantity is None and listed in `bad` when it is out of range (an import
    energy also when it went backwards, with `counters`)."""

    def check(name: str, bounds: tuple[float, float]) -> float:
        q = reg_map.fields[name]
        return in_range(device, q.address, values[name], bounds, name)

    soft = Fields()

    def get(name: str, field: str, bounds: tuple[float, float]) -> float | None:
        return soft.soft(field, lambda: check(name, bounds))

    ch = range(1, channels + 1)
    amps = tuple(check(f"current_l{n}", (0.0, AMPS_MAX)) for n in ch)
    volts = tuple(get(f"voltage_l{n}", f"volts[{n}]", (0.0, VOLTS_MAX)) for n in ch)
    watts = tuple(get(f"power_l{n}", f"watts[{n}]", (-WATTS_MAX, WATTS_MAX)) for n in ch)
    total: float | None
    if "power_total" in reg_map.fields:
        total = get("power_total", "total_w", (-3 * WATTS_MAX, 3 * WATTS_MAX))
    else:
        every = range(1, 1 + reg_map.phases)  # the device's total, not only the channels used

        def channel_sum() -> float:
            return sum(check(f"power_l{n}", (-WATTS_MAX, WATTS_MAX)) for n in every)

        total = soft.soft("total_w", channel_sum)
    energy = reg_map.fields["import_energy"]

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

    def __init__(self, device: Device, bus: ModbusBus, reg_map: Template) -> None:
        check_template(reg_map)
        channels = len(device.phases) or reg_map.phases
        if channels > reg_map.phases:
            raise ConfigError(
                device.id,
                f"{len(device.phases)} phases configured, a {reg_map.kind} has {reg_map.phases}",
            )
        self.device = device
        self.id = device.id
        self.unit = device.unit
        self.map = self.template = reg_map
        self.blocks = meter_blocks(reg_map)
        self.channels = channels
        self._bus = bus
        self._counters = CounterMemory(device.id)
        bus.attach(device.unit, device.id)

    async def read(self) -> MeterReading:
        """Every block of the template, in turn (an SDM630 takes 3 reads, an SDM120 4)."""
        replies = await read_blocks(self._bus, self.unit, self.blocks)

        def decode() -> MeterReading:
            values = decode_blocks(self.blocks, self.id, replies)
            return to_reading(self.id, self.map, self.channels, values, self._counters)

        reading = reported(self._bus, self.unit, decode)
        self._bus.report_fields(self.unit, "meter", reading.bad)
        return reading
