"""The boundary the control tick calls: taps in, demand out, records to the ledger port.

Pure except through the injected `LedgerPort` (whose write methods only enqueue) and its
in-memory card book. Every call takes the time; nothing here reads a clock.

Per tick the controller calls, in order: `on_tap` for each new tap, `update` with every bay's
observation, then `demand` (who wants current, their credit, the lamps). `restore` runs once
at start-up, before the first tick.

This module judges taps and drives each bay's `BayMachine`; what a tap answers and its
debounce are in `taps`, the records, the daily quota and the counts in `bookkeeping`. Callers
import the names listed in `__all__` from here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import tzinfo

import numpy as np

from chargectl.config.schema import SessionSettings
from chargectl.sessions.bookkeeping import (
    Bookkeeper,
    EndedSession,
    SessionEvents,
    SessionReadout,
)
from chargectl.sessions.cards import Verdict, judge, parse_uid
from chargectl.sessions.curves import CurveRecorder
from chargectl.sessions.errors import InvalidUid, SessionsError, UnknownBay
from chargectl.sessions.machine import (
    BayDemand,
    BayMachine,
    BayObservation,
    Lamp,
    Reason,
    Session,
    Timings,
)
from chargectl.sessions.records import U32, CardFlag, EndedRecord, LedgerPort, LedgerState
from chargectl.sessions.taps import VERDICT_OUTCOME, TapDebounce, TapOutcome, TapResult

__all__ = [
    "EndedSession",
    "SessionEvents",
    "SessionManager",
    "SessionReadout",
    "TapOutcome",
    "TapResult",
]


class SessionManager:
    def __init__(
        self,
        settings: SessionSettings,
        ledger: LedgerPort,
        bays: Sequence[str],
        *,
        tz: tzinfo | None = None,  # for "today" (quota, expiry); None: the system's local time
        max_power_w: Mapping[str, float] | None = None,  # bay -> the most it can draw (W)
    ) -> None:
        if len(set(bays)) != len(bays):
            raise SessionsError(f"duplicate bay ids in {list(bays)!r}")
        self._settings = settings
        self._ledger = ledger
        timings = Timings.from_settings(settings)
        limits = max_power_w or {}
        self._bays = {b: BayMachine(b, settings, timings, max_power_w=limits.get(b)) for b in bays}
        self._slot = {b: j for j, b in enumerate(bays)}  # the bay's index in the curve arrays
        self._curves = CurveRecorder(
            len(bays), max_duration_s=settings.max_duration_s, keep_days=settings.curve_keep_days
        )
        self._wallbox = {b: "/" not in b for b in bays}  # a pile's bays are `pile/port`
        self._down: dict[str, float] = {}  # bay -> seconds down, for an unanchored restore
        self._debounce = TapDebounce(settings.tap_debounce_s, len(self._bays))
        self._keeper = Bookkeeper(ledger, tz=tz)
        self._restored = False
        self._unanchored = False  # resumed sessions wait for a `now` (restore without one)
        self._next_id = 1

    @property
    def bays(self) -> tuple[str, ...]:
        return tuple(self._bays)

    # ----- start-up -----
    def restore(
        self, counters: Mapping[str, int | None], wall: float, now: float | None = None
    ) -> None:
        """Reopen the sessions the ledger holds as running, with the bays' counters now.

        A session's energy stays `counter - counter_start`: what flowed while the daemon was
        down (a pile in failsafe keeps charging) lands on it, and nothing is added twice.
        Without `now`, the resumed sessions' timers are anchored at the first tick.
        """
        if self._restored:
            raise SessionsError("restore() called twice")
        self._restored = True
        at = math.nan if now is None else now
        keeper = self._keeper
        today = keeper.day(wall)
        state = self._ledger.load_state(keeper.day_start(today))
        self._next_id = state.next_session_id
        keeper.seed_used(state.used_wh, today)
        for bay, machine in self._bays.items():
            reading = counters.get(bay)
            ok = reading is not None and 0 <= reading < U32
            machine.last_counter = reading if ok else None
            machine.guard.seed(reading if ok else None, at)
            if reading is not None and not ok:
                machine.guard.note_invalid(reading)
        self._reopen_settling(state, at, wall)
        for rec in sorted(state.open_sessions, key=lambda r: r.id):
            m = self._bays.get(rec.bay)
            if m is None:
                # The bay left the config while the session ran: close it as the staff did.
                keeper.ended_unknown_bay(rec, Reason.STAFF_STOP, wall)
                continue
            if m.session is not None:  # two open sessions on one bay: keep the newest
                self._end(m, Reason.FAULT, 0.0, wall)
                keeper.settled(m.take_settled(0.0, force=True))
            s = m.resume(rec, at)
            reading = m.last_counter
            base = s.counter_last if s.counter_last is not None else s.counter_start
            if base is None:
                if reading is not None:
                    s.counter_start = s.counter_last = reading
            else:
                # The start-up reading is judged against the ledger's, allowing the bay's power
                # over the time since that checkpoint (the only use of wall time across a
                # restart: it can only widen what is believed, up to half the counter's range).
                down = self._down_s(rec.checkpoint_at, wall)
                self._down[rec.bay] = down
                m.guard.seed(base, at - down)
                m.last_counter = base
                if reading is not None:
                    m.take_reading(reading, at)
            keeper.resumed(s)
            keeper.checkpoint(s, at, wall)
        self._unanchored = now is None

    @staticmethod
    def _down_s(since_wall: float | None, wall: float) -> float:
        if since_wall is None or not math.isfinite(since_wall):
            return 0.0
        return max(0.0, wall - since_wall)

    def _reopen_settling(self, state: LedgerState, at: float, wall: float) -> None:
        """Sessions the daemon stopped settling (killed, or the power went) settle again: the
        reading that completes them may not have come. The counter read at start-up is such a
        reading: the relay opened when the session ended (or opens on the first tick)."""
        newest: dict[str, tuple[EndedRecord, Reason]] = {}
        for rec in state.settling:
            try:
                reason = Reason(rec.reason)
            except ValueError:
                reason = None  # not a reason this build knows: leave its energy as it is
            if rec.bay not in self._bays or reason is None:
                self._keeper.settled_as_recorded(rec)
                continue
            older = newest.get(rec.bay)
            if older is not None:
                self._keeper.settled_as_recorded(older[0])
            newest[rec.bay] = (rec, reason)
        open_at = {r.bay: r for r in state.open_sessions}
        for bay, (rec, reason) in newest.items():
            m = self._bays[bay]
            m.reopen_ended(rec, reason, at + self._settings.settle_s)
            newer = open_at.get(bay)
            if newer is None or newer.counter_start is None:
                reading = m.last_counter
                if rec.counter_last is not None:
                    down = self._down_s(rec.end, wall)
                    self._down[bay] = down
                    m.guard.seed(rec.counter_last, at - down)
                    m.last_counter = rec.counter_last
                m.take_reading(reading, at)
            if newer is not None:
                # A newer session runs there: it was held (no start counter yet) and starts
                # from this reading, or it counts already and the reading is its own.
                self._keeper.settled(m.take_settled(0.0, force=True))

    # ----- the tick -----
    def on_tap(self, bay: str, uid_hex: str, now: float, wall: float) -> TapResult | None:
        """What the tap did; None for a repeat (the same card at the bay within
        `tap_debounce_s` of its last tap there): nothing happens, it is only counted."""
        m = self._machine(bay)
        self._require_restored(now, wall)
        try:
            uid = parse_uid(uid_hex)
        except InvalidUid:
            return self._tap(m, uid_hex[:64], TapOutcome.INVALID, None, now=now, wall=wall)
        if self._debounce.repeat(bay, uid, now):
            return None
        if m.emergency or m.fault is not None:
            return self._tap(m, uid, TapOutcome.UNAVAILABLE, None, now=now, wall=wall)
        s = m.session
        boundary: int | None = None
        if s is not None:
            if s.card == uid:
                self._end(m, Reason.USER_STOP, now, wall)
                return self._tap(m, uid, TapOutcome.STOPPED, s.id, now=now, wall=wall)
            if m.shows_its_charger or m.held:
                return self._tap(m, uid, TapOutcome.BUSY, None, now=now, wall=wall)
        today = self._keeper.day(wall)
        used = self._keeper.used_wh(uid, today)
        verdict = judge(self._ledger.cards().get(uid), today, used)
        if verdict is not Verdict.OK:
            return self._tap(m, uid, VERDICT_OUTCOME[verdict], None, now=now, wall=wall)
        if self._at_limit(uid, wallbox=self._wallbox[bay]):
            return self._tap(m, uid, TapOutcome.LIMIT, None, now=now, wall=wall)
        if s is not None:
            # Another card at a bay whose session cannot show its own charger there (paused,
            # waiting, or its load broke off): its owner has gone and this card's charger is
            # plugged in, since a socket holds one plug. The old session ends as unplugged at
            # the counter read while no load flowed, and the new one starts from there (what
            # its charger drew before the tap is its own); without such a reading the old one
            # settles as usual and the new one is held meanwhile (relay open).
            boundary = self._end(m, Reason.UNPLUGGED, now, wall, hand_over=True)
        # While the previous session at the bay settles, the new one is held (BayMachine.start).
        sid = self._next_id
        self._next_id += 1
        s = m.start(sid, uid, now, wall, clock_ok=self._keeper.wall_ok)
        if boundary is not None:
            s.counter_start = s.counter_last = boundary  # what its charger drew before the tap
        self._keeper.started(s, wall)
        return self._tap(m, uid, TapOutcome.STARTED, sid, now=now, wall=wall)

    def _at_limit(self, uid: str, *, wallbox: bool) -> bool:
        """The card runs as many sessions of this kind (socket or wallbox) as it may."""
        cfg = self._settings
        limit = cfg.max_per_card_wallbox if wallbox else cfg.max_per_card
        if limit <= 0:
            return False
        running = sum(
            1
            for bay, m in self._bays.items()
            if m.session is not None and m.session.card == uid and self._wallbox[bay] == wallbox
        )
        return running >= limit

    def set_wall_synced(self, synced: bool, now: float, wall: float) -> None:
        """Whether the wall clock is synchronized now. Sessions that start while it is not are
        recorded with provisional times (`clock_ok` false); once it is, their times are worked
        back from the monotonic clock and written again (`SessionTimes`)."""
        self._keeper.set_wall_synced(synced, now, wall)

    def update(self, now: float, wall: float, obs: Mapping[str, BayObservation]) -> None:
        """Take every bay's observation; end the sessions a rule stops; checkpoint."""
        self._require_restored(now, wall)
        for bay in obs:
            if bay not in self._bays:
                raise UnknownBay(f"observation for unknown bay {bay!r}")
        self._sample_curves(now, wall, obs)
        books = self._ledger.cards()
        every = self._settings.checkpoint_s
        keeper = self._keeper
        for bay, m in self._bays.items():
            s = m.session
            quota_left: float | None = None
            blocked = False
            if s is not None:
                card = books.get(s.card)
                if card is not None and card.daily_kwh is not None:
                    used = keeper.used_wh(s.card, keeper.day(s.start_wall))
                    quota_left = card.daily_kwh * 1000.0 - used
                # A card blocked while it charges (lost or stolen) charges no further, however
                # the block came (the staff command line, the central list): a staff stop.
                blocked = card is not None and card.status == "blocked"
            unknown = s is not None and s.counter_start is None
            reason = m.observe(now, obs.get(bay), quota_left)
            if reason is None and blocked:
                reason = Reason.STAFF_STOP
            if reason is not None:
                self._end(m, reason, now, wall)
            elif s is not None and now - s.last_checkpoint >= every:
                keeper.checkpoint(s, now, wall)
            keeper.settled(m.take_settled(now))
            if unknown and m.session is s and s is not None and s.counter_start is not None:
                # The start counter just became known (a held session released, a device that
                # answers again): write it down now, not a checkpoint interval later, or a
                # restart would start the session over from the counter it finds then.
                keeper.checkpoint(s, now, wall)

    def _sample_curves(self, now: float, wall: float, obs: Mapping[str, BayObservation]) -> None:
        """This tick's power and temperature into the running sessions' curves (before the
        rules: the tick belongs to the session that ran through it); the finished minutes to
        the ledger; once an hour, on a synchronized wall clock, the old curves pruned."""
        n = len(self._bays)
        running = [m.session for m in self._bays.values()]
        seen = [obs.get(b) for b in self._bays]
        nan = math.nan
        rows = self._curves.tick(
            now,
            np.fromiter((-1 if s is None else s.id for s in running), np.int64, n),
            np.fromiter((nan if s is None else s.start_now for s in running), np.float64, n),
            np.fromiter(
                (nan if o is None or (w := o.power) is None else w for o in seen), np.float64, n
            ),
            np.fromiter(
                (nan if o is None or o.temp_c is None else o.temp_c for o in seen), np.float64, n
            ),
        )
        for row in rows:
            self._ledger.record(row)
        if self._keeper.wall_ok:
            prune = self._curves.prune(now, wall)
            if prune is not None:
                self._ledger.record(prune)

    def staff_stop(self, bay: str, now: float, wall: float) -> bool:
        """End the bay's session as `staff_stop`; False when none runs there."""
        m = self._machine(bay)
        self._require_restored(now, wall)
        if m.session is None:
            return False
        self._end(m, Reason.STAFF_STOP, now, wall)
        return True

    def flag_card(self, flag: CardFlag) -> None:
        """Mark a card in the ledger (a critical fire-risk finding cut its session's bay), so
        staff speak to its resident; the mark stays until staff clear it."""
        self._ledger.record(flag)

    # ----- read-outs -----
    def demand(self) -> Mapping[str, BayDemand]:
        return {bay: m.demand() for bay, m in self._bays.items()}

    def lamp(self, bay: str) -> Lamp:
        return self._machine(bay).lamp()

    def session_at(self, bay: str) -> Session | None:
        """The bay's running session (read it, do not change it)."""
        return self._machine(bay).session

    def readout(self) -> SessionReadout:
        sessions = [m.session for m in self._bays.values() if m.session is not None]
        charging = sum(1 for s in sessions if s.relay_closed)
        return SessionReadout(
            active=len(sessions),
            waiting=len(sessions) - charging,
            charging=charging,
            ended_total=dict(self._keeper.ended_total),
            taps_total=dict(self._keeper.taps_total),
            counter_anomalies=sum(m.counter_anomalies for m in self._bays.values()),
            counter_resets=sum(m.guard.rebases for m in self._bays.values()),
            taps_repeated=self._debounce.repeats,
            clock_synced=self._keeper.wall_ok,
        )

    def drain_events(self) -> SessionEvents:
        return self._keeper.drain()

    # ----- internals -----
    def _machine(self, bay: str) -> BayMachine:
        try:
            return self._bays[bay]
        except KeyError:
            raise UnknownBay(f"unknown bay {bay!r}") from None

    def _require_restored(self, now: float, wall: float) -> None:
        if not self._restored:
            raise SessionsError("SessionManager.restore() must run before the first tick")
        if self._unanchored:
            self._unanchored = False
            for m in self._bays.values():
                s = m.session
                if s is not None and math.isnan(s.start_now):
                    s.start_now = now - s.resumed_elapsed_s
                    s.last_checkpoint = now
                if math.isnan(m.guard.since):
                    m.guard.since = now - self._down.get(m.bay, 0.0)
                if m.ended is not None and math.isnan(m.ended.until):
                    m.ended.until = now + self._settings.settle_s

    def _tap(
        self,
        m: BayMachine,
        uid: str,
        outcome: TapOutcome,
        sid: int | None,
        *,
        now: float,
        wall: float,
    ) -> TapResult:
        if outcome is not TapOutcome.STARTED:  # start() shows "accepted" itself
            m.flash(Lamp.ACCEPTED if outcome is TapOutcome.STOPPED else Lamp.REJECTED, now)
        self._keeper.tap(m.bay, uid, outcome, sid, wall)
        return TapResult(m.bay, uid, outcome, sid)

    def _end(
        self, m: BayMachine, reason: Reason, now: float, wall: float, *, hand_over: bool = False
    ) -> int | None:
        """End the bay's session. `hand_over`: for another card's (BayMachine.hand_over);
        returns the counter the next session starts from, when the boundary is known."""
        self._keeper.settled(m.take_settled(now, force=True))  # a held session's predecessor
        row = self._curves.close(self._slot[m.bay])  # its partial last minute
        if row is not None:
            self._ledger.record(row)
        s = m.session
        at = m.hand_over(now) if hand_over else None
        e = m.ended if hand_over else m.end(reason, now)
        assert e is not None and s is not None
        self._keeper.ended(e.session, reason, now, wall)
        if at is not None:  # final now: the readings from here on are the next card's
            self._keeper.settled(m.take_settled(now, force=True))
        return at
