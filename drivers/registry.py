"""kind -> template and role. The config names a device's `kind`; its template's `role` (pile,
evse, meter) decides what the controller does with it.

Every kind is a template: a shipped one (drivers/templates/<kind>.yaml) or one in a directory
the config (`templates:`) or the command line (`--templates DIR`) names; a `Shed` carries
both in `Shed.templates`. `templates_for(shed)` is what the daemon builds its drivers and
topology from; `find(dirs)` is what `chargectl check` reads, every problem collected rather
than the first raised. `role_of` and `ROLES` answer for the shipped kinds alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from chargectl.config.schema import Shed
from chargectl.drivers.errors import ConfigError
from chargectl.drivers.template import SHIPPED_DIR, Template, load_template, shipped

Role = Literal["pile", "evse", "meter"]


@dataclass(frozen=True, slots=True)
class Found:
    """The templates a shed can use: the shipped ones and those of its directories."""

    templates: Mapping[str, Template]  # kind -> template
    dirs: tuple[Path, ...]  # the extra directories looked in, in order
    missing: tuple[Path, ...]  # those of `dirs` that are not a directory
    errors: tuple[ConfigError, ...]  # one per file left out: `FILE:LINE`, `PATH: MESSAGE`

    def role(self, kind: str) -> Role | None:
        t = self.templates.get(kind)
        return None if t is None else t.role

    def roles(self) -> dict[str, Role]:
        return {k: t.role for k, t in self.templates.items()}

    def looked_in(self) -> str:
        """Where templates were looked for, for a message about an unknown kind."""
        return ", ".join([f"{SHIPPED_DIR} (shipped)", *(str(d) for d in self.dirs)])


def find(dirs: Sequence[Path] = ()) -> Found:
    """The shipped templates plus every good one in `dirs`; never raises. A file that is
    malformed, cannot be read, or defines a kind already defined is left out and listed in
    `errors`. Read again only when a file in `dirs` changed."""
    return _find(tuple(_signature(Path(d)) for d in dirs))


def templates_for(shed: Shed) -> Mapping[str, Template]:
    """The templates of `shed` (shipped and `shed.templates`); ConfigError for the first
    problem (`chargectl check` reports them all before the daemon gets here)."""
    found = find(shed.template_dirs())
    if found.missing:
        raise ConfigError(str(found.missing[0]), "templates directory not found")
    if found.errors:
        raise found.errors[0]
    return found.templates


# A directory, and for each of its templates (name, mtime_ns, size); None: not a directory.
_Signature = tuple[Path, tuple[tuple[str, int, int], ...] | None]


def _signature(d: Path) -> _Signature:
    if not d.is_dir():
        return d, None
    files = []
    for p in sorted(d.glob("*.yaml")):
        try:
            st = p.stat()
        except OSError:
            files.append((p.name, -1, -1))  # gone or unreadable: load_template says which
            continue
        files.append((p.name, st.st_mtime_ns, st.st_size))
    return d, tuple(files)


@lru_cache(maxsize=64)
def _find(signatures: tuple[_Signature, ...]) -> Found:
    found: dict[str, Template] = dict(shipped())
    missing: list[Path] = []
    errors: list[ConfigError] = []
    for d, files in signatures:
        if files is None:
            missing.append(d)
            continue
        for name, _, _ in files:
            path = d / name
            try:
                t = load_template(path)
            except ConfigError as exc:
                errors.append(exc)
                continue
            if t.kind in found:
                errors.append(
                    ConfigError(
                        f"{path}:{_kind_line(path)}",
                        f"kind: {t.kind!r} is already defined in {found[t.kind].path}",
                    )
                )
                continue
            found[t.kind] = t
    return Found(found, tuple(d for d, _ in signatures), tuple(missing), tuple(errors))


def _kind_line(path: Path) -> int:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return 1
    return next((i for i, line in enumerate(lines, 1) if line.startswith("kind:")), 1)


# ---------------------------------------------------------------------- the shipped kinds
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

__all__ = ["ROLES", "Found", "Role", "find", "role_of", "roles", "templates_for"]
