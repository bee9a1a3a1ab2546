"""Restarts with the real ledger: a process killed at a random instant loses what its writer
had not committed; after the restart every session's energy is its bay's counter delta."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

import pytest

from chargectl.config.schema import SessionSettings
from chargectl.sessions import ledger
from chargectl.sessions.cards import Card
from chargectl.sessions.machine import BayObservation
from chargectl.sessions.manager import SessionManager
from chargectl.sessions.records import U32, LedgerRecord, counter_delta
from chargectl.sessions.writer import LedgerWriter
from tests.sessions.rig import WALL0

pytestmark = pytest.mark.timeout(120)

BAYS = [f"p/{i}" for i in range(1, 7)]
CARDS = [f"0400{i:04X}" for i in range(1, 7)]


class Killable:
    """A port that forwards to the writer until the process is 'killed'."""

    def __init__(self, writer: LedgerWriter) -> None:
        self.writer = writer
        self.dead = False

    def cards(self):  # type: ignore[no-untyped-def]
        return self.writer.cards()

    def load_state(self, since: float):  # type: ignore[no-untyped-def]
        return self.writer.load_state(since)

    def record(self, rec: LedgerRecord) -> None:
        if not self.dead:
            self.writer.record(rec)


@dataclass
class Bay:
    counter: float
    watts: float


def run_life(
    path: Path, bays: dict[str, Bay], rng: random.Random, *, t: float, ticks: int, kill_at: int
) -> float:
    writer = LedgerWriter(path).start()
    port = Killable(writer)
    mgr = SessionManager(SessionSettings(checkpoint_s=30), port, BAYS, tz=UTC)
    mgr.restore({b: int(s.counter) for b, s in bays.items()}, WALL0 + t, t)
    for tick in range(ticks):
        t += 1.0
        if tick == kill_at:
            port.dead = True  # SIGKILL: what is queued and not committed is gone
        for i, bay in enumerate(BAYS):
            if rng.random() < 0.01:
                mgr.on_tap(bay, CARDS[i], t, WALL0 + t)
        wants = mgr.demand()
        obs = {}
        for bay, s in bays.items():
            on = wants[bay].wants_current
            s.counter = (s.counter + (s.watts if on else 0.0) / 3600.0) % U32
            known = rng.random() < 0.2  # the slow block: the counter is read now and then
            obs[bay] = BayObservation(
                on, s.watts if on else 0.0, int(s.counter) if known else None, None, False
            )
        mgr.update(t, WALL0 + t, obs)
        if port.dead:
            break
    writer.flush()
    writer.close()
    return t


@pytest.mark.parametrize("seed", range(4))
def test_energy_survives_random_kills(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    path = tmp_path / "l.db"
    conn = ledger.connect(path)
    ledger.import_cards(conn, [Card(c, f"Flat {c}") for c in CARDS], WALL0)
    conn.close()
    # One bay starts just under the wrap.
    bays = {
        b: Bay(
            counter=float(U32 - 200 if i == 0 else rng.randrange(10**6)),
            watts=rng.choice([150.0, 300.0, 3600.0]),
        )
        for i, b in enumerate(BAYS)
    }
    t = 0.0
    for _ in range(5):
        t = run_life(path, bays, rng, t=t, ticks=600, kill_at=rng.randrange(50, 600))
    # A last life that ends everything cleanly.
    writer = LedgerWriter(path).start()
    mgr = SessionManager(SessionSettings(), writer, BAYS, tz=UTC)
    mgr.restore({b: int(s.counter) for b, s in bays.items()}, WALL0 + t, t)
    for bay in BAYS:
        mgr.staff_stop(bay, t, WALL0 + t)
    writer.flush()
    writer.close()

    conn = ledger.connect(path)
    rows = conn.execute(
        "SELECT id, bay, counter_start, counter_last, energy_wh, end_at FROM sessions ORDER BY id"
    ).fetchall()
    conn.close()
    assert rows, "no session ran"
    assert all(r[5] is not None for r in rows)
    per_bay: dict[str, int] = {}
    for _sid, bay, c0, c1, energy, _end in rows:
        assert energy == counter_delta(c0, c1)
        per_bay[bay] = per_bay.get(bay, 0) + energy
    # Energy flows only while a session wants it, so the sessions of a bay add up to all the
    # energy its counter shows (within 1 Wh per session for integer readings).
    for bay in BAYS:
        mine = [r for r in rows if r[1] == bay]
        if not mine:
            continue
        shown = counter_delta(mine[0][2], int(bays[bay].counter))
        assert per_bay[bay] <= shown, bay  # nothing counted twice
        assert per_bay[bay] >= shown - 2 * len(mine), bay  # nothing lost beyond rounding
