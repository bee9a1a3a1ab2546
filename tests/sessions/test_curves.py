"""Session curves: the per-minute accumulation (pure, on synthetic ticks), the records through
the writer thread (crash-safe: reopened after close), pruning by age on a virtual wall time,
the v3 -> v4 migration, and the manager's part (a session's curve on the rig's ticks)."""

from __future__ import annotations

import math
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from chargectl.sessions import ledger
from chargectl.sessions.curves import CurveRecorder, curve_of, max_minutes
from chargectl.sessions.records import (
    CurveMinute,
    CurvePrune,
    SessionEnd,
    SessionSettle,
    SessionStart,
)
from chargectl.sessions.writer import LedgerWriter
from tests.sessions.rig import ALICE, BOB, WALL0, Rig, settings

pytestmark = pytest.mark.timeout(60)

NAN = math.nan


def _tick(
    rec: CurveRecorder,
    now: float,
    sids: list[int],
    *args: list[float],
) -> list[CurveMinute]:
    starts, watts, *rest = args
    temps = rest[0] if rest else [NAN] * len(sids)
    return rec.tick(
        now,
        np.array(sids, dtype=np.int64),
        np.array(starts, dtype=np.float64),
        np.array(watts, dtype=np.float64),
        np.array(temps, dtype=np.float64),
    )


# ----- the accumulation --------------------------------------------------------------------
def test_minutes_mean_peak_and_temperature() -> None:
    rec = CurveRecorder(2, max_duration_s=43200, keep_days=90)
    out: list[CurveMinute] = []
    # Bay 0: session 7 from t=100, ticks every 10 s; bay 1: nothing, then session 8 from 130.
    for k in range(13):  # t = 100 .. 220: minute 0 = [100,160), minute 1 = [160,220)
        now = 100.0 + 10 * k
        w0 = 100.0 + k  # 100..112
        sid1 = 8 if now >= 130 else -1
        out += _tick(
            rec,
            now,
            [7, sid1],
            [100.0, 130.0 if sid1 >= 0 else NAN],
            [w0, 50.0],
            [30.0 if k % 2 else NAN, NAN],
        )
    by = {(r.id, r.minute): r for r in out}
    m0 = by[(7, 0)]
    assert m0.mean_w == pytest.approx(np.mean([100, 101, 102, 103, 104, 105]))
    assert m0.peak_w == 105.0
    assert m0.temp_c == 30.0  # only the ticks that reported one
    m1 = by[(7, 1)]
    assert m1.mean_w == pytest.approx(np.mean([106, 107, 108, 109, 110, 111]))
    assert m1.peak_w == 111.0
    assert by[(8, 0)] == CurveMinute(8, 0, 50.0, 50.0, None)  # NaN temperature -> NULL
    assert set(by) == {(7, 0), (7, 1), (8, 0)}  # minute 2 of 7 and minute 1 of 8 in progress
    last = rec.close(0)  # the session ends: its partial minute
    assert last == CurveMinute(7, 2, 112.0, 112.0, None)
    assert rec.close(0) is None  # nothing left
    # The slot is free: the next tick at bay 0 with no session writes nothing.
    assert _tick(rec, 230.0, [-1, 8], [NAN, 130.0], [0.0, 60.0]) == []


def test_a_tick_without_power_is_no_sample_and_a_minute_without_samples_no_row() -> None:
    rec = CurveRecorder(1, max_duration_s=3600, keep_days=1)
    out = _tick(rec, 0.0, [1], [0.0], [10.0])
    out += _tick(rec, 30.0, [1], [0.0], [NAN])  # the bay did not answer
    out += _tick(rec, 65.0, [1], [0.0], [NAN])  # minute 1: nothing
    out += _tick(rec, 125.0, [1], [0.0], [20.0])  # minute 2
    assert out == [CurveMinute(1, 0, 10.0, 10.0, None)]
    assert rec.close(0) == CurveMinute(1, 2, 20.0, 20.0, None)


def test_another_session_at_the_bay_flushes_the_old_one() -> None:
    rec = CurveRecorder(1, max_duration_s=3600, keep_days=1)
    assert _tick(rec, 10.0, [1], [0.0], [40.0]) == []
    assert _tick(rec, 20.0, [2], [20.0], [5.0]) == [CurveMinute(1, 0, 40.0, 40.0, None)]
    assert rec.close(0) == CurveMinute(2, 0, 5.0, 5.0, None)


def test_rows_are_bounded_by_the_longest_session() -> None:
    assert max_minutes(43200) == 720
    assert max_minutes(90) == 2
    rec = CurveRecorder(1, max_duration_s=300, keep_days=1)  # 5 minutes
    out: list[CurveMinute] = []
    for k in range(0, 600, 5):  # 10 minutes of ticks
        out += _tick(rec, float(k), [3], [0.0], [100.0])
    last = rec.close(0)
    assert last is None  # minute 9 was past the bound: no sample
    assert [r.minute for r in out] == [0, 1, 2, 3, 4]


def test_keep_days_zero_keeps_nothing() -> None:
    rec = CurveRecorder(1, max_duration_s=3600, keep_days=0)
    assert _tick(rec, 0.0, [1], [0.0], [10.0]) == []
    assert _tick(rec, 70.0, [1], [0.0], [10.0]) == []
    assert rec.close(0) is None
    assert rec.prune(0.0, WALL0) == CurvePrune(WALL0)  # every ended session's curve goes


def test_prune_once_an_hour() -> None:
    rec = CurveRecorder(1, max_duration_s=3600, keep_days=2)
    assert rec.prune(10.0, WALL0) == CurvePrune(WALL0 - 2 * 86400)
    assert rec.prune(3609.0, WALL0 + 3599) is None
    assert rec.prune(3610.0, WALL0 + 3600) == CurvePrune(WALL0 + 3600 - 2 * 86400)


# ----- the ledger: writer, pruning, migration ---------------------------------------------
def _session(w: LedgerWriter, sid: int, start: float, end: float | None) -> None:
    w.record(SessionStart(sid, ALICE, f"p/{sid}", start, 1000))
    for m in range(3):
        w.record(CurveMinute(sid, m, 100.0 + m, 150.0 + m, None if m == 1 else 30.0 + m))
    if end is not None:
        w.record(SessionEnd(sid, end, "full", 1100, 100))
        w.record(SessionSettle(sid, 1100, 100))


def test_curve_rows_go_through_the_writer_and_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    w = LedgerWriter(path).start()
    _session(w, 1, WALL0, None)
    w.record(CurveMinute(1, 1, 111.0, 160.0, 31.5))  # a minute written again: replaced
    w.close()  # no flush: close writes what is queued
    with closing(ledger.connect(path, create=False)) as conn:
        curve = curve_of(conn, 1)
        assert curve_of(conn, 99) is None
    assert curve is not None
    assert (curve.session_id, curve.bay, curve.card) == ("1", "p/1", ALICE)
    assert curve.t.tolist() == [0.0, 60.0, 120.0]
    assert curve.mean_w.tolist() == [100.0, 111.0, 102.0]
    assert curve.peak_w.tolist() == [150.0, 160.0, 152.0]
    assert curve.temp_c.tolist() == [30.0, 31.5, 32.0]


def test_an_empty_curve(tmp_path: Path) -> None:
    with LedgerWriter(tmp_path / "l.db") as w:
        w.record(SessionStart(1, ALICE, "p/1", WALL0, 1000))
    with closing(ledger.connect(tmp_path / "l.db")) as conn:
        curve = curve_of(conn, 1)
    assert curve is not None and len(curve) == 0


def _kept(path: Path) -> set[int]:
    with closing(sqlite3.connect(path)) as conn:
        return {r[0] for r in conn.execute("SELECT DISTINCT session FROM curves")}


def test_pruning_by_age(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    day = 86400.0
    with LedgerWriter(path) as w:
        _session(w, 1, WALL0 - 40 * day, WALL0 - 39 * day)  # ended 39 days ago
        _session(w, 2, WALL0 - 10 * day, WALL0 - 10 * day + 3600)  # 10 days ago
        _session(w, 3, WALL0 - 50 * day, None)  # still running (a restart resumed it)
        assert w.flush()
        assert _kept(path) == {1, 2, 3}
        rec = CurveRecorder(1, max_duration_s=3600, keep_days=30)
        prune = rec.prune(0.0, WALL0)
        assert prune is not None
        w.record(prune)
        assert w.flush()
        assert _kept(path) == {2, 3}
        zero = CurveRecorder(1, max_duration_s=3600, keep_days=0).prune(0.0, WALL0)
        assert zero is not None
        w.record(zero)
        assert w.flush()
        assert _kept(path) == {3}  # a running session's curve is never pruned
    with closing(ledger.connect(path)) as conn:
        assert [r.id for r in ledger.list_sessions(conn)] == [1, 2, 3]


def test_migration_from_v3_keeps_the_sessions(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    raw = sqlite3.connect(path, isolation_level=None)
    assert ledger.migrate(raw, target=3) == 0
    raw.execute(
        "INSERT INTO sessions (id, card, bay, start_at, end_at, reason, counter_start,"
        " counter_last, energy_wh) VALUES (1, ?, 'p/1', ?, ?, 'full', 100, 400, 300)",
        (ALICE, WALL0 - 7200, WALL0 - 3600),
    )
    raw.execute(
        "INSERT INTO sessions (id, card, bay, start_at, counter_start, counter_last,"
        " energy_wh) VALUES (2, ?, 'p/2', ?, 5000, 5120, 120)",
        (BOB, WALL0 - 600),
    )
    raw.execute(
        "INSERT INTO checkpoints (session, at, elapsed_s) VALUES (2, ?, 540)", (WALL0 - 60,)
    )
    raw.close()
    with closing(ledger.connect(path)) as conn:
        assert ledger.schema_version(conn) == ledger.SCHEMA_VERSION
        rows = ledger.list_sessions(conn)
        assert [(r.id, r.energy_wh, r.reason) for r in rows] == [(1, 300, "full"), (2, 120, None)]
        (open_s,) = ledger.load_state(conn, WALL0 - 86400).open_sessions
        assert (open_s.id, open_s.elapsed_s) == (2, 540.0)
        curve = curve_of(conn, 1)
        assert curve is not None and len(curve) == 0


# ----- the manager -------------------------------------------------------------------------
def test_manager_records_a_sessions_curve() -> None:
    rig = Rig(settings=settings(max_duration_s=3600), tick=5.0)
    rig.bays["p/1"].profile = lambda t: 200.0 if t < 100 else 80.0
    rig.tap("p/1", ALICE)
    rig.run(170)  # 34 ticks: minutes 0, 1 finished; minute 2 in progress
    rows = rig.ledger.of(CurveMinute)
    assert [r.minute for r in rows] == [0, 1]
    assert rows[0].peak_w == 200.0 and rows[0].temp_c is None
    assert rig.mgr.staff_stop("p/1", rig.now, rig.wall)
    rows = rig.ledger.of(CurveMinute)
    assert [r.minute for r in rows] == [0, 1, 2]
    assert rows[2].mean_w == 80.0
    # The partial minute comes before the session's end record.
    kinds = [type(r).__name__ for r in rig.ledger.records if type(r) in (CurveMinute, SessionEnd)]
    assert kinds == ["CurveMinute"] * 3 + ["SessionEnd"]
    assert len(rig.ledger.of(CurvePrune)) == 1  # the first tick; the next after an hour
