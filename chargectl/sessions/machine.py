"""One bay's session state machine: pure, handed the time, no I/O.

    idle --tap (card ok)--> open: waiting (relay open, lamp yellow) <-> charging (relay closed,
    lamp blue) --a stop rule--> ended (settling) --> idle

A session's energy is always `counter_last - counter_start` of the bay's own lifetime counter
(u32, wraps), never an integral of power: a restart re-reads the counter, so nothing is lost
and nothing is counted twice. Power is used only to decide when to stop.

Power rules look at relay-closed time only (a waiting session has no load to judge) and at
10-second averages rather than single readings, so an inrush spike or one noisy reading
neither sets the peak nor resets the full-charge timer, and a bay "had load" only once every
10-second average stayed above `load_w` for `load_sustain_s`. Power is the device's active
power (W) where it reports one, else current x voltage (VA).

Counter readings pass a `CounterGuard` first (counterguard.py): a step the bay's power could
not have made is set aside and never billed; a counter that was really reset ends the running
session as `fault` with what it had billed.

Time is monotonic: a session's age is `now - start_now`, and a restart resumes it from the
elapsed seconds the ledger checkpointed, never from wall time.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

from chargectl.config.schema import SessionSettings
from chargectl.sessions.counterguard import CounterGuard, Verdict
from chargectl.sessions.records import U32, EndedRecord, OpenSession, counter_delta


class Lamp(IntEnum):
    """The indicator register's values (pile.md, evse.md)."""

    OFF = 0
    AVAILABLE = 1
    CHARGING = 2
    WAITING = 3
    FAULT = 4
    REJECTED = 5
    ACCEPTED = 6
    COMPLETE = 7


class Reason(StrEnum):
    """Why a session ended: the `reason` label of chargectl_sessions_total."""

    USER_STOP = "user_stop"
    FULL = "full"
    UNPLUGGED = "unplugged"
    NO_LOAD = "no_load"
    MAX_DURATION = "max_duration"
    QUOTA = "quota"
    OVER_POWER = "over_power"
    OVER_TEMP = "over_temp"
    FAULT = "fault"
    EMERGENCY = "emergency"
    STAFF_STOP = "staff_stop"


FAULT_REASONS = {"over_power": Reason.OVER_POWER, "over_temp": Reason.OVER_TEMP}


@dataclass(frozen=True, slots=True)
class BayObservation:
    """What the controller saw of one bay this tick."""

    relay_closed: bool  # contact feedback: the controller planned it on and it closed
    # The device's own active power (a pile's port_power, a wallbox's power register); None
    # when it reports none or the reading is not fresh.
    power_w: float | None
    energy_wh: int | None  # the bay's lifetime counter (u32, may wrap); None if unknown
    fault: str | None  # "over_power", "over_temp", "fault" (welded, short, ...) or None
    emergency: bool  # smoke or emergency stop anywhere in the shed
    plugged: bool | None = None  # wallbox: a vehicle is connected; None for sockets
    # Current x voltage (VA): the stop rules use it only when `power_w` is None.
    va: float | None = None
    temp_c: float | None = None  # the socket's temperature (C); None where none is reported

    @property
    def power(self) -> float | None:
        """What the stop rules judge: active power where reported, else VA."""
        return self.power_w if self.power_w is not None else self.va


@dataclass(frozen=True, slots=True)
class BayDemand:
    wants_current: bool  # a waiting or charging session is open
    credit_wh: int  # energy delivered in the session so far
    lamp: Lamp


@dataclass(frozen=True, slots=True)
class Timings:
    """Settings the issue leaves open. `SessionSettings` may grow these fields; until then the
    defaults here apply (read with getattr so adding them to config.py needs no change here)."""

    tap_lamp_s: float = 4.0  # "card rejected" / "card accepted" lamp
    complete_lamp_s: float = 600.0  # "charge complete" lamp after `full`
    load_w: float = 5.0  # above this a charger is drawing (the pile's 20 mA "load present")
    settle_s: float = 30.0  # an ended session still takes counter readings this long
    max_sample_s: float = 10.0  # one reading never stands for more than this (a stalled tick)
    bucket_s: float = 10.0  # power averaging interval of the stop rules
    load_sustain_s: float = 30.0  # every bucket above load_w this long: the bay had load
    counter_confirm_s: float = 60.0  # a counter's new series this long: it was reset

    @classmethod
    def from_settings(cls, s: SessionSettings) -> Timings:
        d = cls()
        return cls(
            tap_lamp_s=float(s.tap_lamp_s),
            complete_lamp_s=float(s.complete_lamp_s),
            load_w=float(s.load_w),
            settle_s=float(s.settle_s),
            max_sample_s=d.max_sample_s,
            # at least ten buckets per unplugged window, so the average slides smoothly
            bucket_s=min(d.bucket_s, s.unplugged_window_s / 10.0),
            load_sustain_s=float(s.load_sustain_s),
            counter_confirm_s=float(s.counter_confirm_s),
        )

    def sustained(self, run_s: float) -> bool:
        """A run of buckets above a threshold is long enough to count (at least one bucket)."""
        return run_s >= max(self.load_sustain_s, self.bucket_s) - 1e-9


class PowerWindow:
    """Time-weighted power averages in fixed buckets, over a sliding window."""

    def __init__(self, bucket_s: float, window_s: float) -> None:
        self.bucket_s = bucket_s
        self.window_s = window_s
        self._done: deque[tuple[float, float]] = deque()  # (watt-seconds, seconds)
        self._ws = 0.0  # sums over _done
        self._s = 0.0
        self._cur_ws = 0.0
        self._cur_s = 0.0

    def add(self, dt: float, power_w: float) -> tuple[float, float] | None:
        """Add a reading held for dt; return (average W, seconds) of a bucket it completed."""
        self._cur_ws += power_w * dt
        self._cur_s += dt
        if self._cur_s < self.bucket_s:
            return None
        done = (self._cur_ws, self._cur_s)
        self._cur_ws = self._cur_s = 0.0
        self._done.append(done)
        self._ws += done[0]
        self._s += done[1]
        while self._done and self._s - self._done[0][1] >= self.window_s:
            ws, s = self._done.popleft()
            self._ws -= ws
            self._s -= s
        return done[0] / done[1], done[1]

    def average(self) -> float | None:
        """Mean power over at least the whole window, or None until that much time is seen."""
        if self._s < self.window_s or self._s <= 0:
            return None
        return self._ws / self._s


@dataclass(slots=True)
class Session:
    """A running session (mutable: the machine advances it every tick)."""

    id: int
    card: str
    bay: str
    start_wall: float
    start_now: float  # the same instant on the monotonic clock
    counter_start: int | None
    counter_last: int | None
    window: PowerWindow
    peak_w: float = 0.0  # highest 10-s average
    closed_s: float = 0.0
    had_load: bool = False  # a sustained load above load_w
    had_first_load: bool = False  # a sustained load of no_load_first_w
    load_run_s: float = 0.0  # consecutive buckets above load_w (not checkpointed)
    first_run_s: float = 0.0  # consecutive buckets at or above no_load_first_w
    low_s: float = 0.0
    topup_s: float | None = None
    relay_closed: bool = False
    seen_plugged: bool = False
    last_checkpoint: float = 0.0  # monotonic
    clock_ok: bool = True  # False: start_wall is provisional (wall clock not synchronized)
    resumed_elapsed_s: float = 0.0  # the ledger's elapsed time when it was resumed
    # The charger has been seen without a break since its load began: the relay closed and
    # every reading at or above `unplugged_w` all along. A pause (relay open) or one reading
    # without load breaks it for good: a charger may have been unplugged and another plugged
    # in meanwhile (a swap within one tick's reading is not seen).
    unbroken: bool = False
    # The bay's counter as read at the latest tick with no load flowing once the load had
    # begun (relay open, or no current): where a takeover puts the boundary between cards.
    quiet_counter: int | None = None

    @property
    def energy_wh(self) -> int:
        return counter_delta(self.counter_start, self.counter_last)

    def elapsed_s(self, now: float) -> float:
        return max(0.0, now - self.start_now)


@dataclass(slots=True)
class Ended:
    """A session that has ended and still takes counter readings for `settle_s`."""

    session: Session
    reason: Reason
    until: float
    energy_at_end: int
    moved: bool = False
    frozen: bool = False  # the counter was re-based: no more readings settle onto it


@dataclass
class BayMachine:
    bay: str
    settings: SessionSettings
    timings: Timings
    session: Session | None = None
    ended: Ended | None = None
    last_counter: int | None = None
    fault: str | None = None
    emergency: bool = False
    overlay: Lamp | None = None
    overlay_until: float = 0.0
    complete_until: float = 0.0
    last_now: float | None = None
    max_power_w: float | None = None  # the most the bay can draw (counter plausibility)
    guard: CounterGuard = field(init=False)
    counter_reset: bool = False  # the counter was re-based under a session that counts
    plugged: bool | None = None  # a wallbox's vehicle connected (None: a socket cannot tell)
    _now: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self.guard = CounterGuard(self.bay, self.max_power_w, self.timings.counter_confirm_s)

    @property
    def counter_anomalies(self) -> int:
        """Readings set aside (implausible steps, values out of range)."""
        return self.guard.anomalies

    # ----- transitions the manager drives -----
    def start(
        self, session_id: int, card: str, now: float, wall: float, clock_ok: bool = True
    ) -> Session:
        """Open a session. While the bay's previous session is still settling, the new one is
        held (waiting, relay open) until the settle time is over: the counter the controller
        last read may be a slow poll old, and the energy that flowed before the relay opened
        belongs to the previous card. The held session starts from the counter as it is then.
        """
        if self.session is not None:
            raise RuntimeError(f"bay {self.bay} already has session {self.session.id}")
        counter = None if self.ended is not None else self.last_counter
        self.session = Session(
            id=session_id,
            card=card,
            bay=self.bay,
            start_wall=wall,
            start_now=now,
            counter_start=counter,
            counter_last=counter,
            window=self._window(),
            last_checkpoint=now,
            clock_ok=clock_ok,
        )
        self.complete_until = 0.0
        self.flash(Lamp.ACCEPTED, now)
        return self.session

    def resume(self, rec: OpenSession, now: float) -> Session:
        """Reopen a session the ledger holds as running (after a restart). Its age goes on
        from the elapsed seconds of its last checkpoint: the time the daemon was down is not
        counted (wall time cannot be trusted across a restart)."""
        elapsed = max(0.0, rec.elapsed_s or 0.0)
        self.session = Session(
            id=rec.id,
            card=rec.card,
            bay=self.bay,
            start_wall=rec.start,
            start_now=now - elapsed,
            counter_start=rec.counter_start,
            counter_last=rec.counter_last,
            window=self._window(),
            peak_w=rec.peak_w,
            closed_s=rec.closed_s,
            had_load=rec.had_load,
            # Past the first-load window it has passed that rule, or it would have ended.
            had_first_load=rec.had_first_load or rec.closed_s >= self.settings.no_load_first_s,
            low_s=rec.low_s,
            topup_s=rec.topup_s,
            seen_plugged=rec.had_load,
            last_checkpoint=now,
            clock_ok=rec.clock_ok,
            resumed_elapsed_s=elapsed,
        )
        return self.session

    def reopen_ended(self, rec: EndedRecord, reason: Reason, until: float) -> None:
        """Settle again a session that ended shortly before a restart: the daemon may have
        stopped before the counter reading that completes it (read every slow poll)."""
        if self.session is not None or self.ended is not None:
            raise RuntimeError(f"bay {self.bay} is busy: cannot reopen session {rec.id}")
        s = Session(
            id=rec.id,
            card=rec.card,
            bay=self.bay,
            start_wall=rec.start,
            start_now=math.nan,  # it has ended: its timers are not used again
            counter_start=rec.counter_start,
            counter_last=rec.counter_last,
            window=self._window(),
        )
        self.ended = Ended(s, reason, until, rec.energy_wh)

    def take_reading(self, reading: int | None, now: float) -> None:
        """A counter reading outside a tick (the one taken at start-up)."""
        self._take_counter(reading, now)

    def hand_over(self, now: float) -> int | None:
        """End the running session for another card's (SessionManager.on_tap): at once, at
        the counter read while no load flowed since its charger left (when there is one), so
        that what the next charger drew before its card was tapped is not the old card's.
        Returns that counter (the next session starts from it), or None: the old session ends
        as `end` ends it and settles as usual."""
        s = self.session
        q = None if s is None else s.quiet_counter
        if s is None or q is None or s.counter_start is None:
            self.end(Reason.UNPLUGGED, now)
            return None
        if counter_delta(s.counter_start, q) <= counter_delta(s.counter_start, s.counter_last):
            s.counter_last = q
        self.end(Reason.UNPLUGGED, now)
        assert self.ended is not None
        self.ended.frozen = True  # no later reading settles onto it: they are the next card's
        self.ended.energy_at_end = s.energy_wh
        return q

    def end(self, reason: Reason, now: float) -> Ended:
        s = self.session
        if s is None:
            raise RuntimeError(f"bay {self.bay} has no session to end")
        if self.ended is not None:
            raise RuntimeError(f"bay {self.bay}: session {self.ended.session.id} still settling")
        self.session = None
        # After a counter reset no reading may settle onto it: they are of another series.
        frozen, self.counter_reset = self.counter_reset, False
        self.ended = Ended(s, reason, now + self.timings.settle_s, s.energy_wh, frozen=frozen)
        if reason is Reason.FULL:
            self.complete_until = now + self.timings.complete_lamp_s
        return self.ended

    def take_settled(self, now: float, force: bool = False) -> Ended | None:
        """The ended session once its settle time is over (or at once with `force`)."""
        if self.ended is None or (not force and now < self.ended.until):
            return None
        done, self.ended = self.ended, None
        s = self.session
        if s is not None and s.counter_start is None:
            s.counter_start = s.counter_last = self.last_counter  # a held session starts now
        return done

    @property
    def shows_its_charger(self) -> bool:
        """The running session's own charger is evidently at the bay: at a socket, drawing now
        without a break since its load began, or tapped less than the unplugged window ago and
        not drawing yet; at a wallbox, its vehicle connected (or not yet come). Otherwise
        another card tapped here takes the bay over (SessionManager.on_tap): a socket holds
        one plug."""
        s = self.session
        if s is None:
            return False
        if self.plugged is not None:
            # A wallbox sees its vehicle: had it left, the session would have ended unplugged.
            return self.plugged or not s.seen_plugged
        if not s.had_load:
            # Just tapped: its charger is plugged in. One that never drew for the unplugged
            # window is no evidence any more.
            return self._now - s.start_now < self.settings.unplugged_window_s
        return s.relay_closed and s.unbroken

    @property
    def held(self) -> bool:
        """A session is open but waits for the previous one to settle."""
        return self.session is not None and self.ended is not None

    def flash(self, lamp: Lamp, now: float) -> None:
        self._now = max(self._now, now)
        self.overlay, self.overlay_until = lamp, now + self.timings.tap_lamp_s

    # ----- one tick -----
    def observe(
        self, now: float, obs: BayObservation | None, quota_left_wh: float | None
    ) -> Reason | None:
        """Take this tick's observation; return why the session must end, if it must."""
        dt = 0.0
        if self.last_now is not None:
            dt = min(max(0.0, now - self.last_now), self.timings.max_sample_s)
        self.last_now = self._now = now
        if obs is not None:
            self.fault, self.emergency = obs.fault, obs.emergency
            self.plugged = obs.plugged
            self._take_counter(obs.energy_wh, now)
            if obs.plugged is False and self.complete_until > now:
                self.complete_until = 0.0  # the charger is unplugged: no more "complete" lamp
        s = self.session
        if s is None:
            return None
        if obs is not None:
            s.relay_closed = obs.relay_closed
            if not obs.relay_closed:
                s.unbroken = False
        if self.emergency:
            return Reason.EMERGENCY
        if self.fault is not None:
            return FAULT_REASONS.get(self.fault, Reason.FAULT)
        if self.counter_reset:
            return Reason.FAULT  # what it billed stays; the new counter is the next session's
        if obs is not None and obs.plugged is not None:
            s.seen_plugged = s.seen_plugged or obs.plugged
            # A car may be plugged in after the tap: give it the unplugged window to arrive.
            patience_over = now - s.start_now >= self.settings.unplugged_window_s
            if not obs.plugged and (s.seen_plugged or patience_over):
                return Reason.UNPLUGGED
        if quota_left_wh is not None and s.energy_wh >= quota_left_wh:
            return Reason.QUOTA
        if now - s.start_now >= self.settings.max_duration_s:
            return Reason.MAX_DURATION
        power = None if obs is None else obs.power
        if obs is not None and s.had_load:
            # The freshest sign of a swap: this tick's current x voltage (a device's active
            # power may be a slow poll old, its last value standing in meanwhile).
            fresh = obs.va if obs.va is not None else power
            quiet = not obs.relay_closed or (
                fresh is not None and fresh < self.settings.unplugged_w
            )
            if quiet:
                s.unbroken = False
                if obs.energy_wh is not None and self.counter_reset is False:
                    s.quiet_counter = obs.energy_wh
        if obs is None or not obs.relay_closed or power is None or dt <= 0:
            return None
        return self._power_rules(s, dt, power)

    def _power_rules(self, s: Session, dt: float, power_w: float) -> Reason | None:
        cfg, t = self.settings, self.timings
        s.closed_s += dt
        bucket = s.window.add(dt, power_w)
        if bucket is not None:
            avg, secs = bucket
            # "Had load" on a sustained run of 10-s averages, so one inrush never counts.
            s.load_run_s = s.load_run_s + secs if avg > t.load_w else 0.0
            if not s.had_load and t.sustained(s.load_run_s):
                s.had_load = s.unbroken = True
            if avg < cfg.unplugged_w:
                s.unbroken = False
            s.first_run_s = s.first_run_s + secs if avg >= cfg.no_load_first_w else 0.0
            s.had_first_load = s.had_first_load or t.sustained(s.first_run_s)
        if bucket is not None and s.topup_s is None:
            avg, secs = bucket
            s.peak_w = max(s.peak_w, avg)
            if avg <= max(cfg.full_power_w, cfg.full_fraction * s.peak_w):
                s.low_s += secs
                if s.low_s >= cfg.full_hold_s:
                    s.topup_s = 0.0
            else:
                s.low_s = 0.0
        elif s.topup_s is not None:
            s.topup_s += dt
        # A load needs load_sustain_s (and a bucket) to show: never judge before that.
        judge_after = t.load_sustain_s + t.bucket_s
        if not s.had_load and s.closed_s >= max(cfg.no_load_s, judge_after):
            return Reason.NO_LOAD
        first_s = cfg.no_load_first_s
        if first_s > 0 and not s.had_first_load and s.closed_s >= max(first_s, judge_after):
            return Reason.NO_LOAD  # the piles' "under 30 W for the first 30 min"
        avg_w = s.window.average()
        if avg_w is not None and avg_w < cfg.unplugged_w:
            return Reason.UNPLUGGED
        if s.topup_s is not None and s.topup_s >= cfg.full_topup_s:
            return Reason.FULL
        return None

    def _take_counter(self, reading: int | None, now: float) -> None:
        if reading is None:
            return
        if not 0 <= reading < U32:
            self.guard.note_invalid(reading)
            return
        verdict = self.guard.take(reading, now)
        if verdict is Verdict.SET_ASIDE:
            return
        s = self.session
        if verdict is Verdict.REBASED:
            # A reset or replaced counter: nothing is billed across the jump. An ended session
            # keeps what it had; a running one that counts ends (observe) with what it had.
            if self.ended is not None:
                self.ended.frozen = True
            if s is not None and self.ended is None:
                if s.counter_start is None:
                    s.counter_start = s.counter_last = reading
                else:
                    self.counter_reset = True
            self.last_counter = reading
            return
        if s is not None and self.ended is None:
            if s.counter_start is None:
                s.counter_start = reading  # unknown at the tap: the first reading starts it
            s.counter_last = reading
        elif self.ended is not None and not self.ended.frozen:
            e = self.ended.session
            # Settle only against a known counter (the guard believes forward steps only).
            if e.counter_last is not None and reading != e.counter_last:
                e.counter_last, self.ended.moved = reading, True
        self.last_counter = reading

    # ----- read-outs -----
    def lamp(self) -> Lamp:
        now = self._now
        if self.overlay is not None and now < self.overlay_until:
            return self.overlay
        if self.emergency or self.fault is not None:
            return Lamp.FAULT
        if self.session is not None:
            return Lamp.CHARGING if self.session.relay_closed else Lamp.WAITING
        if now < self.complete_until:
            return Lamp.COMPLETE
        return Lamp.AVAILABLE

    def demand(self) -> BayDemand:
        s = self.session
        return BayDemand(
            wants_current=s is not None and self.ended is None,
            credit_wh=0 if s is None else s.energy_wh,
            lamp=self.lamp(),
        )

    def _window(self) -> PowerWindow:
        return PowerWindow(self.timings.bucket_s, self.settings.unplugged_window_s)
