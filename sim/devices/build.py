"""A config device as a simulated device: its kind's template and its role's model.

One row per role, none per model: a pile, wallbox or meter of any template is the role's
model over the template's register image. Templates are the shipped ones plus those of the
directories named on the command line (`chargectl sim --templates DIR`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeAlias

from chargectl.config.schema import Device
from chargectl.drivers.errors import ConfigError
from chargectl.drivers.template import Template, templates
from chargectl.sim.devices.evse import EvseModel
from chargectl.sim.devices.meter import MeterModel
from chargectl.sim.devices.pile import PileModel

Model: TypeAlias = PileModel | EvseModel | MeterModel


class BuildError(ValueError):
    """A device the simulator cannot build (names the device and what is wrong)."""


def _pile(d: Device, t: Template) -> Model:
    return PileModel(d.ports, d.port_power_limit_w, template=t)


def _evse(d: Device, t: Template) -> Model:
    return EvseModel(d.max_current_a, len(d.phases) or t.phases, template=t)


def _meter(d: Device, t: Template) -> Model:
    return MeterModel(t)


ROLE_MODELS: Mapping[str, Callable[[Device, Template], Model]] = {
    "pile": _pile,
    "evse": _evse,
    "meter": _meter,
}


def find_templates(extra_dirs: Sequence[Path | str] = ()) -> Mapping[str, Template]:
    """The shipped templates and those in `extra_dirs`; BuildError says which file is bad."""
    try:
        return templates(tuple(Path(d) for d in extra_dirs))
    except ConfigError as exc:
        raise BuildError(str(exc)) from None


def build_model(device: Device, found: Mapping[str, Template]) -> Model:
    template = found.get(device.kind)
    if template is None:
        raise BuildError(
            f"devices[{device.id}].kind: no template for {device.kind!r}; "
            f"known: {', '.join(sorted(found))}"
        )
    try:
        return ROLE_MODELS[template.role](device, template)
    except ValueError as exc:
        raise BuildError(f"devices[{device.id}]: {exc}") from None
