"""kind -> driver. A kind is a template; its role picks the generic driver that reads it
(the socket pile, the current-set wallbox, the meter). No model has code of its own."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeAlias

from chargectl.config.schema import Device
from chargectl.drivers.bus import ModbusBus
from chargectl.drivers.errors import ConfigError
from chargectl.drivers.evse import EvseDriver
from chargectl.drivers.meter import MeterDriver
from chargectl.drivers.pile import PileDriver
from chargectl.drivers.template import Template, shipped

Driver: TypeAlias = PileDriver | EvseDriver | MeterDriver


def make_driver(
    device: Device, bus: ModbusBus, found: Mapping[str, Template] | None = None
) -> Driver:
    """The driver for a config device on its bus, from its kind's template in `found` (the
    shipped templates when None). ConfigError names the device and, for an unknown kind, the
    valid ones."""
    known = shipped() if found is None else found
    template = known.get(device.kind)
    if template is None:
        names = ", ".join(sorted(known))
        raise ConfigError(device.id, f"unknown kind {device.kind!r}; known: {names}")
    if device.bus != bus.id:
        raise ConfigError(device.id, f"is on bus {device.bus!r}, not {bus.id!r}")
    if template.role == "pile":
        return PileDriver(device, bus, template)
    if template.role == "evse":
        return EvseDriver(device, bus, template)
    return MeterDriver(device, bus, template)
