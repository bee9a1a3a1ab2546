"""The trace files: written and read back, the report is the same to the last digit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from chargectl.replay.recording import Mark, Recording
from chargectl.replay.report import report
from chargectl.replay.trace import SESSION_COLUMNS, TraceError, read_trace, write_trace
from tests.replay.test_report import recording, session


def busy_recording() -> Recording:
    """Three circuits (3-phase, 1-phase on L2, a wallbox's 3-phase), floats that print long."""
    rng = np.random.default_rng(7)
    rec = recording(
        50,
        circuits=("main", "row-a", "wall_b.2"),
        phases=((1, 2, 3), (2,), (1, 2, 3)),
        limit_a=(32.0, 16.0, 1 / 3),
        tick_s=1 / 3,
        duration_s=20.0,
    )
    mask = rec.phase_mask()[None, :, :]
    rec.amps[:] = rng.uniform(0, 40, rec.amps.shape) * mask
    rec.peak_amps[:] = rec.amps + rng.uniform(0, 1, rec.amps.shape) * mask
    rec.thermal[:] = rng.uniform(0, 1.2, rec.thermal.shape) * mask
    rec.over_s[:] = rng.uniform(0, 1 / 3, rec.over_s.shape)
    rec.closed[:] = rng.uniform(size=rec.closed.shape) > 0.1
    rec.capacity_w[:] = rng.uniform(0, 20_000, rec.ticks)
    rec.charging[:] = rng.integers(0, 9, rec.ticks)
    rec.waiting[:] = rng.integers(0, 3, rec.ticks)
    rec.unused_ratio[:] = rng.uniform(0, 1, rec.ticks)
    rec.sessions = [
        session(1, 0.1, first_current_at=0.7, end_at=9.9, end_reason="full", soc_end=1.0,
                delivered_wh=10 / 3, ledger_wh=3.3, switches=3, full=True),
        session(2, 1.0, car=True, leave_at=15.0, soc_start=0.2, soc_end=0.3,
                first_current_at=2.0, delivered_wh=1.1, ledger_wh=1.2),
        session(3, 5.0, wanted_wh=7.0 / 9),  # never got current, still open at the end
    ]  # fmt: skip
    rec.marks = [
        Mark(4.0, "trip", "row-a"),
        Mark(2.0, "fault", "meter silent, main", 6.5),
        Mark(12.0, "fault", 'relay "stuck"', None),
    ]
    rec.turned_away = 2
    rec.wall_s = 0.123456789
    return rec


def test_round_trip_keeps_every_figure(tmp_path: Path) -> None:
    rec = busy_recording()
    paths = write_trace(rec, tmp_path / "trace")
    assert sorted(p.name for p in paths) == [
        "marks.csv", "replay.json", "sessions.csv", "ticks.csv",
    ]  # fmt: skip
    back = read_trace(tmp_path / "trace")
    assert report(back) == report(rec)
    assert back.sessions == rec.sessions
    assert back.marks == rec.marks
    for name in ("times", "amps", "peak_amps", "over_s", "thermal", "closed", "capacity_w",
                 "charging", "waiting", "unused_ratio", "limit_a"):  # fmt: skip
        np.testing.assert_array_equal(getattr(back, name), getattr(rec, name), err_msg=name)
    assert (back.circuits, back.phases) == (rec.circuits, rec.phases)
    assert (back.tick_s, back.duration_s, back.wall_s) == (rec.tick_s, rec.duration_s, rec.wall_s)


def test_columns_name_circuit_and_phase(tmp_path: Path) -> None:
    write_trace(busy_recording(), tmp_path)
    header = (tmp_path / "ticks.csv").read_text().splitlines()[0].split(",")
    assert header[:5] == ["time", "capacity_w", "charging", "waiting", "unused_ratio"]
    assert header[5:9] == [
        "main.L1.amps",
        "main.L1.peak_amps",
        "main.L1.limit_a",
        "main.L1.thermal",
    ]
    assert "row-a.L2.amps" in header
    assert "row-a.L1.amps" not in header  # row-a does not carry L1
    assert header[-2:] == ["wall_b.2.over_s", "wall_b.2.closed"]
    sessions = (tmp_path / "sessions.csv").read_text().splitlines()
    assert sessions[0].split(",")[:10] == [
        "id", "card", "bay", "car", "plug_at", "tap_at", "first_current_at", "end_at",
        "end_reason", "leave_at",
    ]  # fmt: skip


def test_session_columns_are_every_field() -> None:
    rec = recording(0)
    rec.sessions = [session(1, 0.0)]
    assert [name for name, _ in SESSION_COLUMNS] == list(type(rec.sessions[0]).__dataclass_fields__)


def test_empty_recording_round_trips(tmp_path: Path) -> None:
    rec = recording(0)
    write_trace(rec, tmp_path)
    assert report(read_trace(tmp_path)) == report(rec)


def test_a_missing_column_names_the_file(tmp_path: Path) -> None:
    write_trace(busy_recording(), tmp_path)
    ticks = tmp_path / "ticks.csv"
    ticks.write_text(ticks.read_text().replace("main.L1.thermal", "main.L1.heat"))
    with pytest.raises(TraceError, match=r"ticks\.csv: expected the columns"):
        read_trace(tmp_path)


def test_a_bad_cell_names_the_line(tmp_path: Path) -> None:
    write_trace(busy_recording(), tmp_path)
    marks = tmp_path / "marks.csv"
    marks.write_text(marks.read_text().replace("4.0,trip", "four,trip"))
    with pytest.raises(TraceError, match=r"marks\.csv: line 2"):
        read_trace(tmp_path)
