"""Test doubles for the session manager: a recording ledger port and a small shed loop.

`Rig` plays the controller and the devices: each tick it closes the relay of every bay that
wants current (unless told to hold it open), lets the charger draw what its power profile
says, advances the bay's Wh counter like a pile does (integer Wh, u32 wrap), and hands the
manager the observation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from chargectl.config.schema import SessionSettings
from chargectl.sessions.cards import Card, CardBook
from chargectl.sessions.machine import BayObservation
from chargectl.sessions.manager import SessionManager, TapResult
from chargectl.sessions.records import U32, LedgerRecord, LedgerState

WALL0 = datetime(2026, 1, 15, 8, 0, tzinfo=UTC).timestamp()
ALICE = "04A1B2C3"
BOB = "04D5E6F7A8B9C0"
CAROL = "0102030405060708"


class FakeLedger:
    def __init__(self, cards: Iterable[Card] = (), state: LedgerState | None = None) -> None:
        self.book: dict[str, Card] = {c.uid: c for c in cards}
        self.state = state or LedgerState((), 1, {})
        self.records: list[LedgerRecord] = []
        self.since: float | None = None

    def cards(self) -> CardBook:
        return self.book

    def load_state(self, since: float) -> LedgerState:
        self.since = since
        return self.state

    def record(self, rec: LedgerRecord) -> None:
        self.records.append(rec)

    def of(self, kind: type) -> list:
        return [r for r in self.records if isinstance(r, kind)]


Profile = Callable[[float], float]  # seconds since the relay first closed -> W


@dataclass
class BaySim:
    counter: float = 1000.0  # Wh (the device keeps fractions; the register shows integers)
    profile: Profile = field(default=lambda t: 0.0)
    closed_since: float | None = None
    hold_open: bool = False
    fault: str | None = None
    plugged: bool | None = None
    answers: bool = True
    power: float = 0.0
    offset: int = 0  # added to the counter as read (a glitching register), mod 2**32
    reports_power: bool = True  # False: the device reports current x voltage only
    va_per_w: float = 1.0  # apparent over active power (a charger without PFC: 1.5..2)
    idle_va: float = 0.0  # apparent power at no active power (a charger's idle draw)


class Rig:
    def __init__(
        self,
        *,
        settings: SessionSettings | None = None,
        cards: Iterable[Card] = (
            Card(ALICE, "Flat 1A"),
            Card(BOB, "Flat 2B"),
            Card(CAROL, "Flat 3C"),
        ),
        bays: tuple[str, ...] = ("p/1", "p/2"),
        tick: float = 1.0,
        state: LedgerState | None = None,
        counters: dict[str, int | None] | None = None,
        max_power_w: dict[str, float] | None = None,
    ) -> None:
        self.settings = settings or SessionSettings()
        self.ledger = FakeLedger(cards, state)
        self.mgr = SessionManager(self.settings, self.ledger, bays, tz=UTC, max_power_w=max_power_w)
        self.tick = tick
        self.now = 100.0
        self.wall = WALL0
        self.bays = {b: BaySim() for b in bays}
        self.emergency = False
        if counters:
            for b, c in counters.items():
                if c is not None:
                    self.bays[b].counter = float(c)
        start = (
            counters if counters is not None else {b: int(s.counter) for b, s in self.bays.items()}
        )
        self.mgr.restore(start, self.wall, self.now)

    def tap(self, bay: str, uid: str) -> TapResult:
        return self.mgr.on_tap(bay, uid, self.now, self.wall)

    def set_card(self, card: Card) -> None:
        self.ledger.book[card.uid] = card

    def step(self) -> None:
        dt = self.tick
        self.now += dt
        self.wall += dt
        wants = self.mgr.demand()
        obs: dict[str, BayObservation] = {}
        for bay, sim in self.bays.items():
            closed = wants[bay].wants_current and not sim.hold_open and sim.fault is None
            closed = (
                closed and not self.emergency and sim.plugged is not False
            )  # no car: no contactor
            if closed and sim.closed_since is None:
                sim.closed_since = self.now
            sim.power = (
                sim.profile(self.now - sim.closed_since)
                if closed and sim.closed_since is not None
                else 0.0
            )
            sim.counter = (sim.counter + sim.power * dt / 3600.0) % U32
            if not sim.answers:
                continue
            va = sim.power * sim.va_per_w + (sim.idle_va if closed else 0.0)
            obs[bay] = BayObservation(
                relay_closed=closed,
                power_w=sim.power if sim.reports_power else None,
                energy_wh=(int(sim.counter) + sim.offset) % U32,
                fault=sim.fault,
                emergency=self.emergency,
                plugged=sim.plugged,
                va=va,
            )
        self.mgr.update(self.now, self.wall, obs)

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / self.tick)):
            self.step()

    def run_until_idle(self, bay: str, limit_s: float) -> float:
        """Run until the bay's session ends; return the seconds it took."""
        t0 = self.now
        while self.mgr.session_at(bay) is not None:
            if self.now - t0 > limit_s:
                raise AssertionError(f"{bay}: session still open after {limit_s} s")
            self.step()
        return self.now - t0


def settings(**kw: float) -> SessionSettings:
    return replace(SessionSettings(), **kw)
