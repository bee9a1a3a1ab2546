"""kind -> role. The config names a device's `kind`; its template's `role` (pile, evse,
meter) decides what the controller does with it.

Every kind is a template (drivers/templates/<kind>.yaml, or one in a directory the config
or the command line names): `role_of` answers for the shipped ones, `role_in` for a set of
templates that includes extra directories.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from chargectl.drivers.template import Template, shipped

Role = Literal["pile", "evse", "meter"]


def roles(found: Mapping[str, Template] | None = None) -> dict[str, Role]:
    """kind -> role of the shipped templates (or of `found`)."""
    return {k: t.role for k, t in (shipped() if found is None else found).items()}


def role_of(kind: str, found: Mapping[str, Template] | None = None) -> Role:
    """The role of a kind; KeyError names the valid kinds."""
    known = roles(found)
    try:
        return known[kind]
    except KeyError:
        raise KeyError(f"unknown device kind {kind!r}; known: {', '.join(sorted(known))}") from None


# The shipped kinds, for callers that only know those (a snapshot taken at import).
ROLES: Mapping[str, Role] = roles()
