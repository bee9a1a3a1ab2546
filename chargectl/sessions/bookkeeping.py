"""The session manager's bookkeeping: what it writes down and counts as sessions start, run,
end and settle, and as taps are judged.

- the ledger's records, through the injected `LedgerPort` (whose writes only enqueue);
- each card's energy per day of session start (the daily quota);
- the provisional times of sessions started on an unsynchronized wall clock, worked back from
  the monotonic clock and written again once it is synchronized;
- the counts and events the reporters read (`SessionReadout`, `SessionEvents`).

Pure but for the ledger port: every call takes the time; nothing here reads a clock.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, tzinfo

from chargectl.sessions.machine import Ended, Reason, Session
from chargectl.sessions.records import (
    Checkpoint,
    EndedRecord,
    LedgerPort,
    OpenSession,
    SessionEnd,
    SessionSettle,
    SessionStart,
    SessionTimes,
    TapRecord,
    counter_delta,
)


@dataclass(slots=True)
class _Provisional:
    """A session whose wall times were taken before the wall clock was synchronized."""

    session: Session
    end_now: float | None = None  # monotonic time it ended


@dataclass(frozen=True, slots=True)
class EndedSession:
    id: int
    card: str
    bay: str
    start: float  # wall time
    reason: Reason
    energy_wh: int  # final, after the settle time


@dataclass(frozen=True, slots=True)
class SessionEvents:
    """What happened since the last `drain_events` (for counters and histograms)."""

    ended: Mapping[str, int]  # reason -> sessions ended
    taps: Mapping[str, int]  # outcome -> taps
    settled: tuple[EndedSession, ...]  # sessions whose energy became final


@dataclass(frozen=True, slots=True)
class SessionReadout:
    active: int
    waiting: int
    charging: int
    ended_total: Mapping[str, int]  # since start-up, by reason
    taps_total: Mapping[str, int]  # since start-up, by outcome
    counter_anomalies: int  # energy readings set aside (implausible steps; never billed)
    counter_resets: int = 0  # counters re-based (a reset or replaced device)
    taps_repeated: int = 0  # taps within tap_debounce_s of the same card's at the bay
    clock_synced: bool = True  # False: new sessions' times are provisional


class Bookkeeper:
    def __init__(self, ledger: LedgerPort, *, tz: tzinfo | None) -> None:
        self._ledger = ledger
        self._tz = tz
        self.wall_ok = True  # False: sessions starting now get provisional times
        self._provisional: dict[int, _Provisional] = {}  # session id -> its monotonic times
        self._used: dict[tuple[str, date], int] = {}  # (card, day of session start) -> Wh
        self.ended_total: Counter[str] = Counter()
        self.taps_total: Counter[str] = Counter()
        self._ended_new: Counter[str] = Counter()
        self._taps_new: Counter[str] = Counter()
        self._settled_new: list[EndedSession] = []

    # ----- days and the daily quota -----
    def day(self, wall: float) -> date:
        return datetime.fromtimestamp(wall, self._tz).date()

    def day_start(self, day: date) -> float:
        start = datetime.combine(day, time(0, 0))
        return (start.replace(tzinfo=self._tz) if self._tz else start).timestamp()

    def used_wh(self, card: str, day: date) -> int:
        """The card's energy in the sessions that started on `day`."""
        return self._used.get((card, day), 0)

    def seed_used(self, used_wh: Mapping[str, int], day: date) -> None:
        """Each card's energy today in sessions the ledger holds as ended (at start-up)."""
        for card, wh in used_wh.items():
            self._used[(card, day)] = int(wh)

    # ----- the wall clock -----
    def set_wall_synced(self, synced: bool, now: float, wall: float) -> None:
        """See `SessionManager.set_wall_synced`."""
        self.wall_ok = synced
        if not synced or not self._provisional:
            return
        for sid, p in list(self._provisional.items()):
            s = p.session
            if p.end_now is None and (s.start_now is None or math.isnan(s.start_now)):
                continue  # not anchored yet (an unanchored restore): next tick
            start = wall - (now - s.start_now)
            end = None if p.end_now is None else wall - (now - p.end_now)
            s.start_wall, s.clock_ok = start, True
            self._ledger.record(SessionTimes(sid, start, end))
            del self._provisional[sid]

    # ----- records -----
    def started(self, s: Session, wall: float) -> None:
        if not self.wall_ok:
            self._provisional[s.id] = _Provisional(s)
        self._ledger.record(SessionStart(s.id, s.card, s.bay, wall, s.counter_start, self.wall_ok))

    def resumed(self, s: Session) -> None:
        """A session reopened at start-up: provisional times stay so until the clock syncs."""
        if s.clock_ok is False:
            self._provisional[s.id] = _Provisional(s)

    def tap(self, bay: str, uid: str, outcome: str, sid: int | None, wall: float) -> None:
        self.taps_total[outcome] += 1
        self._taps_new[outcome] += 1
        self._ledger.record(TapRecord(wall, bay, uid, str(outcome), sid))

    def ended(self, s: Session, reason: Reason, now: float, wall: float) -> None:
        p = self._provisional.get(s.id)
        if p is not None:
            p.end_now = now
        self._ledger.record(
            SessionEnd(s.id, wall, str(reason), s.counter_last, s.energy_wh, s.counter_start)
        )
        self._count_end(reason)
        key = (s.card, self.day(s.start_wall))
        self._used[key] = self._used.get(key, 0) + s.energy_wh

    def ended_unknown_bay(self, rec: OpenSession, reason: Reason, wall: float) -> None:
        """A session the ledger holds as running at a bay that left the config."""
        energy = counter_delta(rec.counter_start, rec.counter_last)
        self._ledger.record(SessionEnd(rec.id, wall, str(reason), rec.counter_last, energy))
        self._ledger.record(SessionSettle(rec.id, rec.counter_last, energy))  # no bay to read
        self._count_end(reason)
        self._settled_new.append(EndedSession(rec.id, rec.card, rec.bay, rec.start, reason, energy))

    def settled(self, e: Ended | None) -> None:
        """An ended session's energy is final (nothing when `e` is None)."""
        if e is None:
            return
        s = e.session
        self._ledger.record(SessionSettle(s.id, s.counter_last, s.energy_wh))
        if e.moved:
            key = (s.card, self.day(s.start_wall))
            self._used[key] = self._used.get(key, 0) + s.energy_wh - e.energy_at_end
        ended = EndedSession(s.id, s.card, s.bay, s.start_wall, e.reason, s.energy_wh)
        self._settled_new.append(ended)

    def settled_as_recorded(self, rec: EndedRecord) -> None:
        """A session left settling in the ledger is settled with the energy it holds."""
        self._ledger.record(SessionSettle(rec.id, rec.counter_last, rec.energy_wh))

    def checkpoint(self, s: Session, now: float, wall: float) -> None:
        s.last_checkpoint = now
        self._ledger.record(
            Checkpoint(
                id=s.id,
                at=wall,
                counter_start=s.counter_start,
                counter_last=s.counter_last,
                energy_wh=s.energy_wh,
                peak_w=s.peak_w,
                closed_s=s.closed_s,
                had_load=s.had_load,
                low_s=s.low_s,
                topup_s=s.topup_s,
                elapsed_s=self._elapsed(s, now),
                had_first_load=s.had_first_load,
            )
        )

    @staticmethod
    def _elapsed(s: Session, now: float) -> float:
        if math.isnan(now) or math.isnan(s.start_now):
            return s.resumed_elapsed_s
        return max(0.0, now - s.start_now)

    # ----- counts and events -----
    def _count_end(self, reason: Reason) -> None:
        self.ended_total[reason] += 1
        self._ended_new[reason] += 1

    def drain(self) -> SessionEvents:
        ev = SessionEvents(dict(self._ended_new), dict(self._taps_new), tuple(self._settled_new))
        self._ended_new.clear()
        self._taps_new.clear()
        self._settled_new.clear()
        return ev
