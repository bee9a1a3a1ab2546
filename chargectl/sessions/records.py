"""What the session manager tells the ledger, and the port it tells it through.

The manager calls the port from the control tick, so every write method must return at once
(the real port, `LedgerWriter`, enqueues for its thread). Only `load_state` reads the disk, and
it is called once, at start-up, by `SessionManager.restore`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from chargectl.sessions.cards import CardBook

U32 = 1 << 32


def counter_delta(start: int | None, end: int | None) -> int:
    """Wh between two readings of a u32 lifetime counter, across at most one wrap."""
    if start is None or end is None:
        return 0
    return (end - start) % U32


@dataclass(frozen=True, slots=True)
class SessionStart:
    id: int
    card: str
    bay: str
    start: float  # wall time
    counter_start: int | None  # None: the bay's counter was unknown at the tap
    clock_ok: bool = True  # False: the wall clock was not synchronized; `start` is provisional


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A running session's progress, so a restart resumes it where it was."""

    id: int
    at: float  # wall time
    counter_start: int | None  # filled in if it was unknown at the start
    counter_last: int | None
    energy_wh: int
    peak_w: float
    closed_s: float  # time the relay has been closed with readings
    had_load: bool
    low_s: float  # time the power has stayed at or below the full threshold
    topup_s: float | None  # time into the top-up after `full` was detected; None before
    elapsed_s: float = 0.0  # since the tap, on the monotonic clock (wall time is not trusted)
    had_first_load: bool = False  # a sustained no_load_first_w seen (the first-30-min rule)


@dataclass(frozen=True, slots=True)
class SessionEnd:
    id: int
    end: float  # wall time
    reason: str
    counter_last: int | None
    energy_wh: int
    counter_start: int | None = None  # filled in if it was unknown at the start


@dataclass(frozen=True, slots=True)
class SessionSettle:
    """An ended session's final energy, once its settle time is over: what reached its counter
    after it ended counts (the relay opens on the next tick, and the counter is read on the
    slow cadence). Until this record, the ledger holds the session as settling."""

    id: int
    counter_last: int | None
    energy_wh: int


@dataclass(frozen=True, slots=True)
class SessionTimes:
    """A session's times once the wall clock is synchronized, for a session that started (and
    maybe ended) before: worked back from the monotonic clock."""

    id: int
    start: float
    end: float | None  # None: still running


@dataclass(frozen=True, slots=True)
class TapRecord:
    at: float  # wall time
    bay: str
    uid: str  # normalised, or the raw text when it was malformed
    result: str  # a TapOutcome value
    session: int | None  # the session it started or stopped


@dataclass(frozen=True, slots=True)
class CurveMinute:
    """One minute of a session's power curve: `minute` whole minutes after the tap (on the
    monotonic clock). Written again (replaced) when a restart resumes inside that minute."""

    id: int  # the session
    minute: int
    mean_w: float
    peak_w: float
    temp_c: float | None  # mean socket temperature; None where the bay reports none


@dataclass(frozen=True, slots=True)
class CurvePrune:
    """Delete the curves of sessions that ended before `ended_before` (wall time)."""

    ended_before: float


@dataclass(frozen=True, slots=True)
class CardFlag:
    """A card marked by a critical fire-risk finding (staff speak to its resident): written
    by the daemon when the finding cuts a bay, read by `chargectl cards list`. A later finding
    replaces the reason and the time; staff clear it (`chargectl cards unflag`)."""

    uid: str  # the card's UID, normalised
    reason: str  # what was seen, where, in which session
    at: float  # wall time of the finding
    session: int | None = None  # the session the finding was in
    bay: str | None = None


@dataclass(frozen=True, slots=True)
class Latch:
    """A latch kept until staff clear it, so that a restart keeps it (runtime/latches.py):
    the shed alarm, or a bay held out by a critical fire-risk finding."""

    kind: str  # "alarm" or "bay"
    subject: str  # alarm: the pile that raised it ("" unknown); bay: the bay id
    reason: str  # alarm: "smoke" / "estop"; bay: its fault name ("over_power", ...)
    at: float  # wall time it latched


@dataclass(frozen=True, slots=True)
class LatchClear:
    """Staff cleared a latch: the shed alarm (`subject` None: whichever pile raised it) or a
    bay's hold."""

    kind: str
    subject: str | None = None


LedgerRecord = (
    SessionStart
    | Checkpoint
    | SessionEnd
    | SessionSettle
    | SessionTimes
    | TapRecord
    | CurveMinute
    | CurvePrune
    | CardFlag
    | Latch
    | LatchClear
)


@dataclass(frozen=True, slots=True)
class OpenSession:
    """A session the ledger holds as running, with its last checkpoint."""

    id: int
    card: str
    bay: str
    start: float
    counter_start: int | None
    counter_last: int | None
    peak_w: float = 0.0
    closed_s: float = 0.0
    had_load: bool = False
    low_s: float = 0.0
    topup_s: float | None = None
    had_first_load: bool = False
    elapsed_s: float | None = None  # since the tap, as of the last checkpoint; None: unknown
    checkpoint_at: float | None = None  # wall time of the last checkpoint
    clock_ok: bool = True  # False: `start` is provisional (the wall clock was not synchronized)


@dataclass(frozen=True, slots=True)
class EndedRecord:
    """An ended session the ledger holds as still settling: the daemon stopped before its
    settle time was over (the counter reading at its end is up to a slow poll old)."""

    id: int
    card: str
    bay: str
    start: float
    end: float
    reason: str
    counter_start: int | None
    counter_last: int | None
    energy_wh: int


@dataclass(frozen=True, slots=True)
class LedgerState:
    open_sessions: tuple[OpenSession, ...]
    next_session_id: int
    used_wh: Mapping[str, int]  # card -> Wh of ended sessions started since the asked time
    settling: tuple[EndedRecord, ...] = ()  # ended, not settled: the restart settles them


class LedgerPort(Protocol):
    def cards(self) -> CardBook: ...
    def load_state(self, since: float) -> LedgerState: ...
    def record(self, rec: LedgerRecord) -> None: ...
