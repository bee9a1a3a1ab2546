"""The picture: a PNG for one and for several recordings, and for an empty one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from chargectl.replay.plot import MAX_POINTS, downsample, plot
from chargectl.replay.recording import Mark, Recording
from tests.replay.test_report import recording

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def day(policy: str, n: int = 5000) -> Recording:
    rec = recording(
        n, circuits=("main", "row-a"), phases=((1, 2, 3), (2,)), limit_a=(32, 16), tick_s=10.0
    )
    rec.policy = policy
    wave = np.sin(np.linspace(0, 6, n))
    rec.peak_amps[:, 0, :] = 20 + 10 * wave[:, None]
    rec.peak_amps[:, 1, 1] = 12 + 5 * wave
    rec.thermal[:, 0, :] = 0.3
    rec.thermal[2000:2100, 1, 1] = 1.05
    rec.charging[:] = (6 + 4 * wave).astype(int)
    rec.waiting[1000:1500] = 2
    rec.marks = [Mark(20_500.0, "trip", "row-a"), Mark(5000.0, "fault", "meter", 9000.0)]
    rec.marks.append(Mark(40_000.0, "fault", "relay"))  # open to the end
    return rec


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 10_000


def test_one_recording(tmp_path: Path) -> None:
    plot([day("chargectl")], tmp_path / "one.png")
    assert_png(tmp_path / "one.png")


def test_three_recordings_side_by_side(tmp_path: Path) -> None:
    plot([day("chargectl"), day("fcfs", 3000), day("stop-all")], tmp_path / "three.png")
    assert_png(tmp_path / "three.png")


def test_no_ticks_no_sessions_draws_empty_axes(tmp_path: Path) -> None:
    plot([recording(0, duration_s=3600.0)], tmp_path / "empty.png")
    assert_png(tmp_path / "empty.png")


def test_downsample_keeps_the_peak() -> None:
    times = np.arange(10_001, dtype=float)
    values = np.zeros(10_001)
    values[4321] = 7.0
    x, y = downsample(times, values)
    assert len(x) == len(y) <= MAX_POINTS
    assert y.max() == 7.0
    assert x[0] == 0.0
    small_x, _ = downsample(times[:10], values[:10])
    assert len(small_x) == 10
