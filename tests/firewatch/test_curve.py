"""Curves: per-tick samples to per-minute mean and peak, and what the controller can know."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from chargectl.firewatch.curve import Curve, curve_from_ticks, session_class
from chargectl.firewatch.settings import FirewatchSettings

IDS: dict[str, Any] = {"session_id": "s1", "bay": "p1-3", "card": "04a1b2c3"}


def test_ticks_to_minutes() -> None:
    t = np.arange(0.0, 180.0, 10.0)  # three minutes of 10 s ticks
    w = np.array([100.0] * 6 + [0, 0, 0, 200, 200, 200] + [50.0] * 6)
    c = np.array([30.0] * 6 + [np.nan] * 6 + [31.0, np.nan, 33.0, np.nan, np.nan, np.nan])
    cv = curve_from_ticks(t, w, c, **IDS)
    np.testing.assert_array_equal(cv.t, [0.0, 60.0, 120.0])
    np.testing.assert_array_equal(cv.mean_w, [100.0, 100.0, 50.0])
    np.testing.assert_array_equal(cv.peak_w, [100.0, 200.0, 50.0])
    np.testing.assert_array_equal(cv.temp_c, [30.0, np.nan, 32.0])
    assert (cv.session_id, cv.bay, cv.card, len(cv)) == ("s1", "p1-3", "04a1b2c3", 3)


def test_a_minute_without_ticks_is_a_gap_not_a_value() -> None:
    t = np.array([0.0, 30.0, 200.0, 230.0])  # nothing in [60, 180)
    cv = curve_from_ticks(t, np.array([10.0, 20.0, 30.0, 40.0]), **IDS)
    np.testing.assert_array_equal(cv.t, [0.0, 180.0])
    np.testing.assert_array_equal(cv.mean_w, [15.0, 35.0])
    assert np.isnan(cv.temp_c).all()


def test_no_ticks_no_samples() -> None:
    assert len(curve_from_ticks(np.zeros(0), np.zeros(0), **IDS)) == 0


@pytest.mark.parametrize(
    ("t", "w", "message"),
    [
        ([0.0, 20.0, 10.0], [1.0, 1.0, 1.0], "not decreasing"),
        ([-1.0, 0.0], [1.0, 1.0], ">= 0"),
        ([0.0, 1.0], [1.0], "one length"),
    ],
)
def test_bad_ticks(t: list[float], w: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        curve_from_ticks(np.array(t), np.array(w), **IDS)


def test_curve_checks_its_arrays() -> None:
    z = np.zeros(3)
    with pytest.raises(ValueError, match="peak_w has shape"):
        Curve("s", "b", "c", np.arange(3.0) * 60, z, np.zeros(2), z)
    with pytest.raises(ValueError, match="rise by at least period_s"):
        Curve("s", "b", "c", np.array([0.0, 30.0, 90.0]), z, z, z)
    with pytest.raises(ValueError, match="mean_w must be finite"):
        Curve("s", "b", "c", np.arange(3.0) * 60, np.array([1.0, np.nan, 1.0]), z, z)


def _curve(mean: list[float], peak: list[float]) -> Curve:
    n = len(mean)
    t = np.arange(n, dtype=np.float64) * 60.0
    return Curve("s", "b", "c", t, np.array(mean), np.array(peak), np.zeros(n))


def test_session_class_is_the_highest_peak_of_the_first_minutes_on() -> None:
    s = FirewatchSettings()  # class_window_s 600: the first 10 samples with power on
    # Paused for 3 minutes at the start; a full pack: CC for a moment, then float.
    mean = [0.0, 0.0, 0.0, 120.0, 40.0] + [15.0] * 8 + [700.0]
    peak = [0.0, 0.0, 0.0, 301.0, 90.0] + [15.0] * 8 + [700.0]
    sc = session_class(_curve(mean, peak), s)
    assert sc is not None
    assert sc.cc_w == 301.0  # the 700 W sample is the 11th on: too late to be the class
    assert sc.power_class.name == "up to 350 W"
    assert session_class(_curve([0.0, 4.9], [3.0, 30.0]), s) is None  # nothing drew power
