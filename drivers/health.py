"""The health of the units on a line: the policy a bus follows when a unit stops answering,
the per-unit state it keeps, the snapshot it gives out, and the backoff between attempts.
`chargectl.drivers.bus` does the bookkeeping; this module holds its types."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BusPolicy:
    # Unanswered requests in a row before a unit counts as down. 1: a unit that missed one
    # answer is not asked again until its first probe (0.25..0.5 s later, so the next tick at
    # a 1 s tick), so a tick that reads, writes and heartbeats a dead unit pays ONE timeout.
    down_after: int = 1
    probe_base_s: float = 0.5  # a down unit is probed after about this long, doubling ...
    probe_max_s: float = 8.0  # ... up to this (so a recovered unit is seen within ~8 s)
    connect_base_s: float = 0.2  # between failed connects, doubling ...
    connect_max_s: float = 10.0  # ... up to this
    retry_base_s: float = 0.05  # between attempts of one request (only with retry_for_s > 0)
    retry_max_s: float = 1.0
    # TCP: after this many unanswered requests in a row on the whole line, drop the connection
    # so the next request reconnects (a gateway that rebooted behind a half-open socket).
    silence_reconnect: int = 4


@dataclass(frozen=True, slots=True)
class UnitHealth:
    """A snapshot of one unit's health, for metrics, the status screen and tests."""

    unit: int
    device: str  # the device id (config), or "<bus>/<unit>" for a unit no driver attached
    name: str  # how errors and logs name it: "pile-a (line-1 unit 1)"
    up: bool  # answering (an exception reply counts: the unit is there)
    since: float | None  # when `up` last changed (clock.now()), None if it never did
    consecutive_failures: int  # failed requests in a row, of any class
    last_error: str | None
    errors: dict[str, int]  # failed requests by error class name
    requests: int  # requests put on the line
    skipped: int  # requests refused without asking (DeviceDown)
    next_probe_at: float | None  # when a down unit is asked again
    bad_fields: dict[str, int]  # readings with this non-critical field bad, by field name


def backoff_s(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Capped exponential backoff with "equal jitter": half fixed, half random, so that units
    and buses that failed together do not retry in lockstep. `attempt` counts from 0."""
    full = min(cap, base * 2.0 ** min(attempt, 30))
    return full / 2 + rng.uniform(0.0, full / 2)


class UnitState:
    """Mutable per-unit bookkeeping of one bus (its `UnitHealth` is a snapshot of it)."""

    def __init__(self, unit: int, device: str, name: str) -> None:
        self.unit = unit
        self.device = device
        self.name = name
        self.up = True
        self.since: float | None = None
        self.consecutive = 0
        self.silent = 0
        self.probes = 0
        self.next_probe_at = 0.0
        self.last_error: str | None = None
        self.errors: dict[str, int] = {}
        self.requests = 0
        self.skipped = 0
        self.bad_fields: dict[str, int] = {}
        self.bad_now: dict[str, frozenset[str]] = {}  # scope (hot, slow, ...) -> fields bad
