"""The `firewatch` section: on with the documented thresholds by default, typed when given,
its thresholds checked at their lines."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from chargectl.config.load import Problem, load_shed
from chargectl.firewatch.settings import FirewatchSettings, PowerClass
from tests.config.cfgtext import BASE

FIREWATCH = """\
firewatch:
  over_power_critical_w: 800
  temp_critical_c: 52
  classes:
    - {name: small, max_cc_w: 200, no_taper_warning_h: 7, no_taper_critical_h: 8.5,
       pack_warning_wh: 1200, pack_critical_wh: 1700}
"""


def test_firewatch_section(write: Callable[[str], Path]) -> None:
    assert load_shed(write(BASE)).firewatch == FirewatchSettings()
    assert FirewatchSettings().enabled
    fw = load_shed(write(BASE + FIREWATCH)).firewatch
    assert fw.over_power_critical_w == 800.0 and fw.temp_critical_c == 52.0
    assert fw.classes == (PowerClass("small", 200.0, 7.0, 8.5, 1200.0, 1700.0),)
    off = load_shed(write(BASE + "firewatch:\n  enabled: false\n")).firewatch
    assert not off.enabled


def test_firewatch_bad_values_refused_at_their_lines(
    errors: Callable[[str], list[Problem]],
) -> None:
    text = BASE + (
        "firewatch:\n"
        "  over_power_warning_w: 950\n"
        "  rise_hold_s: 0\n"
        "  classes:\n"
        "    - {name: small, max_cc_w: 200, no_taper_warning_h: 9, no_taper_critical_h: 8.5,\n"
        "       pack_warning_wh: 1200, pack_critical_wh: 1700}\n"
    )
    first = BASE.count("\n") + 1  # the `firewatch:` line
    found = {(p.path, p.line, p.message) for p in errors(text)}
    assert found == {
        ("firewatch.rise_hold_s", first + 2, "must be > 0, got 0.0"),
    }
    text = text.replace("  rise_hold_s: 0\n", "")
    found = {(p.path, p.line, p.message) for p in errors(text)}
    assert found == {
        (
            "firewatch.over_power_warning_w",
            first + 1,
            "over_power_warning_w (950.0) must be below over_power_critical_w (900.0)",
        ),
        (
            "firewatch.classes[0]",
            first + 3,
            "no_taper_warning_h must be below no_taper_critical_h",
        ),
    }
    assert all(str(p).startswith(f"{p.file}:{p.line}:") for p in errors(text))
