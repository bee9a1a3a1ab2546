"""The sessions package's errors: one base, a few precise kinds.

The staff commands turn `InvalidInput` into exit 2 and `LedgerError` into exit 1; the tick
never sees a ledger error (the writer thread owns the disk and reports through `health()`).
"""

from __future__ import annotations


class SessionsError(Exception):
    """Base of every error raised by chargectl.sessions."""


class InvalidInput(SessionsError, ValueError):
    """A value from a person or a file is malformed (a UID, a date, a CSV line)."""


class InvalidUid(InvalidInput):
    """A card UID that is not 4, 7 or 8 bytes of hex."""


class UnknownCard(SessionsError, KeyError):
    """A card UID the ledger does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown card"


class UnknownBay(SessionsError, KeyError):
    """A bay id the session manager was not built with."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown bay"


class CardImportError(InvalidInput):
    """A card CSV with bad lines: every problem, each with its line number."""

    def __init__(self, path: str, problems: list[tuple[int, str]]) -> None:
        self.path = path
        self.problems = problems
        lines = [f"{path}:{line}: {msg}" for line, msg in problems]
        super().__init__(f"{len(problems)} bad line(s), nothing imported\n" + "\n".join(lines))


class LedgerError(SessionsError):
    """The ledger database cannot be opened, read or written."""


class SchemaError(LedgerError):
    """The ledger's schema version is unknown (newer than this build, or damaged)."""
