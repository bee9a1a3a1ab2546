"""kind -> driver. The registry says which role a kind plays; this module builds its driver:
code for the roles that need behaviour (pile, evse), the generic meter over the kind's
register map for meters. A meter kind with a map and no code is the normal case."""

from __future__ import annotations

from typing import TypeAlias

from chargectl.config.schema import Device
from chargectl.drivers.bus import ModbusBus
from chargectl.drivers.errors import ConfigError
from chargectl.drivers.evse import EvseDriver
from chargectl.drivers.mapped import shipped_maps
from chargectl.drivers.meter import MeterDriver
from chargectl.drivers.pile import PileDriver
from chargectl.drivers.registry import ROLES, role_of

Driver: TypeAlias = PileDriver | EvseDriver | MeterDriver

# Kinds with their own code. Everything else of role meter is served from its map.
CODED: dict[str, type[PileDriver] | type[EvseDriver]] = {"pile": PileDriver, "evse": EvseDriver}


def make_driver(device: Device, bus: ModbusBus) -> Driver:
    """The driver for a config device on its bus; ConfigError names the device and, for an
    unknown kind, the valid ones."""
    try:
        role = role_of(device.kind)
    except KeyError:
        known = ", ".join(sorted(ROLES))
        raise ConfigError(device.id, f"unknown kind {device.kind!r}; known: {known}") from None
    if device.bus != bus.id:
        raise ConfigError(device.id, f"is on bus {device.bus!r}, not {bus.id!r}")
    coded = CODED.get(device.kind)
    if coded is not None:
        return coded(device, bus)
    if role == "meter":
        reg_map = shipped_maps().get(device.kind)
        if reg_map is None:
            raise ConfigError(device.id, f"meter kind {device.kind!r} has no register map")
        return MeterDriver(device, bus, reg_map)
    raise ConfigError(device.id, f"kind {device.kind!r} ({role}) has no driver")
