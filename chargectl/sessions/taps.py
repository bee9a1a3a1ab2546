"""A tap at a bay's card reader: what it did (`TapOutcome`, `TapResult`), and the debounce
that makes a card held on the reader, or a reader that reports it again and again, one tap.

`SessionManager.on_tap` judges a tap; this module holds what it answers with and what it
remembers between taps.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from chargectl.sessions.cards import Verdict


class TapOutcome(StrEnum):
    """What a tap did: the `result` label of chargectl_card_taps_total."""

    STARTED = "started"
    STOPPED = "stopped"  # the session's own card: user_stop
    UNKNOWN = "unknown"
    BLOCKED = "blocked"
    EXPIRED = "expired"
    QUOTA = "quota"  # the card's daily energy limit is used up
    BUSY = "busy"  # another card's session runs at this bay; it goes on
    UNAVAILABLE = "unavailable"  # the bay is in fault or the shed in emergency
    INVALID = "invalid"  # the UID is malformed
    LIMIT = "limit"  # the card already runs as many sessions as `max_per_card` allows


# The outcome of a tap whose card `judge` refused.
VERDICT_OUTCOME = {
    Verdict.UNKNOWN: TapOutcome.UNKNOWN,
    Verdict.BLOCKED: TapOutcome.BLOCKED,
    Verdict.EXPIRED: TapOutcome.EXPIRED,
    Verdict.QUOTA: TapOutcome.QUOTA,
}


@dataclass(frozen=True, slots=True)
class TapResult:
    bay: str
    uid: str  # normalised, or the raw text when malformed
    outcome: TapOutcome
    session: int | None  # the session started or stopped

    @property
    def accepted(self) -> bool:
        return self.outcome in (TapOutcome.STARTED, TapOutcome.STOPPED)


class TapDebounce:
    """One tap however long the card is held or however often a reader repeats it: the same
    card at the same bay within `window_s` of its last tap there is the same tap."""

    def __init__(self, window_s: float, n_bays: int) -> None:
        self.window_s = window_s
        self.repeats = 0  # taps taken as repeats
        self._keep = 4 * n_bays + 64  # past this many remembered, the old ones are forgotten
        self._last: dict[tuple[str, str], float] = {}  # (bay, uid) -> monotonic time

    def repeat(self, bay: str, uid: str, now: float) -> bool:
        """Whether this tap repeats the card's last tap at the bay (then it is counted)."""
        key = (bay, uid)
        last = self._last.get(key)
        self._last[key] = now
        if last is not None and now - last < self.window_s:
            self.repeats += 1
            return True
        if len(self._last) > self._keep:
            self._last = {k: t for k, t in self._last.items() if now - t < self.window_s}
        return False
