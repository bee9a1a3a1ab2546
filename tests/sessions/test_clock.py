"""Time: a session's age is monotonic elapsed time that survives a restart without trusting wall
time; sessions that start on an unsynchronized wall clock get provisional times, worked back
from the monotonic clock once it is synchronized."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

from chargectl.config.schema import SessionSettings
from chargectl.sessions import ledger
from chargectl.sessions.cards import Card
from chargectl.sessions.machine import BayObservation
from chargectl.sessions.manager import SessionManager
from chargectl.sessions.records import Checkpoint, SessionEnd, SessionStart, SessionTimes
from chargectl.sessions.writer import LedgerWriter
from tests.sessions.rig import ALICE, BOB, WALL0, Rig

HOUR = 3600.0


def _life(path: Path, *, now: float, wall: float, seconds: float, tap: bool = False) -> float:
    """Run one daemon life of `seconds` on the real ledger; returns `now` at its end."""
    writer = LedgerWriter(path).start()
    mgr = SessionManager(SessionSettings(checkpoint_s=60), writer, ["p/1"], tz=UTC)
    mgr.restore({"p/1": 1000}, wall, now)
    if tap:
        mgr.on_tap("p/1", ALICE, now, wall)
    t0 = now
    while now - t0 < seconds and (tap or mgr.session_at("p/1") is not None):
        now += 10.0
        obs = BayObservation(True, 100.0, 1000 + int((now - t0) / 36), None, False)
        mgr.update(now, wall + (now - t0), {"p/1": obs})
    writer.flush()
    writer.close()
    return now


def _open(path: Path) -> ledger.sqlite3.Connection:
    conn = ledger.connect(path)
    ledger.import_cards(conn, [Card(ALICE, "Flat 1A")], WALL0)
    return conn


def test_a_wall_clock_jump_across_a_restart_neither_ends_nor_resets_a_session(
    tmp_path: Path,
) -> None:
    path = tmp_path / "l.db"
    _open(path).close()
    # Life 1: a session runs 6 h (max_duration 12 h).
    _life(path, now=0.0, wall=WALL0, seconds=6 * HOUR, tap=True)
    # Life 2: after a reboot the monotonic clock starts again and the wall clock is 2 days
    # ahead (a wrong RTC): the session resumes at 6 h, it does not end as max_duration.
    writer = LedgerWriter(path).start()
    mgr = SessionManager(SessionSettings(checkpoint_s=60), writer, ["p/1"], tz=UTC)
    mgr.restore({"p/1": 1600}, WALL0 + 48 * HOUR, 5.0)
    s = mgr.session_at("p/1")
    assert s is not None and 6 * HOUR - 70 <= s.elapsed_s(5.0) <= 6 * HOUR
    mgr.update(15.0, WALL0 + 48 * HOUR + 10, {})
    assert mgr.session_at("p/1") is not None
    writer.flush()
    writer.close()
    # Life 3: the wall clock is now a day *behind*: the timers go on, they are not reset.
    now = 100.0
    writer = LedgerWriter(path).start()
    mgr = SessionManager(SessionSettings(checkpoint_s=60), writer, ["p/1"], tz=UTC)
    mgr.restore({"p/1": 1600}, WALL0 - 24 * HOUR, now)
    obs = BayObservation(True, 100.0, 1600, None, False)
    while mgr.session_at("p/1") is not None:
        now += 10.0
        mgr.update(now, WALL0 - 24 * HOUR + now, {"p/1": obs})
    writer.flush()
    writer.close()
    conn = ledger.connect(path)
    (reason,) = conn.execute("SELECT reason FROM sessions").fetchone()
    conn.close()
    assert reason == "max_duration"
    assert 6 * HOUR - 80 <= now - 100.0 <= 6 * HOUR + 10  # the rest of the 12 h, no more


def test_elapsed_time_is_checkpointed() -> None:
    rig = Rig()
    rig.tap("p/1", ALICE)
    rig.run(125)
    cps = rig.ledger.of(Checkpoint)
    assert [round(c.elapsed_s) for c in cps if c.elapsed_s > 0] == [60, 120]


def test_unsynced_sessions_get_their_times_once_the_clock_is_synchronized() -> None:
    rig = Rig()
    for bay in rig.bays.values():
        bay.profile = lambda t: 100.0
    boot_wall = WALL0 - 400 * 24 * HOUR  # a box without RTC believes it is a year ago
    rig.wall = boot_wall
    rig.mgr.set_wall_synced(False, rig.now, rig.wall)
    t_start = rig.now
    rig.tap("p/1", ALICE)
    rig.run(60)
    rig.tap("p/2", BOB)
    t_bob = rig.now
    rig.run(30)
    rig.mgr.staff_stop("p/2", rig.now, rig.wall)
    t_bob_end = rig.now
    rig.run(100)
    starts = rig.ledger.of(SessionStart)
    assert [s.clock_ok for s in starts] == [False, False]
    assert rig.mgr.readout().clock_synced is False
    # NTP sets the clock: the true wall time is WALL0 now.
    rig.wall = WALL0
    rig.mgr.set_wall_synced(True, rig.now, rig.wall)
    times = {t.id: t for t in rig.ledger.of(SessionTimes)}
    assert times[1].start == WALL0 - (rig.now - t_start) and times[1].end is None
    assert times[2].start == WALL0 - (rig.now - t_bob)
    assert times[2].end == WALL0 - (rig.now - t_bob_end)
    assert rig.mgr.session_at("p/1").start_wall == times[1].start  # type: ignore[union-attr]
    # Once is enough; new sessions are not provisional.
    rig.mgr.set_wall_synced(True, rig.now, rig.wall)
    assert len(rig.ledger.of(SessionTimes)) == 2
    rig.run(6)
    rig.tap("p/2", BOB)
    assert rig.ledger.of(SessionStart)[-1].clock_ok is True


def test_an_unsynced_session_resumed_after_a_restart_is_fixed_from_its_elapsed_time(
    tmp_path: Path,
) -> None:
    path = tmp_path / "l.db"
    _open(path).close()
    writer = LedgerWriter(path).start()
    mgr = SessionManager(SessionSettings(checkpoint_s=60), writer, ["p/1"], tz=UTC)
    mgr.restore({"p/1": 1000}, 1000.0, 0.0)
    mgr.set_wall_synced(False, 0.0, 1000.0)
    mgr.on_tap("p/1", ALICE, 0.0, 1000.0)
    obs = BayObservation(True, 100.0, 1000, None, False)
    for t in range(10, 130, 10):
        mgr.update(float(t), 1000.0 + t, {"p/1": obs})
    writer.flush()
    writer.close()
    writer = LedgerWriter(path).start()
    mgr = SessionManager(SessionSettings(checkpoint_s=60), writer, ["p/1"], tz=UTC)
    mgr.restore({"p/1": 1000}, 2000.0, 50.0)  # restarted; still not synchronized
    mgr.set_wall_synced(False, 50.0, 2000.0)
    mgr.update(60.0, 2010.0, {"p/1": obs})
    mgr.set_wall_synced(True, 70.0, WALL0)
    writer.flush()
    writer.close()
    conn = ledger.connect(path)
    start, clock_ok = conn.execute("SELECT start_at, clock_ok FROM sessions").fetchone()
    conn.close()
    assert clock_ok == 1 and WALL0 - (20 + 120) <= start <= WALL0 - (20 + 60)


def test_sessions_end_records_are_not_affected_by_sync() -> None:
    rig = Rig()
    rig.tap("p/1", ALICE)
    rig.run(10)
    rig.mgr.set_wall_synced(True, rig.now, rig.wall)
    assert rig.ledger.of(SessionTimes) == [] and not rig.ledger.of(SessionEnd)
