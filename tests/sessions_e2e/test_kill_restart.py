"""The daemon killed with SIGKILL at random instants while sessions run, then restarted.

`chargectl sim` and `chargectl run` are real processes. Residents tap cards to start and stop
sessions at six sockets and the wallbox (one tap at a time per device: a device holds only its
latest tap); at a random instant the daemon is killed (no fail-safe writes, no ledger flush),
stays down a random while (long enough, sometimes, for the piles' watchdogs to put them in
fail-safe) and is started again. A tap the killed daemon never committed is found out after
the restart from the ledger, like a resident who looks at the lamp and taps again.

At the end the staff stop what still runs (`chargectl sessions stop`), and then:
- every session the residents started is in the ledger exactly once, ended; no other session;
- each session's energy is its bay's counter delta over its life (the simulator's registers,
  from the counter before its tap to the counter before the bay's next tap, or the end);
- each bay's sessions add up to all the energy its counter shows: no Wh outside a session;
- `chargectl sessions list --json` and `sessions export` say the same as the ledger.
"""

from __future__ import annotations

import csv
import io
import json
import random
import sqlite3
import subprocess
import time
from contextlib import closing
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import pytest

from chargectl.config.load import load_shed
from chargectl.sessions.records import counter_delta
from tests.rig import add_cards
from tests.sessions_e2e.procs import DaemonProc, SimProc
from tests.sessions_e2e.shed import CHARGECTL, WALLBOX, counters, e2e_config, sessions

SOCKETS = [f"pile-a/{p}" for p in range(1, 7)]
PROFILES = ["li72", "li60", "lead72", "li48", "lead60", "lead48"]
BAYS = [*SOCKETS, WALLBOX]
CARDS = {bay: f"04B0{i:04X}" for i, bay in enumerate(BAYS, start=1)}
SPEED = 16.0


@dataclass
class Attempt:
    """One start tap: the bay's counter just before it, and the session it became (if any)."""

    counter: int
    session: int | None = None


@dataclass
class Bay:
    id: str
    card: str
    state: str = "idle"  # idle, starting, running, stopping
    session: int | None = None
    since: float = 0.0  # when the state last changed (monotonic)
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def device(self) -> str:
        return self.id.split("/")[0]


class Shed:
    """The residents' side: taps, and what the ledger has confirmed of them."""

    def __init__(self, sim: SimProc, ledger_path: Path, rng: random.Random) -> None:
        self.sim = sim
        self.path = ledger_path
        self.rng = rng
        self.bays = {b: Bay(b, CARDS[b]) for b in BAYS}
        self.known: set[int] = set()
        self.initial = sim.counters()
        self.kills_while_running = 0
        self.events: list[str] = []  # what happened, for a failure's message

    def note(self, what: str) -> None:
        self.events.append(f"{time.time():.2f} {what}")

    def confirm(self) -> None:
        """Move pending taps to their outcome once the ledger shows it."""
        rows = {r.id: r for r in sessions(self.path)}
        now = time.monotonic()
        for b in self.bays.values():
            if b.state == "starting":
                new = [r for r in rows.values() if r.bay == b.id and r.id not in self.known]
                if new:
                    (row,) = new  # one tap, one session
                    self.known.add(row.id)
                    b.attempts[-1].session = row.id
                    b.state, b.session, b.since = "running", row.id, now
                    self.note(f"{b.id}: session {row.id} started")
            elif b.state == "stopping" and rows[b.session or 0].end is not None:
                self.note(f"{b.id}: session {b.session} ended")
                b.state, b.session, b.since = "idle", None, now

    def after_restart(self) -> None:
        """Taps the killed daemon never committed are lost: the resident sees the lamp."""
        self.confirm()
        now = time.monotonic()
        for b in self.bays.values():
            if b.state == "starting":
                self.note(f"{b.id}: start tap lost")
                b.state, b.since = "idle", now
            elif b.state == "stopping":
                self.note(f"{b.id}: stop tap lost")
                b.state, b.since = "running", now

    def act(self) -> None:
        """Maybe one tap, at a device with nothing pending."""
        busy = {b.device for b in self.bays.values() if b.state in ("starting", "stopping")}
        free = [b for b in self.bays.values() if b.device not in busy]
        if not free:
            return
        b = self.rng.choice(free)
        now = time.monotonic()
        if b.state == "idle" and now - b.since > 0.5 and self.rng.random() < 0.7:
            b.attempts.append(Attempt(self.sim.counters()[b.id]))
            self.sim.tap(b.id, b.card)
            self.note(f"{b.id}: start tap (counter {b.attempts[-1].counter})")
            b.state, b.since = "starting", now
        elif b.state == "running" and now - b.since > 2.0 and self.rng.random() < 0.3:
            self.sim.tap(b.id, b.card)
            self.note(f"{b.id}: stop tap")
            b.state, b.since = "stopping", now

    def running(self) -> int:
        return sum(b.state in ("running", "stopping") for b in self.bays.values())


def life(shed: Shed, daemon: DaemonProc, length_s: float) -> None:
    """Residents act until the daemon is killed, `length_s` after it came up (later if no
    session runs yet: the kill must land while sessions run)."""
    shed.after_restart()
    kill_at = time.monotonic() + length_s
    while time.monotonic() < kill_at or shed.running() == 0:
        shed.confirm()
        shed.act()
        time.sleep(shed.rng.uniform(0.02, 0.3))
    daemon.kill()
    shed.note("daemon killed")
    shed.kills_while_running += 1


def run_kills(tmp_path: Path, kills: int, seed: int) -> None:
    cfg = e2e_config(
        tmp_path,
        control={"slow_poll_s": 2.0, "watchdog_s": 80},  # 5 s of wall time at SPEED
        sessions={"checkpoint_s": 3.0, "settle_s": 3.0},
        chargers=[
            {"bay": b, "profile": p, "soc": 0.2} for b, p in zip(SOCKETS, PROFILES, strict=True)
        ],
        cars=[{"device": WALLBOX, "max_a": 16, "phases": 1, "soc": 0.2}],
    )
    spec = load_shed(cfg)
    add_cards(spec, CARDS.values())
    rng = random.Random(seed)
    sim = SimProc(cfg, spec, tmp_path / "sim.log", SPEED)
    daemons: list[DaemonProc] = []
    shed = Shed(sim, spec.ledger_path(), rng)
    try:
        for _ in range(kills):
            d = DaemonProc(cfg, spec, tmp_path / "daemon.log")
            daemons.append(d)
            d.wait_up()
            shed.note("daemon up")
            life(shed, d, rng.uniform(1.0, 6.0))
            time.sleep(rng.choice([0.0, rng.uniform(0.0, 2.0), rng.uniform(5.0, 8.0)]))
        d = DaemonProc(cfg, spec, tmp_path / "daemon.log")
        daemons.append(d)
        d.wait_up()
        shed.note("daemon up (the last time)")
        finish(shed, cfg, d)
        check(shed, cfg)
    except BaseException:
        for proc in (*daemons[-1:], sim):
            print(f"----- {proc.name} log\n{proc.tail()}")
        print("----- events\n" + "\n".join(shed.events))
        print("----- ledger (id bay start end reason counter_start counter_last energy)")
        with closing(sqlite3.connect(spec.ledger_path())) as conn:
            for row in conn.execute(
                "SELECT id, bay, printf('%.2f', start_at), printf('%.2f', end_at), reason,"
                " counter_start, counter_last, energy_wh FROM sessions ORDER BY id"
            ):
                print(*row)
        raise
    finally:
        for proc in (*daemons, sim):
            proc.close()
    assert shed.kills_while_running == kills


def finish(shed: Shed, cfg: Path, daemon: DaemonProc) -> None:
    """The staff stop what still runs; the sessions settle; the daemon stops cleanly."""
    shed.after_restart()
    for b in shed.bays.values():
        if b.state == "running":
            done = _cli("sessions", "stop", b.id, "-c", str(cfg))
            assert done.stdout.strip() == f"stopped the session at {b.id}", done
            b.state = "stopping"
    deadline = time.monotonic() + 15
    while any(b.state == "stopping" for b in shed.bays.values()):
        assert time.monotonic() < deadline, "staff stops not in the ledger after 15 s"
        shed.confirm()
        time.sleep(0.1)
    time.sleep(3.0 + 2.0 + 2.0)  # settle_s, a slow poll, a margin: the counters are final
    assert daemon.terminate() == 0


def check(shed: Shed, cfg: Path) -> None:
    final = shed.sim.counters()
    rows = sessions(shed.path)
    assert [r.id for r in rows] == sorted(shed.known), "sessions lost or invented"
    assert len({r.id for r in rows}) == len(rows)
    by_id = {r.id: r for r in rows}
    problems = []
    for b in shed.bays.values():
        marks = [a.counter for a in b.attempts] + [final[b.id]]
        total = 0
        for k, a in enumerate(b.attempts):
            if a.session is None:
                continue
            row = by_id[a.session]
            if counters(shed.path, row.id).delta != row.energy_wh:
                problems.append(f"session {row.id}: {counters(shed.path, row.id)} in the ledger")
            truth = counter_delta(a.counter, marks[k + 1])
            total += row.energy_wh
            if row.end is None or row.reason not in ("user_stop", "staff_stop"):
                problems.append(f"session {row.id} at {b.id}: {row.end=} {row.reason=}")
            if abs(row.energy_wh - truth) > 1:
                problems.append(
                    f"session {row.id} at {b.id}: ledger {row.energy_wh} Wh, counter delta "
                    f"{truth} Wh (counters {a.counter} -> {marks[k + 1]})"
                )
        shown = counter_delta(shed.initial[b.id], final[b.id])
        if abs(total - shown) > 1:
            problems.append(f"{b.id}: sessions {total} Wh, counter moved {shown} Wh")
    assert not problems, "\n".join(problems)
    assert sum(1 for r in rows if r.energy_wh > 0) >= 3, "hardly anything charged"

    listed = json.loads(_cli("sessions", "list", "--json", "-c", str(cfg)).stdout)
    assert [
        (r["id"], r["card"], r["bay"], r["reason"], r["energy_wh"], r["start"], r["end"])
        for r in listed
    ] == [(r.id, r.card, r.bay, r.reason, r.energy_wh, r.start, r.end) for r in rows]
    days = (date.today() - timedelta(days=1)).isoformat(), (date.today() + timedelta(1)).isoformat()
    out = _cli("sessions", "export", "--from", days[0], "--to", days[1], "-c", str(cfg)).stdout
    exported = list(csv.DictReader(io.StringIO(out)))
    assert [(int(e["session"]), e["bay"], e["reason"], e["kwh"]) for e in exported] == [
        (r.id, r.bay, r.reason, f"{r.energy_wh / 1000:.3f}") for r in rows
    ]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [CHARGECTL, *args], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done
    return done


@pytest.mark.timeout(240)
def test_sigkill_restarts_lose_nothing_and_count_nothing_twice(tmp_path: Path) -> None:
    run_kills(tmp_path, kills=3, seed=5)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("seed", [11, 12])
def test_sigkill_restarts_long(tmp_path: Path, seed: int) -> None:
    run_kills(tmp_path, kills=22, seed=seed)
