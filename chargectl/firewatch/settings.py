"""Every threshold of the fire-risk detectors, with defaults grounded in charger physics.

Numbers cited as "chargers.py" are the simulator's charger profiles (sim/physics/chargers.py);
"DOMAIN" is ../shared/DOMAIN.md. Healthy figures of the profiles, at the socket:

| profile      | CC W | CC h from empty | Wh empty to full |
|--------------|-----:|----------------:|-----------------:|
| lead48       |  121 |            5.33 |              804 |
| lead48-cheap |  144 |            4.80 |              864 |
| li48-cheap   |  171 |            5.40 |            1,024 |
| li48         |  191 |            6.00 |            1,270 |
| li60         |  234 |            7.20 |            1,875 |
| li60-cheap   |  252 |            6.00 |            1,680 |
| lead60       |  268 |            5.00 |            1,674 |
| lead72       |  301 |            5.33 |            2,009 |
| li72         |  488 |            5.40 |            2,930 |

The controller never knows a charger's profile: it sees the session's constant-current power
(the highest power in its first minutes on) and picks the power class that holds it.
Warnings sit about 1.3x (time) and 1.4x (energy) beyond the longest healthy figure of the
class, criticals about 1.6x and 2x: a pack that needs more is not one of these chargers' packs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class PowerClass:
    """Chargers whose constant-current power at the socket is at most `max_cc_w`."""

    name: str
    max_cc_w: float
    """Upper edge of the class: the session's constant-current power (W) at or below it."""
    no_taper_warning_h: float
    """Hours at the constant-current level (on-time) without a taper: a warning."""
    no_taper_critical_h: float
    """Hours at the constant-current level without a taper: critical."""
    pack_warning_wh: float
    """Energy at the socket while charging (float excluded) beyond any pack of the class."""
    pack_critical_wh: float
    """Energy at the socket while charging far beyond any pack of the class: critical."""


DEFAULT_CLASSES: tuple[PowerClass, ...] = (
    # lead48 (121 W) and lead48-cheap (144 W): CC at most 5.33 h, 864 Wh empty to full.
    PowerClass("up to 160 W", 160.0, 7.0, 8.5, 1200.0, 1700.0),
    # li48-cheap .. lead72 (171..301 W): CC at most 7.2 h (li60), 2,009 Wh (lead72).
    PowerClass("up to 350 W", 350.0, 9.5, 11.5, 2800.0, 4000.0),
    # li72 (488 W; DOMAIN: 72 V lithium at 5 A about 495 W): CC 5.4 h, 2,930 Wh.
    PowerClass("up to 600 W", 600.0, 7.0, 8.5, 4100.0, 5900.0),
)


@dataclass(frozen=True, slots=True)
class FirewatchSettings:
    """Thresholds of the detectors (docs/firewatch.md says what each one watches)."""

    enabled: bool = True
    """The live watch in the controller's tick (chargectl.firewatch.watch): off, no finding is
    made and nothing is cut by it."""
    classes: tuple[PowerClass, ...] = DEFAULT_CLASSES
    """Power classes, ascending by `max_cc_w`; a session above the last uses the last."""
    class_window_s: float = 600.0
    """The session's constant-current power is its highest per-minute peak within its first
    this many seconds with power on (every profile starts in CC, even a full pack: chargers.py
    holds CC for restart_cc_s, 30..120 s, when power returns)."""
    off_w: float = 5.0
    """A minute whose mean is below this is off (paused, unplugged): below every float stage
    (10..20 W, DOMAIN and chargers.py), near the piles' no-load level (2.5..3.5 W)."""
    steady_ratio: float = 0.8
    """A minute is steady when its mean is at least this share of its peak: no pause or jump
    inside it (the fastest healthy decay, a lithium restart with tau 120 s, gives 0.79 and
    counts as not steady, which only makes the detectors more lenient)."""
    cc_ratio: float = 0.85
    """Power at or above this share of the constant-current power is "at the CC level"."""
    taper_ratio: float = 0.7
    """A steady minute below this share of the constant-current power: the charge has tapered."""
    float_cut_w: float = 25.0
    """Minutes at or below this are float/trickle (10..20 W) and not counted as charging energy."""
    restart_cc_s: float = 120.0
    """After power returns to a tapered pack a charger may hold CC this long (chargers.py:
    lead-acid 120 s, lithium 30 s)."""
    restart_tau_s: float = 600.0
    """...then its power falls back with this time constant (lead-acid 600 s, lithium 120 s).
    Each restart after the taper is also allowed cc_w * (restart_cc_s + restart_tau_s) of
    energy beyond the pack: what a restart on a full pack can draw."""
    rise_ratio: float = 1.5
    """Rise after taper: the mean at least this many times what a healthy charger may draw
    (the lowest tapered level, or a restart's decay from the CC level, whichever is higher)."""
    rise_min_w: float = 25.0
    """...and at least this many watts above it (a float stage of 10 W going to 16 W is noise)."""
    rise_hold_s: float = 600.0
    """...for this long without a break: critical (a cell shorting inside the pack)."""
    step_ratio: float = 0.15
    """A step up in the taper: a steady minute at least this share (and `rise_min_w`) above
    the steady minute before it, not back at the CC level (a restart), not undone by a step
    down as large within `rise_hold_s`: critical. In constant voltage a charger's power only
    falls; a short that starts while the taper is still high (a 72 V lithium pack tapers from
    488 W over hours) adds 60..150 W that the decay hides from the trough rule."""
    over_power_warning_w: float = 650.0
    """Mean power no e-bike charger draws: DOMAIN 100..500 W, the largest profile 488 W."""
    over_power_warning_hold_s: float = 120.0
    """...held this long (two whole minutes): a warning."""
    over_power_critical_w: float = 900.0
    """One minute's mean power at or above this: critical (a heater, a modified pack), below the
    piles' own per-port cut of 1000..2000 W (DOMAIN)."""
    temp_warning_c: float = 50.0
    """Socket temperature: a warning. Below the piles' 60..65 C cut (DOMAIN); a healthy socket
    sits at ambient (up to about 40 C in a summer shed) + about 2.5 K for the largest charger
    (sim/physics/thermal.py: 0.45 K/A^2 on a 10 A socket, li72 at 2.3 A)."""
    temp_critical_c: float = 55.0
    """Socket temperature: critical, 5 K below the lowest pile cut."""
    temp_rate_window_s: float = 300.0
    """The temperature rise is measured over this window (whole minutes apart)."""
    temp_rate_warning_c_per_min: float = 1.0
    """Rise rate (K/min) over the window: a warning. A healthy charger warms a socket by 2.5 K
    at most with a time constant of about 300 s: at most 0.5 K/min, 1.6 K over 5 min."""
    temp_rate_critical_c_per_min: float = 3.0
    """Rise rate (K/min): critical (a 2 kW heater on a 10 A socket rises about 4.6 K/min)."""
    swing_ratio: float = 1.5
    """A swing minute: its peak at least this many times its mean (a restart's decay gives at
    most 1.27; a contact that drops out for seconds gives more)."""
    swing_min_w: float = 30.0
    """...and its peak at least this many watts above its mean."""
    swing_count: int = 4
    """Swing minutes (not next to an off minute) within `swing_window_s`: erratic power. A
    healthy session has one or two (the step to float, a restart after a short supply dip)."""
    swing_window_s: float = 1800.0
    """The window for `swing_count`."""
    cuts_per_day: int = 2
    """Cuts of one socket by the pile's own over-power or over-temperature protection within
    `cuts_window_s`: critical (the issue: twice within a day)."""
    cuts_window_s: float = 86400.0
    """The window for `cuts_per_day`."""


# Fields that must be > 0 and finite (every other float must be finite and >= 0).
_POSITIVE = {
    "class_window_s",
    "off_w",
    "rise_ratio",
    "rise_hold_s",
    "over_power_warning_w",
    "over_power_critical_w",
    "temp_rate_window_s",
    "temp_rate_warning_c_per_min",
    "temp_rate_critical_c_per_min",
    "swing_ratio",
    "swing_window_s",
    "cuts_window_s",
    "restart_tau_s",
}
_FRACTIONS = ("steady_ratio", "cc_ratio", "taper_ratio", "step_ratio")  # within (0, 1]
# (warning field, critical field): the warning must be below the critical.
_ORDERED = (
    ("over_power_warning_w", "over_power_critical_w"),
    ("temp_warning_c", "temp_critical_c"),
    ("temp_rate_warning_c_per_min", "temp_rate_critical_c_per_min"),
    ("taper_ratio", "cc_ratio"),
)


def problems(settings: FirewatchSettings) -> list[str]:
    """Everything wrong with `settings`, one sentence each (empty when they are usable)."""
    out: list[str] = []
    for f in fields(settings):
        v = getattr(settings, f.name)
        if f.name in ("classes", "enabled"):
            continue
        if isinstance(v, bool) or not isinstance(v, int | float):
            out.append(f"{f.name}: expected a number, got {v!r}")
        elif not math.isfinite(v):
            out.append(f"{f.name}: must be finite, got {v}")
        elif f.name in _POSITIVE and v <= 0:
            out.append(f"{f.name}: must be > 0, got {v}")
        elif v < 0:
            out.append(f"{f.name}: must be >= 0, got {v}")
        elif f.name in _FRACTIONS and not 0 < v <= 1:
            out.append(f"{f.name}: must be within (0, 1], got {v}")
    if out:
        return out  # the comparisons below need numbers
    for low, high in _ORDERED:
        if getattr(settings, low) >= getattr(settings, high):
            out.append(
                f"{low} ({getattr(settings, low)}) must be below {high} ({getattr(settings, high)})"
            )
    if settings.float_cut_w < settings.off_w:
        out.append(f"float_cut_w ({settings.float_cut_w}) must be >= off_w ({settings.off_w})")
    if not isinstance(settings.enabled, bool):
        out.append(f"enabled: expected true or false, got {settings.enabled!r}")
    for name in ("swing_count", "cuts_per_day"):
        v = getattr(settings, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            out.append(f"{name}: must be a whole number >= 1, got {v!r}")
    out.extend(_class_problems(settings.classes))
    return out


def _class_problems(classes: tuple[PowerClass, ...]) -> list[str]:
    if not classes:
        return ["classes: at least one power class is needed"]
    out: list[str] = []
    seen: set[str] = set()
    last = 0.0
    for i, c in enumerate(classes):
        where = f"classes[{i}] ({c.name!r})"
        if c.name in seen:
            out.append(f"{where}: name used twice")
        seen.add(c.name)
        nums = (
            c.max_cc_w,
            c.no_taper_warning_h,
            c.no_taper_critical_h,
            c.pack_warning_wh,
            c.pack_critical_wh,
        )
        if not all(math.isfinite(x) and x > 0 for x in nums):
            out.append(f"{where}: every number must be finite and > 0, got {nums}")
            continue
        if c.max_cc_w <= last:
            out.append(f"{where}: max_cc_w {c.max_cc_w} must be above the previous class's")
        last = c.max_cc_w
        if c.no_taper_warning_h >= c.no_taper_critical_h:
            out.append(f"{where}: no_taper_warning_h must be below no_taper_critical_h")
        if c.pack_warning_wh >= c.pack_critical_wh:
            out.append(f"{where}: pack_warning_wh must be below pack_critical_wh")
    return out


def power_class(settings: FirewatchSettings, cc_w: float) -> PowerClass:
    """The class of a session whose constant-current power is `cc_w` (above all: the last)."""
    for c in settings.classes:
        if cc_w <= c.max_cc_w:
            return c
    return settings.classes[-1]
