"""Cost of the session layer on the control loop, for a campus-sized shed (202 bays), and of
the ledger writer behind it, printed as JSON lines.

- update_demand: SessionManager.update + demand for 202 bays, every bay in a session and
  charging (the worst case), per tick;
- record: one LedgerWriter.record call (what the tick pays for a checkpoint or a tap);
- writer_drain: records per second the writer thread commits (taps, batched);
- card_reload: the time for a staff card change to reach the daemon's card book.

Run: .venv/bin/python benchmarks/sessions_tick.py
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from datetime import UTC
from pathlib import Path

from chargectl.config.schema import SessionSettings
from chargectl.sessions import ledger
from chargectl.sessions.cards import Card
from chargectl.sessions.machine import BayObservation
from chargectl.sessions.manager import SessionManager
from chargectl.sessions.records import TapRecord
from chargectl.sessions.writer import LedgerWriter

WALL0 = 1_767_225_600.0
BAYS = [f"pile-{p}/{i}" for p in range(10) for i in range(1, 21)] + ["wb-1", "wb-2"]
TICKS = 3000


def pct(xs: list[float], q: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))]


def bench_update(path: Path) -> None:
    conn = ledger.connect(path)
    cards = [Card(f"04{i:06X}", f"Flat {i}") for i in range(1, len(BAYS) + 1)]
    ledger.import_cards(conn, cards, WALL0)
    conn.close()
    with LedgerWriter(path) as w:  # reads the card book as it starts
        mgr = SessionManager(SessionSettings(), w, BAYS, tz=UTC)
        mgr.restore(dict.fromkeys(BAYS, 1000), WALL0, 0.0)
        for bay, card in zip(BAYS, cards, strict=True):
            mgr.on_tap(bay, card.uid, 0.0, WALL0)
        times: list[float] = []
        for k in range(1, TICKS + 1):
            now = k * 0.25
            obs = {
                b: BayObservation(
                    True,
                    300.0,
                    1000 + int(k * 0.02),
                    None,
                    False,
                    True if b.startswith("wb") else None,
                )
                for b in BAYS
            }
            t0 = time.perf_counter()
            mgr.update(now, WALL0 + now, obs)
            mgr.demand()
            times.append(time.perf_counter() - t0)
        assert mgr.readout().active == len(BAYS)
        print(
            json.dumps(
                {
                    "bench": "sessions.update_demand",
                    "bays": len(BAYS),
                    "ticks": TICKS,
                    "p50_ms": round(statistics.median(times) * 1e3, 3),
                    "p99_ms": round(pct(times, 0.99) * 1e3, 3),
                    "max_ms": round(max(times) * 1e3, 3),
                }
            )
        )


def bench_writer(path: Path) -> None:
    n = 50_000
    with LedgerWriter(path, reload_s=0.05) as w:
        recs = [TapRecord(WALL0 + i, "pile-0/1", "04000001", "started", None) for i in range(n)]
        t0 = time.perf_counter()
        for r in recs:
            w.record(r)
        enqueue = time.perf_counter() - t0
        w.flush(120)
        total = time.perf_counter() - t0
        print(
            json.dumps(
                {
                    "bench": "sessions.record",
                    "records": n,
                    "per_call_us": round(enqueue / n * 1e6, 3),
                }
            )
        )
        print(
            json.dumps(
                {
                    "bench": "sessions.writer_drain",
                    "records": n,
                    "records_per_s": round(n / total),
                }
            )
        )
        lags = []
        staff = ledger.connect(path)
        for i in range(20):
            uid = f"05{i:06X}"
            t0 = time.perf_counter()
            ledger.add_card(staff, Card(uid, "x"), WALL0)
            while uid not in w.cards():
                time.sleep(0.001)
            lags.append(time.perf_counter() - t0)
        staff.close()
        print(
            json.dumps(
                {
                    "bench": "sessions.card_reload",
                    "reload_s": 0.05,
                    "p50_ms": round(statistics.median(lags) * 1e3, 1),
                    "max_ms": round(max(lags) * 1e3, 1),
                }
            )
        )


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        bench_update(Path(d) / "a.db")
        bench_writer(Path(d) / "b.db")


if __name__ == "__main__":
    main()
