"""The daemon's side of the ledger: the state a start-up resumes from (`load_state`) and
the records the writer thread applies, one transaction per batch (`apply`).

Callers import these names through `chargectl.sessions.ledger`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from chargectl.sessions.ledger_schema import transaction
from chargectl.sessions.records import (
    CardFlag,
    Checkpoint,
    CurveMinute,
    CurvePrune,
    EndedRecord,
    Latch,
    LatchClear,
    LedgerRecord,
    LedgerState,
    OpenSession,
    SessionEnd,
    SessionSettle,
    SessionStart,
    SessionTimes,
    TapRecord,
)


def load_state(conn: sqlite3.Connection, since: float) -> LedgerState:
    rows = conn.execute(
        "SELECT s.id, s.card, s.bay, s.start_at, s.counter_start, s.counter_last,"
        " k.peak_w, k.closed_s, k.had_load, k.low_s, k.topup_s, k.elapsed_s, k.at, s.clock_ok,"
        " k.had_first_load"
        " FROM sessions s LEFT JOIN checkpoints k ON k.session = s.id"
        " WHERE s.end_at IS NULL ORDER BY s.id"
    ).fetchall()
    open_sessions = tuple(
        OpenSession(
            id=int(r[0]),
            card=str(r[1]),
            bay=str(r[2]),
            start=float(r[3]),
            counter_start=r[4],
            counter_last=r[5],
            peak_w=float(r[6] or 0.0),
            closed_s=float(r[7] or 0.0),
            had_load=bool(r[8]),
            low_s=float(r[9] or 0.0),
            topup_s=None if r[10] is None else float(r[10]),
            elapsed_s=None if r[11] is None else float(r[11]),
            checkpoint_at=None if r[12] is None else float(r[12]),
            clock_ok=bool(r[13]),
            had_first_load=bool(r[14]),
        )
        for r in rows
    )
    top = conn.execute("SELECT COALESCE(MAX(id), 0) FROM sessions").fetchone()[0]
    used = conn.execute(
        "SELECT card, SUM(energy_wh) FROM sessions WHERE end_at IS NOT NULL AND start_at >= ?"
        " GROUP BY card",
        (since,),
    ).fetchall()
    # A session keeps its checkpoints row from its start until it has settled (see _settle).
    settling = tuple(
        EndedRecord(
            id=int(r[0]),
            card=str(r[1]),
            bay=str(r[2]),
            start=float(r[3]),
            end=float(r[4]),
            reason=str(r[5]),
            counter_start=r[6],
            counter_last=r[7],
            energy_wh=int(r[8]),
        )
        for r in conn.execute(
            "SELECT s.id, s.card, s.bay, s.start_at, s.end_at, s.reason, s.counter_start,"
            " s.counter_last, s.energy_wh FROM sessions s JOIN checkpoints k ON k.session = s.id"
            " WHERE s.end_at IS NOT NULL ORDER BY s.id"
        )
    )
    return LedgerState(open_sessions, int(top) + 1, {str(c): int(e) for c, e in used}, settling)


def _start(conn: sqlite3.Connection, r: SessionStart) -> None:
    conn.execute(
        "INSERT INTO sessions (id, card, bay, start_at, counter_start, counter_last, clock_ok)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (r.id, r.card, r.bay, r.start, r.counter_start, r.counter_start, int(r.clock_ok)),
    )
    conn.execute(
        "INSERT INTO checkpoints (session, at, elapsed_s) VALUES (?, ?, 0)", (r.id, r.start)
    )


def _checkpoint(conn: sqlite3.Connection, r: Checkpoint) -> None:
    conn.execute(
        "UPDATE sessions SET counter_start = COALESCE(counter_start, ?), counter_last = ?,"
        " energy_wh = ? WHERE id = ? AND end_at IS NULL",
        (r.counter_start, r.counter_last, r.energy_wh, r.id),
    )
    conn.execute(
        "INSERT INTO checkpoints"
        " (session, at, peak_w, closed_s, had_load, low_s, topup_s, elapsed_s, had_first_load)"
        " SELECT ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE EXISTS"
        " (SELECT 1 FROM sessions WHERE id = ? AND end_at IS NULL)"
        " ON CONFLICT (session) DO UPDATE SET at = excluded.at, peak_w = excluded.peak_w,"
        " closed_s = excluded.closed_s, had_load = excluded.had_load, low_s = excluded.low_s,"
        " topup_s = excluded.topup_s, elapsed_s = excluded.elapsed_s,"
        " had_first_load = excluded.had_first_load",
        (
            r.id,
            r.at,
            r.peak_w,
            r.closed_s,
            int(r.had_load),
            r.low_s,
            r.topup_s,
            r.elapsed_s,
            int(r.had_first_load),
            r.id,
        ),
    )


def _end(conn: sqlite3.Connection, r: SessionEnd) -> None:
    conn.execute(
        "UPDATE sessions SET end_at = ?, reason = ?, counter_start = COALESCE(counter_start, ?),"
        " counter_last = ?, energy_wh = ? WHERE id = ? AND end_at IS NULL",
        (r.end, r.reason, r.counter_start, r.counter_last, r.energy_wh, r.id),
    )
    # The checkpoints row stays until the session has settled: a restart before that settles
    # it with the counter it reads (the reading that completes a session may not have come).


def _settle(conn: sqlite3.Connection, r: SessionSettle) -> None:
    conn.execute(
        "UPDATE sessions SET counter_last = COALESCE(?, counter_last), energy_wh = ?"
        " WHERE id = ? AND end_at IS NOT NULL",
        (r.counter_last, r.energy_wh, r.id),
    )
    conn.execute(
        "DELETE FROM checkpoints WHERE session = ?"
        " AND EXISTS (SELECT 1 FROM sessions WHERE id = ? AND end_at IS NOT NULL)",
        (r.id, r.id),
    )


def _times(conn: sqlite3.Connection, r: SessionTimes) -> None:
    conn.execute(
        "UPDATE sessions SET start_at = ?, end_at = COALESCE(?, end_at), clock_ok = 1 WHERE id = ?",
        (r.start, r.end, r.id),
    )


def _tap(conn: sqlite3.Connection, r: TapRecord) -> None:
    conn.execute(
        "INSERT INTO taps (at, bay, uid, result, session) VALUES (?, ?, ?, ?, ?)",
        (r.at, r.bay, r.uid, r.result, r.session),
    )


def _curve_minute(conn: sqlite3.Connection, r: CurveMinute) -> None:
    conn.execute(
        "INSERT INTO curves (session, minute, mean_w, peak_w, temp_c) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (session, minute) DO UPDATE SET mean_w = excluded.mean_w,"
        " peak_w = excluded.peak_w, temp_c = excluded.temp_c",
        (r.id, r.minute, r.mean_w, r.peak_w, r.temp_c),
    )


def _curve_prune(conn: sqlite3.Connection, r: CurvePrune) -> None:
    conn.execute(
        "DELETE FROM curves WHERE session IN"
        " (SELECT id FROM sessions WHERE end_at IS NOT NULL AND end_at < ?)",
        (r.ended_before,),
    )


def _card_flag(conn: sqlite3.Connection, r: CardFlag) -> None:
    conn.execute(
        "INSERT INTO card_flags (uid, reason, at, session, bay) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (uid) DO UPDATE SET reason = excluded.reason, at = excluded.at,"
        " session = excluded.session, bay = excluded.bay",
        (r.uid, r.reason, r.at, r.session, r.bay),
    )


def load_latches(conn: sqlite3.Connection) -> tuple[Latch, ...]:
    """The latches staff have not cleared yet: a start-up hands them to the core."""
    return tuple(
        Latch(str(k), str(s), str(r), float(a))
        for k, s, r, a in conn.execute(
            "SELECT kind, subject, reason, at FROM latches ORDER BY kind, subject"
        )
    )


def _latch(conn: sqlite3.Connection, r: Latch) -> None:
    if r.kind == "alarm":  # one shed alarm: the latest latch replaces any other pile's
        conn.execute("DELETE FROM latches WHERE kind = 'alarm' AND subject != ?", (r.subject,))
    # Set again while latched (a restart's first tick): the first time stays.
    conn.execute(
        "INSERT INTO latches (kind, subject, reason, at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (kind, subject) DO UPDATE SET reason = excluded.reason",
        (r.kind, r.subject, r.reason, r.at),
    )


def _latch_clear(conn: sqlite3.Connection, r: LatchClear) -> None:
    if r.subject is None:
        conn.execute("DELETE FROM latches WHERE kind = ?", (r.kind,))
    else:
        conn.execute("DELETE FROM latches WHERE kind = ? AND subject = ?", (r.kind, r.subject))


_APPLY: dict[type, Callable[[sqlite3.Connection, LedgerRecord], None]] = {
    SessionStart: _start,  # type: ignore[dict-item]
    Checkpoint: _checkpoint,  # type: ignore[dict-item]
    SessionEnd: _end,  # type: ignore[dict-item]
    SessionSettle: _settle,  # type: ignore[dict-item]
    SessionTimes: _times,  # type: ignore[dict-item]
    TapRecord: _tap,  # type: ignore[dict-item]
    CurveMinute: _curve_minute,  # type: ignore[dict-item]
    CurvePrune: _curve_prune,  # type: ignore[dict-item]
    CardFlag: _card_flag,  # type: ignore[dict-item]
    Latch: _latch,  # type: ignore[dict-item]
    LatchClear: _latch_clear,  # type: ignore[dict-item]
}


def apply(conn: sqlite3.Connection, records: Sequence[LedgerRecord]) -> None:
    """Write records in one transaction, in order."""
    with transaction(conn):
        for rec in records:
            _APPLY[type(rec)](conn, rec)
