"""The live watch: every running session's curve built tick by tick, and checked as it grows.

`FireWatch` is pure: each call is handed `now` (the monotonic clock the sessions' starts are
on) and, per bay, the running session (or None), the tick's power (the power the session rules
use: the device's own, else current x voltage; NaN without a reading) and socket temperature
(NaN where the pile reports none). No clock, no I/O.

Two paths, because the detectors' signs come at two speeds:
- the hard thresholds, on the tick's own values every tick: power at or above
  `over_power_critical_w`, a socket at or above `temp_critical_c`. Either is critical at
  once, so the tick that sees it can cut the socket (issue 12: within one tick). The pile's
  power reading is up to a slow poll old; with the tick's current x voltage (`va`) the power
  judged is also that at the lowest power factor the session has shown (`_Track.power_now`):
  a heater or a modified pack joining a running charger is seen in the tick its current is;
- the curve detectors (`check`), once per completed minute per session, on the session's
  per-minute curve so far (at most `max_minutes`; a minute without ticks is a gap); at most
  `checks_per_tick` sessions a tick, the others in the next ticks in turn.

Each (kind, severity) is reported once per session: `tick` returns only findings not reported
before for that session. A new session at a bay starts a new curve.

The pile's own protection: per bay, the pile's fault code (FAULT_OVER_POWER, FAULT_OVER_TEMP
latch when the pile cuts a socket; -1 while the bay is not read). A code that latches is one
cut, named after the session running there, or the one that ran there the tick before (the
sessions' rules end a cut session in the tick that sees the fault, before the watch runs).
Each cut that completes `cuts_per_day` within `cuts_window_s` at a socket is a
`repeated_protection_cuts` finding (`detectors.repeated_protection_cuts`). The cuts are kept in
memory: a restart forgets them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from chargectl.firewatch.curve import MINUTE_S, Curve
from chargectl.firewatch.detectors import (
    Finding,
    Kind,
    ProtectionCut,
    Severity,
    check,
    repeated_protection_cuts,
)
from chargectl.firewatch.settings import FirewatchSettings

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
MAX_MINUTES = 720  # 12 h: the longest session the sessions layer allows by default
# Curve checks per tick at most (`check` on a 12 h curve takes about 2 ms): sessions whose
# minutes end in one tick (tapped together) are checked over the next ticks, in turn, so a
# tick of a 200-socket shed never holds 200 checks. A minute's check waits at most
# ceil(sockets / CHECKS_PER_TICK) ticks.
CHECKS_PER_TICK = 8
# Every (kind, severity) the live watch can report (the curve detectors, the hard thresholds
# and the pile's repeated cuts): the metric's series.
LIVE_FINDINGS: tuple[tuple[Kind, Severity], ...] = (
    (Kind.NO_TAPER, Severity.WARNING),
    (Kind.NO_TAPER, Severity.CRITICAL),
    (Kind.ENERGY_BEYOND_PACK, Severity.WARNING),
    (Kind.ENERGY_BEYOND_PACK, Severity.CRITICAL),
    (Kind.RISE_AFTER_TAPER, Severity.CRITICAL),
    (Kind.OVER_POWER, Severity.WARNING),
    (Kind.OVER_POWER, Severity.CRITICAL),
    (Kind.SOCKET_HEAT, Severity.WARNING),
    (Kind.SOCKET_HEAT, Severity.CRITICAL),
    (Kind.ERRATIC_POWER, Severity.WARNING),
    (Kind.REPEATED_PROTECTION_CUTS, Severity.WARNING),
    (Kind.REPEATED_PROTECTION_CUTS, Severity.CRITICAL),
)
# The pile's fault codes that are a cut by its own protection (chargectl.control.observe:
# FAULT_OVER_POWER, FAULT_OVER_TEMP; ../shared/hardware/pile.md, port_state bits 8..15).
CUT_CODES = {1: "over_power", 2: "over_temp"}
UNREAD = -1  # a fault code while the bay is not read: the last one read stands
# The hard over-power threshold between the pile's slow power readings: the tick's current x
# voltage at the session's lowest power factor seen (chargers: 0.5..0.99, a heater 1).
PF_FLOOR = 0.45
MIN_VA = 20.0


@dataclass(frozen=True, slots=True)
class Running:
    """The session running at a bay, as the watch needs it."""

    session_id: str
    card: str  # the card's UID, hex
    start_s: float  # its start on the clock `now` is on


@dataclass(slots=True)
class _Track:
    """One session's curve so far and the minute in progress."""

    session: Running
    bay: str
    limit: int
    t: FloatArray = field(init=False)
    mean_w: FloatArray = field(init=False)
    peak_w: FloatArray = field(init=False)
    temp_c: FloatArray = field(init=False)
    n: int = 0  # completed minutes kept
    minute: int = -1  # the minute in progress
    ticks: int = 0
    sum_w: float = 0.0
    max_w: float = -math.inf
    temps: int = 0
    sum_c: float = 0.0
    reported: set[tuple[Kind, Severity]] = field(default_factory=set)
    due: bool = False  # a minute was added and the curve is not checked since
    pf: float = math.inf  # the lowest power factor seen at a fresh power reading
    last_w: float = math.nan  # the power of the last tick (a change: a fresh reading)

    def power_now(self, w: float, va: float, off_w: float) -> float:
        """The tick's power for the hard threshold: the reading `w` (up to a slow poll old),
        or the tick's current x voltage at the lowest power factor the session has shown,
        whichever is higher. A reading that changed is fresh (read with this tick's `va`):
        its ratio to `va` is a power factor seen. Below PF_FLOOR (no charger's) the ratio is
        a glitch of timing and the estimate is not used."""
        # (w == va: the rules' fallback to current x voltage, no power reading at all)
        fresh = math.isfinite(w) and w not in (self.last_w, va)
        if fresh and w > off_w and va > MIN_VA:
            self.pf = min(self.pf, w / va, 1.0)
        self.last_w = w
        if not (math.isfinite(va) and PF_FLOOR <= self.pf <= 1.0):
            return w
        est = va * self.pf
        return est if not math.isfinite(w) or est > w else w

    def __post_init__(self) -> None:
        self.t = np.zeros(self.limit)
        self.mean_w = np.zeros(self.limit)
        self.peak_w = np.zeros(self.limit)
        self.temp_c = np.full(self.limit, np.nan)

    def close_minute(self) -> bool:
        """The minute in progress into the curve; True when a minute was added."""
        if self.ticks == 0 or self.n >= self.limit:
            return False
        i = self.n
        self.t[i] = self.minute * MINUTE_S
        self.mean_w[i] = self.sum_w / self.ticks
        self.peak_w[i] = self.max_w
        self.temp_c[i] = self.sum_c / self.temps if self.temps else math.nan
        self.n += 1
        self.ticks, self.sum_w, self.max_w, self.temps, self.sum_c = 0, 0.0, -math.inf, 0, 0.0
        return True

    def curve(self) -> Curve:
        n = self.n
        return Curve(
            self.session.session_id,
            self.bay,
            self.session.card,
            self.t[:n].copy(),
            self.mean_w[:n].copy(),
            self.peak_w[:n].copy(),
            self.temp_c[:n].copy(),
            MINUTE_S,
        )


class FireWatch:
    def __init__(
        self,
        bays: Sequence[str],
        settings: FirewatchSettings,
        *,
        max_minutes: int = MAX_MINUTES,
        checks_per_tick: int = CHECKS_PER_TICK,
    ) -> None:
        self.bays = tuple(bays)
        self.settings = settings
        self.max_minutes = max_minutes
        self.checks_per_tick = checks_per_tick
        self._next_check = 0  # the bay the round of due checks starts from
        self._tracks: list[_Track | None] = [None] * len(self.bays)
        self._fault: IntArray | None = None  # the last fault code read per bay
        self._cuts: list[ProtectionCut] = []  # within cuts_window_s of the latest

    def tick(
        self,
        now: float,
        running: Sequence[Running | None],  # [B]
        power_w: FloatArray,  # [B] W, NaN without a reading
        temp_c: FloatArray,  # [B] C, NaN where none is reported
        *,
        fault: IntArray | None = None,  # [B] the pile's fault code, UNREAD where not read
        va: FloatArray | None = None,  # [B] the tick's current x voltage, NaN without
    ) -> list[Finding]:
        """Take one tick; return the findings not reported before: the pile's repeated cuts
        first, then per bay the hard thresholds, then the curve's."""
        if len(running) != len(self.bays):
            raise ValueError(f"running: {len(running)} bays, the watch has {len(self.bays)}")
        new: list[Finding] = [] if fault is None else self._protection_cuts(now, running, fault)
        for j, run in enumerate(running):
            track = self._tracks[j]
            if run is None:
                self._tracks[j] = None
                continue
            if track is None or track.session != run:
                track = _Track(run, self.bays[j], self.max_minutes)
                self._tracks[j] = track
            age = now - run.start_s
            if not age >= 0.0:  # NaN or a start in the future: nothing to place the tick in
                continue
            w, c = float(power_w[j]), float(temp_c[j])
            now_w = w if va is None else track.power_now(w, float(va[j]), self.settings.off_w)
            how = "" if now_w == w else f" (current x voltage at power factor {track.pf:.2f})"
            found = self._hard(track, age, now_w, c, how)
            minute = int(age // MINUTE_S)
            if minute != track.minute:
                track.due |= track.close_minute()
                track.minute = minute
            if math.isfinite(w):
                track.ticks += 1
                track.sum_w += w
                track.max_w = max(track.max_w, w)
                if math.isfinite(c):
                    track.temps += 1
                    track.sum_c += c
            new.extend(self._news(track, found))
        return new + self._checks()

    def _checks(self) -> list[Finding]:
        """The curve detectors on the due sessions, at most `checks_per_tick`, in turn."""
        out: list[Finding] = []
        n, done = len(self._tracks), 0
        for k in range(n):
            j = (self._next_check + k) % n
            track = self._tracks[j]
            if track is None or not track.due:
                continue
            if done == self.checks_per_tick:
                self._next_check = j
                return out
            track.due = False
            done += 1
            out.extend(self._news(track, check(track.curve(), self.settings)))
        return out

    @staticmethod
    def _news(track: _Track, found: list[Finding]) -> list[Finding]:
        """Each (kind, severity) once per session."""
        out = []
        for f in found:
            key = (f.kind, f.severity)
            if key not in track.reported:
                track.reported.add(key)
                out.append(f)
        return out

    def _protection_cuts(
        self, now: float, running: Sequence[Running | None], fault: IntArray
    ) -> list[Finding]:
        """The cuts that latched since the last tick; a finding for each that completes the
        count at its socket (before the tracks move on: a cut session ended this tick)."""
        codes = np.asarray(fault, dtype=np.int64)
        if codes.shape != (len(self.bays),):
            raise ValueError(f"fault: shape {codes.shape}, the watch has {len(self.bays)} bays")
        last = self._fault
        self._fault = np.where(codes == UNREAD, UNREAD if last is None else last, codes)
        if last is None:  # the first reading: faults latched before the watch are no news
            return []
        out: list[Finding] = []
        for j in map(int, np.flatnonzero((codes != last) & (codes != UNREAD) & (last != UNREAD))):
            reason = CUT_CODES.get(int(codes[j]))
            if reason is None:
                continue
            track = self._tracks[j]
            run = running[j] or (None if track is None else track.session)
            sid, card = ("", "") if run is None else (run.session_id, run.card)
            at = 0.0 if run is None else max(0.0, now - run.start_s)
            cut = ProtectionCut(now, self.bays[j], sid, card, at, reason)
            window = self.settings.cuts_window_s
            self._cuts = [c for c in self._cuts if now - c.t_s < window]
            self._cuts.append(cut)
            recent = [c for c in self._cuts if c.bay == cut.bay][-self.settings.cuts_per_day :]
            # The latest cuts_per_day: a finding only when this cut completes the count.
            out.extend(repeated_protection_cuts(recent, self.settings))
        return out

    def _hard(self, track: _Track, age: float, w: float, c: float, how: str) -> list[Finding]:
        s = self.settings
        out = []
        if math.isfinite(w) and w >= s.over_power_critical_w:
            seen = (
                f"{w:,.0f} W at the socket{how}, far above any e-bike charger (critical at "
                f"{s.over_power_critical_w:,.0f} W)"
            )
            out.append(self._finding(track, Kind.OVER_POWER, age, seen))
        if math.isfinite(c) and c >= s.temp_critical_c:
            seen = f"socket at {c:.1f} C (critical at {s.temp_critical_c:.0f} C)"
            out.append(self._finding(track, Kind.SOCKET_HEAT, age, seen))
        return out

    @staticmethod
    def _finding(track: _Track, kind: Kind, age: float, seen: str) -> Finding:
        run = track.session
        return Finding(kind, Severity.CRITICAL, run.session_id, track.bay, run.card, age, age, seen)
