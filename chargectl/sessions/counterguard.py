"""Which readings of a bay's lifetime energy counter a session may bill.

A reading is believed when the step from the last believed one (u32: a wrap is a forward step)
is no more than the bay could have delivered since: its most plausible power (handed in: a
pile socket's cut-off plus a margin, a wallbox's maximum current x phases x voltage) over the
time since the believed value was first seen, plus `SLACK_S` for when in a tick the reading was
taken, plus 1 Wh for the register's rounding. The believed value stays where it was when a
reading is not believed, so the true value that follows a glitch (in either direction) is
believed again, and whatever flowed meanwhile is billed then.

A reading that is not believed is set aside: counted (each new value once) and logged once per
episode, an episode ending at the next believed reading. It never moves a session.

A counter that was really reset or replaced (a new pile) never comes back. Its readings form a
series of their own that moves forward plausibly; once such a series has lasted `confirm_s`,
the guard re-bases on it (`Verdict.REBASED`): the caller ends a running session as `fault`
with the energy it had believed so far, and the next session counts from the new series. So a
reset never bills a negative step nor a 4-billion Wh one.

Without a plausible power (None), any forward step under half the counter's range is believed,
as before this guard existed; backward steps are still set aside.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from enum import Enum

from chargectl.sessions.records import U32

log = logging.getLogger("chargectl.sessions")

SLACK_S = 10.0  # when within a tick (or a late line's next tick) a reading was taken
ROUNDING_WH = 1  # the register shows whole Wh


class Verdict(Enum):
    BELIEVED = "believed"
    SET_ASIDE = "set_aside"
    REBASED = "rebased"


def allowance_wh(max_power_w: float | None, elapsed_s: float) -> int:
    """The largest forward step believed after `elapsed_s` seconds."""
    if max_power_w is None or elapsed_s == math.inf:
        return U32 // 2 - 1
    e = max(0.0, elapsed_s) + SLACK_S  # NaN (not anchored yet) counts as 0
    return min(U32 // 2 - 1, math.ceil(max_power_w * e / 3600.0) + ROUNDING_WH)


def plausible(
    last: int, reading: int, max_power_w: float | None, elapsed_s: float
) -> tuple[bool, int]:
    """(believed, forward step) of `reading` after `last`."""
    step = (reading - last) % U32
    return step < U32 // 2 and step <= allowance_wh(max_power_w, elapsed_s), step


@dataclass
class CounterGuard:
    bay: str
    max_power_w: float | None
    confirm_s: float
    value: int | None = None  # the last believed reading
    since: float = -math.inf  # monotonic time that value was first seen
    anomalies: int = 0  # readings set aside (each new value once)
    rebases: int = 0
    _episode: bool = False
    _seen: int | None = None  # the last reading, believed or not
    _series: tuple[int, float, float] | None = field(default=None, repr=False)  # value, from, at

    def seed(self, value: int | None, since: float) -> None:
        """Believe `value` as of `since` (start-up: the ledger's last reading, or the first)."""
        self.value, self.since = value, since
        self._series = None
        self._episode = False

    def take(self, reading: int, now: float) -> Verdict:
        new = reading != self._seen
        self._seen = reading
        if self.value is None:
            self.seed(reading, now)
            return Verdict.BELIEVED
        if reading == self.value:
            self._end_episode(now)
            return Verdict.BELIEVED
        ok, step = plausible(self.value, reading, self.max_power_w, now - self.since)
        if ok:
            self.value, self.since = reading, now
            self._end_episode(now)
            return Verdict.BELIEVED
        if new:
            self.anomalies += 1
        if not self._episode:
            self._episode = True
            behind = step >= U32 // 2
            log.warning(
                "%s: energy counter read %d, %s the %d Wh believed %.0f s ago "
                "(at most %d Wh could have flowed): set aside",
                self.bay,
                reading,
                "behind" if behind else f"{step} Wh ahead of",
                self.value,
                now - self.since,
                allowance_wh(self.max_power_w, now - self.since),
            )
        return self._follow_series(reading, now)

    def note_invalid(self, reading: int) -> None:
        """A reading outside the counter's range (not a u32)."""
        if reading != self._seen:
            self.anomalies += 1
        self._seen = reading

    def _follow_series(self, reading: int, now: float) -> Verdict:
        """Track the readings set aside as a series of their own; re-base once it has moved
        plausibly for `confirm_s` (a replaced or reset counter)."""
        s = self._series
        if s is not None:
            value, start, at = s
            ok, _ = plausible(value, reading, self.max_power_w, now - at)
            if ok:
                self._series = (reading, start, now if reading != value else at)
                if now - start >= self.confirm_s:
                    log.warning(
                        "%s: energy counter re-based at %d Wh (was %s): it has read a new "
                        "series for %.0f s (a reset or replaced device)",
                        self.bay,
                        reading,
                        self.value,
                        now - start,
                    )
                    self.rebases += 1
                    self.seed(reading, now)
                    return Verdict.REBASED
                return Verdict.SET_ASIDE
        self._series = (reading, now, now)
        return Verdict.SET_ASIDE

    def _end_episode(self, now: float) -> None:
        self._series = None
        if self._episode:
            self._episode = False
            log.info("%s: energy counter believed again at %s Wh", self.bay, self.value)
