"""The fire-risk detectors: pure functions of one session's curve and the settings.

No clock and no I/O: a curve in, findings out, so the same code runs on a live session each
tick, on a stored session, and in replays. Each detector reports, per severity, the first time
its sign was seen (`since_s`: where the sign became certain) and when the curve showed it
(`detected_s`: the end of the sample that completed it), both in seconds from the session's
start. A later, worse sign is a second finding of the same kind. What each one watches, why,
and what it cannot see: docs/firewatch.md.

Severities: over-power or socket heat at the critical level or rate, a rise after the taper
(a shorting cell) and repeated protection cuts of one card's charger are critical at once;
no taper and energy beyond the pack warn first, critical far beyond; erratic power warns.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from chargectl.firewatch.curve import Curve, SessionClass, session_class
from chargectl.firewatch.settings import FirewatchSettings

BoolArray = npt.NDArray[np.bool_]


class Kind(StrEnum):
    NO_TAPER = "no_taper"
    ENERGY_BEYOND_PACK = "energy_beyond_pack"
    RISE_AFTER_TAPER = "rise_after_taper"
    OVER_POWER = "over_power"
    SOCKET_HEAT = "socket_heat"
    ERRATIC_POWER = "erratic_power"
    REPEATED_PROTECTION_CUTS = "repeated_protection_cuts"


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Finding:
    kind: Kind
    severity: Severity
    session_id: str
    bay: str
    card: str
    since_s: float  # where the sign started / became certain, s from the session's start
    detected_s: float  # when the curve first showed it, s from the session's start
    seen: str  # a short sentence with the numbers, for staff

    @property
    def held(self) -> bool:
        """A critical finding cuts its socket and holds it out until staff clear it."""
        return self.severity is Severity.CRITICAL


def _finding(
    curve: Curve, kind: Kind, severity: Severity, span: tuple[float, float], seen: str
) -> Finding:
    """`span`: (since_s, detected_s)."""
    return Finding(kind, severity, curve.session_id, curve.bay, curve.card, *span, seen)


# --- what the detectors share: the shape of the curve ---


@dataclass(frozen=True, slots=True)
class _Shape:
    cls: SessionClass
    on: BoolArray  # power on (not paused, not unplugged)
    fresh: BoolArray  # on, and the sample before it is off, missing or absent
    near_off: BoolArray  # on, next to an off or missing sample: a pause may lie inside it
    steady: BoolArray  # on, not near_off, no jump inside (mean near its peak)
    tapered_at: int | None  # first steady sample below the taper level
    restart: BoolArray  # power back at the CC level: a restart of the charger's cycle


def _shape(curve: Curve, s: FirewatchSettings) -> _Shape | None:
    cls = session_class(curve, s)
    if cls is None:
        return None
    n = len(curve)
    mean, peak = curve.mean_w, curve.peak_w
    on = mean >= s.off_w
    joined = np.zeros(n, dtype=np.bool_)  # sample i directly follows sample i - 1
    joined[1:] = np.diff(curve.t) < curve.period_s * 1.5
    on_before = np.zeros(n, dtype=np.bool_)
    on_before[1:] = on[:-1] & joined[1:]
    on_after = np.zeros(n, dtype=np.bool_)
    on_after[:-1] = on[1:] & joined[1:]
    fresh = on & ~on_before
    near_off = on & ~(on_before & on_after)
    near_off[-1:] = on[-1:] & ~on_before[-1:]  # the last sample: nothing after it yet
    steady = on & ~near_off & (mean >= s.steady_ratio * peak)
    tapered = np.flatnonzero(steady & (mean < s.taper_ratio * cls.cc_w))
    at_cc_peak = peak >= s.cc_ratio * cls.cc_w
    peak_before = np.zeros(n)
    peak_before[1:] = peak[:-1]
    restart = (
        on
        & at_cc_peak
        & (fresh | (peak_before < s.cc_ratio * cls.cc_w) | (mean < s.steady_ratio * peak))
    )
    return _Shape(
        cls, on, fresh, near_off, steady, int(tapered[0]) if tapered.size else None, restart
    )


def _crossing(cum: npt.NDArray[np.float64], limit: float) -> int | None:
    """The first index where a non-decreasing running total reaches `limit`."""
    i = int(np.searchsorted(cum, limit, side="left"))
    return i if i < cum.size else None


# --- the detectors ---


def no_taper(curve: Curve, settings: FirewatchSettings) -> list[Finding]:
    """Power held at its constant-current level longer than any pack of the charger's power
    class stays in CC (on-time: pauses do not count). Only before the first taper: a return to
    CC after it is a restart or a rise after taper."""
    sh = _shape(curve, settings)
    if sh is None:
        return []
    cc, pc = sh.cls.cc_w, sh.cls.power_class
    end = len(curve) if sh.tapered_at is None else sh.tapered_at
    at_cc = sh.on[:end] & (curve.mean_w[:end] >= settings.cc_ratio * cc)
    cum = np.cumsum(np.where(at_cc, curve.period_s, 0.0))
    out = []
    for sev, hours in (
        (Severity.WARNING, pc.no_taper_warning_h),
        (Severity.CRITICAL, pc.no_taper_critical_h),
    ):
        limit = hours * 3600.0
        i = _crossing(cum, limit)
        if i is None:
            continue
        before = cum[i] - curve.period_s
        since = float(curve.t[i] + (limit - before))
        seen = (
            f"{curve.mean_w[i]:,.0f} W, its constant-current level ({cc:,.0f} W), for "
            f"{hours:.1f} h without tapering; a {pc.name} charger's pack reaches constant "
            f"voltage sooner"
        )
        out.append(
            _finding(curve, Kind.NO_TAPER, sev, (since, float(curve.t[i] + curve.period_s)), seen)
        )
    return out


def energy_beyond_pack(curve: Curve, settings: FirewatchSettings) -> list[Finding]:
    """Energy at the socket while charging (float-level samples excluded) beyond any pack of
    the charger's power class. Each restart after the taper is allowed what a restart on a full
    pack draws: cc_w * (restart_cc_s + restart_tau_s)."""
    sh = _shape(curve, settings)
    if sh is None:
        return []
    cc, pc = sh.cls.cc_w, sh.cls.power_class
    charging = sh.on & (curve.mean_w > settings.float_cut_w)
    drawn_wh = np.cumsum(np.where(charging, curve.mean_w, 0.0)) * curve.period_s / 3600.0
    restarts = sh.restart.copy()
    restarts[: (len(curve) if sh.tapered_at is None else sh.tapered_at + 1)] = False
    allowance_wh = cc * (settings.restart_cc_s + settings.restart_tau_s) / 3600.0
    beyond_wh = drawn_wh - np.cumsum(restarts) * allowance_wh
    out = []
    for sev, limit in (
        (Severity.WARNING, pc.pack_warning_wh),
        (Severity.CRITICAL, pc.pack_critical_wh),
    ):
        hit = np.flatnonzero(beyond_wh >= limit)
        if hit.size == 0:
            continue
        i = int(hit[0])
        before = beyond_wh[i - 1] if i else 0.0
        step = beyond_wh[i] - before
        frac = min(max((limit - before) / step, 0.0), 1.0) if step > 0 else 1.0
        since = float(curve.t[i] + frac * curve.period_s)
        seen = (
            f"{drawn_wh[i]:,.0f} Wh drawn while charging, beyond any pack of a {pc.name} "
            f"charger ({limit:,.0f} Wh at the socket)"
        )
        out.append(
            _finding(
                curve,
                Kind.ENERGY_BEYOND_PACK,
                sev,
                (since, float(curve.t[i] + curve.period_s)),
                seen,
            )
        )
    return out


def rise_after_taper(curve: Curve, settings: FirewatchSettings) -> list[Finding]:
    """After the charge tapered, power held well above anything a healthy charger draws: the
    lowest tapered level so far, or a restart's CC hold and decay (restart_cc_s, restart_tau_s
    from the restart, taken at the end of the sample it was seen in). Critical: a cell
    shorting inside the pack draws more as it heats."""
    sh = _shape(curve, settings)
    if sh is None or sh.tapered_at is None:
        return []
    s, cc, t, mean = settings, sh.cls.cc_w, curve.t, curve.mean_w
    restart_t = float(t[int(np.flatnonzero(sh.on)[0])])
    trough, found = math.inf, None
    run_start: int | None = None
    for i in range(len(curve)):
        if not sh.on[i]:
            run_start = None
            continue
        if sh.restart[i] or sh.fresh[i]:
            restart_t = float(t[i])
        if i < sh.tapered_at:
            continue
        if sh.steady[i]:
            trough = min(trough, float(mean[i]))
        since_restart = max(float(t[i]) - restart_t - curve.period_s - s.restart_cc_s, 0.0)
        allowed = max(trough, cc * math.exp(-since_restart / s.restart_tau_s))
        risen = mean[i] >= s.rise_ratio * allowed and mean[i] - allowed >= s.rise_min_w
        if not risen:
            run_start = None
            continue
        if run_start is None or sh.fresh[i]:
            run_start = i
        held = float(t[i]) + curve.period_s - float(t[run_start])
        if held >= s.rise_hold_s:
            seen = (
                f"{mean[i]:,.0f} W for {held / 60:.0f} min after the charge had tapered to "
                f"{trough:,.0f} W (constant current {cc:,.0f} W)"
            )
            found = (float(t[run_start]), float(t[i]) + curve.period_s, seen)
            break
    step = _step_in_taper(curve, sh, settings)
    found = step if step is not None and (found is None or step[1] < found[1]) else found
    if found is None:
        return []
    return [_finding(curve, Kind.RISE_AFTER_TAPER, Severity.CRITICAL, found[:2], found[2])]


def _step_in_taper(
    curve: Curve, sh: _Shape, s: FirewatchSettings
) -> tuple[float, float, str] | None:
    """A step up between steady minutes after the taper, at most one partial minute apart,
    not to CC nor in a restart's allowance, held without a pause or a step down as large."""
    assert sh.tapered_at is not None
    cc, t, mean, peak = sh.cls.cc_w, curve.t, curve.mean_w, curve.peak_w
    at = prev = None  # the minute the step came in; the last steady minute
    base, top, restart_t = 0.0, 0.0, -math.inf
    for i in range(1, len(curve)):
        if sh.restart[i] or sh.fresh[i]:
            restart_t = float(t[i])
        joined = t[i] - t[i - 1] < curve.period_s * 1.5
        if not (sh.on[i] and joined) or sh.near_off[i] or sh.restart[i]:
            at = prev = None
            continue
        if i <= sh.tapered_at or not sh.steady[i]:
            continue  # a partial minute (the step inside it) keeps `prev`
        if prev is not None and i - prev <= 2:
            change = float(mean[i] - mean[prev])
            size = max(s.rise_min_w, s.step_ratio * float(mean[prev]))
            if at is not None and -change >= size:
                at = None  # undone: a load that came and went
            since_restart = max(float(t[i]) - restart_t - curve.period_s - s.restart_cc_s, 0.0)
            decay = cc * math.exp(-since_restart / s.restart_tau_s)
            if change >= size and peak[i] < s.cc_ratio * cc and mean[i] > decay:
                at, base, top = prev + 1, float(mean[prev]), float(mean[i])
        prev = i
        if at is not None and float(t[i]) + curve.period_s - float(t[at]) >= s.rise_hold_s:
            seen = (
                f"power stepped up from {base:,.0f} W to {top:,.0f} W in the taper (where it "
                f"only falls), not back down in {s.rise_hold_s / 60:.0f} min (now "
                f"{mean[i]:,.0f} W; constant current {cc:,.0f} W)"
            )
            return float(t[at]), float(t[i]) + curve.period_s, seen
    return None


def _held_runs(curve: Curve, mask: BoolArray, hold_s: float) -> tuple[int, int] | None:
    """(first, last) samples of the first run of joined `mask` samples lasting `hold_s`."""
    start: int | None = None
    for i in range(len(curve)):
        if not mask[i]:
            start = None
            continue
        joined = i > 0 and curve.t[i] - curve.t[i - 1] < curve.period_s * 1.5
        if start is None or not joined:
            start = i
        if curve.t[i] + curve.period_s - curve.t[start] >= hold_s:
            return start, i
    return None


def over_power(curve: Curve, settings: FirewatchSettings) -> list[Finding]:
    """Mean power no e-bike charger draws (a heater, a modified pack), well below the pile's
    own per-port cut."""
    s = settings
    top_w = s.classes[-1].max_cc_w
    out = []
    for sev, level, hold in (
        (Severity.WARNING, s.over_power_warning_w, s.over_power_warning_hold_s),
        (Severity.CRITICAL, s.over_power_critical_w, curve.period_s),
    ):
        run = _held_runs(curve, curve.mean_w >= level, hold)
        if run is None:
            continue
        a, b = run
        minutes = (curve.t[b] + curve.period_s - curve.t[a]) / 60.0
        seen = (
            f"{np.min(curve.mean_w[a : b + 1]):,.0f} W for {minutes:.0f} min, far above any "
            f"e-bike charger (max {top_w:,.0f} W)"
        )
        out.append(
            _finding(
                curve,
                Kind.OVER_POWER,
                sev,
                (float(curve.t[a]), float(curve.t[b] + curve.period_s)),
                seen,
            )
        )
    return out


def socket_heat(curve: Curve, settings: FirewatchSettings) -> list[Finding]:
    """The socket at a warning (critical) temperature, or heating at a warning (critical) rate
    over `temp_rate_window_s`; per severity the earlier of the two. Samples without a
    temperature are skipped (a pile that reports none gives no finding)."""
    s, t, c = settings, curve.t, curve.temp_c
    out = []
    for sev, level, rate in (
        (Severity.WARNING, s.temp_warning_c, s.temp_rate_warning_c_per_min),
        (Severity.CRITICAL, s.temp_critical_c, s.temp_rate_critical_c_per_min),
    ):
        best: Finding | None = None
        hot = np.flatnonzero(np.isfinite(c) & (c >= level))
        if hot.size:
            i = int(hot[0])
            best = _finding(
                curve,
                Kind.SOCKET_HEAT,
                sev,
                (float(t[i]), float(t[i] + curve.period_s)),
                f"socket at {c[i]:.1f} °C (level {level:.0f} °C; the pile cuts at 60-65 °C)",
            )
        window_min = s.temp_rate_window_s / 60.0
        j = np.searchsorted(t, t - s.temp_rate_window_s)
        for i in range(len(curve)):
            if best is not None and t[i] + curve.period_s >= best.detected_s:
                break
            k = int(j[i])
            if k >= i or abs(t[k] - (t[i] - s.temp_rate_window_s)) > curve.period_s * 0.5:
                continue
            if not (math.isfinite(c[i]) and math.isfinite(c[k])):
                continue
            per_min = (c[i] - c[k]) / window_min
            if per_min >= rate:
                best = _finding(
                    curve,
                    Kind.SOCKET_HEAT,
                    sev,
                    (float(t[k]), float(t[i] + curve.period_s)),
                    f"socket warmed {c[k]:.1f} -> {c[i]:.1f} °C in {window_min:.0f} min "
                    f"({per_min:.1f} K/min; level {rate:g} K/min)",
                )
                break
        if best is not None:
            out.append(best)
    return out


# A stage change's sample may end a little below the lower level (the float stage's noise).
STEP_TOLERANCE = 0.9


def erratic_power(curve: Curve, settings: FirewatchSettings) -> list[Finding]:
    """Power jumping within samples (a contact that drops out for seconds): `swing_count`
    samples within `swing_window_s` whose peak is far above their mean, not next to a pause,
    not a stage change (the levels either side differ by `swing_ratio`, its mean between them:
    the step to float, a restart to CC after a dip), so once the next sample is known. A
    poor contact comes back to the level it left. A warning."""
    sh = _shape(curve, settings)
    if sh is None:
        return []
    s, mean, peak, t = settings, curve.mean_w, curve.peak_w, curve.t
    n = len(curve)
    before, after = np.full(n, np.nan), np.full(n, np.nan)
    before[1:], after[:-1] = mean[:-1], mean[1:]
    with np.errstate(invalid="ignore"):
        lo, hi = np.fmin(before, after), np.fmax(before, after)
        stage_change = (hi >= s.swing_ratio * lo) & (mean >= STEP_TOLERANCE * lo) & (mean <= hi)
    known_after = np.zeros(n, dtype=np.bool_)
    known_after[:-1] = True
    swing = sh.on & ~sh.near_off & (peak >= s.swing_ratio * mean) & (peak - mean >= s.swing_min_w)
    swing &= known_after & ~stage_change
    idx = np.flatnonzero(swing)
    for n in range(s.swing_count - 1, idx.size):
        first, last = int(idx[n - s.swing_count + 1]), int(idx[n])
        if t[last] - t[first] < s.swing_window_s:
            seen = (
                f"{s.swing_count} minutes within {(t[last] - t[first]) / 60 + 1:.0f} min with "
                f"power jumping to {np.max(peak[idx[n - s.swing_count + 1 : n + 1]]):,.0f} W "
                f"over a mean of {mean[last]:,.0f} W"
            )
            return [
                _finding(
                    curve,
                    Kind.ERRATIC_POWER,
                    Severity.WARNING,
                    (float(t[first]), float(t[last] + curve.period_s)),
                    seen,
                )
            ]
    return []


CURVE_DETECTORS: tuple[Callable[[Curve, FirewatchSettings], list[Finding]], ...] = (
    no_taper,
    energy_beyond_pack,
    rise_after_taper,
    over_power,
    socket_heat,
    erratic_power,
)


def check(curve: Curve, settings: FirewatchSettings) -> list[Finding]:
    """Every curve detector's findings, in the order they were detected."""
    found = [f for detect in CURVE_DETECTORS for f in detect(curve, settings)]
    return sorted(found, key=lambda f: (f.detected_s, f.kind, f.severity))


# --- the pile's own protection ---


@dataclass(frozen=True, slots=True)
class ProtectionCut:
    """The pile cut a socket by its own over-power or over-temperature protection (its fault
    flags): when (`t_s`, any one time base for all cuts: the controller's clock), in which
    session and how far into it."""

    t_s: float
    bay: str
    session_id: str
    card: str
    session_t_s: float
    reason: str  # "over_power" or "over_temp"


def repeated_protection_cuts(
    cuts: Sequence[ProtectionCut], settings: FirewatchSettings
) -> list[Finding]:
    """A socket cut `cuts_per_day` times within `cuts_window_s`, named after the session of
    the cut that completed the count. One finding per socket (its first such cut). `since_s`
    is the first cut's time in that session, or 0 when the first cut was in an earlier session.

    Critical when every cut counted was one card's (its pack trips the pile again and again:
    held, the card marked); a warning when the cards differ or one is unknown (the socket is as
    likely as any one pack; no resident is blamed). docs/firewatch.md."""
    s = settings
    out = []
    by_bay: dict[str, list[ProtectionCut]] = {}
    for c in sorted(cuts, key=lambda c: c.t_s):
        by_bay.setdefault(c.bay, []).append(c)
    for bay, seq in by_bay.items():
        for n in range(s.cuts_per_day - 1, len(seq)):
            first, last = seq[n - s.cuts_per_day + 1], seq[n]
            if last.t_s - first.t_s >= s.cuts_window_s:
                continue
            hours = (last.t_s - first.t_s) / 3600.0
            reasons = ", ".join(c.reason for c in seq[n - s.cuts_per_day + 1 : n + 1])
            since = first.session_t_s if first.session_id == last.session_id else 0.0
            counted = seq[n - s.cuts_per_day + 1 : n + 1]
            one_card = bool(last.card) and all(c.card == last.card for c in counted)
            severity = Severity.CRITICAL if one_card else Severity.WARNING
            who = "one card" if one_card else "different or unknown cards"
            seen = (
                f"cut by the pile's own protection {s.cuts_per_day} times within "
                f"{hours:.1f} h ({reasons}; {who})"
            )
            out.append(
                Finding(
                    Kind.REPEATED_PROTECTION_CUTS,
                    severity,
                    last.session_id,
                    bay,
                    last.card,
                    since,
                    last.session_t_s,
                    seen,
                )
            )
            break
    return out
