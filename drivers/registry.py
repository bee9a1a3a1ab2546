"""kind -> role. The config names a device's `kind`; its role (pile, evse, meter) decides
what the controller does with it.

The drivers module registers its drivers and data-only register maps here (a map file in
`maps/` adds a kind without code). Registering a kind twice fails at import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml

Role = Literal["pile", "evse", "meter"]

ROLES: dict[str, Role] = {}


def register_kind(kind: str, role: Role) -> None:
    if kind in ROLES:
        raise ValueError(f"device kind {kind!r} registered twice")
    ROLES[kind] = role


def role_of(kind: str) -> Role:
    """The role of a kind; KeyError names the valid kinds."""
    try:
        return ROLES[kind]
    except KeyError:
        raise KeyError(f"unknown device kind {kind!r}; known: {', '.join(sorted(ROLES))}") from None


for _kind, _role in (("pile", "pile"), ("evse", "evse"), ("sdm630", "meter"), ("sdm120", "meter")):
    register_kind(_kind, _role)  # type: ignore[arg-type]


def register_maps(directory: Path) -> None:
    """A register map adds a kind without code: `<directory>/<kind>.yaml` naming its `role`.
    A map for a kind registered above must agree on the role (else: registered twice)."""
    for path in sorted(directory.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        role = data.get("role") if isinstance(data, dict) else None
        if role not in ("pile", "evse", "meter"):
            raise ValueError(f"{path}: role must be pile, evse or meter, got {role!r}")
        if ROLES.get(path.stem) != role:
            register_kind(path.stem, role)


register_maps(Path(__file__).parent / "maps")
