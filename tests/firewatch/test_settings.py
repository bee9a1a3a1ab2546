"""The thresholds: validation, power classes, and defaults beyond every healthy profile."""

from __future__ import annotations

import dataclasses
import math

import pytest

from chargectl.firewatch.settings import (
    DEFAULT_CLASSES,
    FirewatchSettings,
    PowerClass,
    power_class,
    problems,
)
from chargectl.sim.physics.chargers import PROFILES

DEFAULTS = FirewatchSettings()


def test_defaults_have_no_problems() -> None:
    assert problems(DEFAULTS) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"off_w": -1.0}, "off_w: must be > 0, got -1.0"),
        ({"float_cut_w": -0.5}, "float_cut_w: must be >= 0, got -0.5"),
        ({"temp_warning_c": math.nan}, "temp_warning_c: must be finite, got nan"),
        ({"rise_hold_s": 0.0}, "rise_hold_s: must be > 0, got 0.0"),
        ({"cc_ratio": 1.2}, "cc_ratio: must be within (0, 1], got 1.2"),
        ({"temp_warning_c": 56.0}, "temp_warning_c (56.0) must be below temp_critical_c (55.0)"),
        (
            {"over_power_warning_w": 900.0},
            "over_power_warning_w (900.0) must be below over_power_critical_w (900.0)",
        ),
        ({"taper_ratio": 0.9}, "taper_ratio (0.9) must be below cc_ratio (0.85)"),
        ({"swing_count": 0}, "swing_count: must be a whole number >= 1, got 0"),
        ({"cuts_per_day": 1.5}, "cuts_per_day: must be a whole number >= 1, got 1.5"),
        ({"float_cut_w": 2.0}, "float_cut_w (2.0) must be >= off_w (5.0)"),
        ({"classes": ()}, "classes: at least one power class is needed"),
    ],
)
def test_problems_name_the_field(change: dict[str, object], expected: str) -> None:
    assert problems(dataclasses.replace(DEFAULTS, **change)) == [expected]  # type: ignore[arg-type]


def test_class_problems() -> None:
    small, medium, _ = DEFAULT_CLASSES
    bad = (
        medium,
        small,  # not ascending
        PowerClass("up to 350 W", 700.0, 9.0, 8.0, 100.0, 100.0),  # name twice, warn >= crit
        PowerClass("x", math.inf, 1.0, 2.0, 1.0, 2.0),
    )
    assert problems(dataclasses.replace(DEFAULTS, classes=bad)) == [
        "classes[1] ('up to 160 W'): max_cc_w 160.0 must be above the previous class's",
        "classes[2] ('up to 350 W'): name used twice",
        "classes[2] ('up to 350 W'): no_taper_warning_h must be below no_taper_critical_h",
        "classes[2] ('up to 350 W'): pack_warning_wh must be below pack_critical_wh",
        "classes[3] ('x'): every number must be finite and > 0, got (inf, 1.0, 2.0, 1.0, 2.0)",
    ]


@pytest.mark.parametrize(
    ("cc_w", "name"),
    [
        (120.6, "up to 160 W"),
        (160.0, "up to 160 W"),
        (160.1, "up to 350 W"),
        (301.4, "up to 350 W"),
        (488.4, "up to 600 W"),
        (2000.0, "up to 600 W"),
    ],
)
def test_power_class(cc_w: float, name: str) -> None:
    assert power_class(DEFAULTS, cc_w).name == name


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_defaults_lie_beyond_every_healthy_profile(name: str) -> None:
    """The warning levels sit beyond what the profile's pack can take from empty: CC time
    (cv_soc / rate) by at least 1.25x, energy at the socket (V * Ah / efficiency) by 1.35x."""
    p = PROFILES[name]
    pc = power_class(DEFAULTS, p.full_w)
    cc_h = p.cv_soc * p.capacity_ah / p.charge_a
    pack_wh = p.charge_v * p.capacity_ah / p.efficiency
    assert pc.no_taper_warning_h >= 1.25 * cc_h
    assert pc.pack_warning_wh >= 1.35 * pack_wh
    assert p.full_w < DEFAULTS.over_power_warning_w / 1.3  # the largest, li72, 488 W
