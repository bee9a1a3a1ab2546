"""What a replay records: the truth of the simulated shed per tick, and each session's story.

A `Recording` is plain data (numpy arrays, frozen rows) filled by the runner
(chargectl/replay/runner.py) and read by everything after it: the report
(chargectl/replay/report.py), the trace CSV files (trace.py) and the picture (plot.py). Every
figure of the report is computed from a `Recording` alone, and the trace files hold all of it,
so the report can be recomputed from them.

Per tick (`n` ticks, `c` circuits, 3 supply phases; a phase a circuit does not carry is 0 in
the amps and NaN in nothing: `phases` says which ones count):

- `times`: the tick's simulated time, seconds from the replay's start;
- `amps`: the TRUE current through each circuit's breaker per phase (the simulator's, not the
  controller's estimate), sampled at the tick; `peak_amps` the highest of the world's steps
  since the tick before (so an overload between two ticks is seen);
- `over_s`: per circuit, the seconds since the tick before during which any of its phases
  carried more than its `limit_a` (summed over the world's steps, not sampled);
- `thermal`: each breaker pole's thermal state (1.0 = it trips), the highest since the tick
  before; `closed`: each breaker closed at the tick;
- `capacity_w`: what the shed may draw for charging at the tick, in truth: each root
  circuit's limit less the true unmanaged current through it, times the supply voltage,
  summed over its phases and the roots (the ideal bound's pot);
- `charging`: sockets and wallboxes drawing current; `waiting`: sessions that want current
  (the controller's demand) on a bay the controller has not switched on (relay open, or a
  wallbox offering nothing) and that has drawn none in truth for longer than a start
  takes (`START_GRACE_S` in the runner: the tap read, the next tick, the staggered close, the
  charger's soft start), so a session that is being started is not counted as kept waiting;
- `unused_ratio`: the unused fraction of the binding circuit-phase's limit, in truth (the
  least, over circuits and phases, of (limit - true current) / limit, at least 0).

Sessions: one `SessionRecord` per session the ledger knows, with the truth beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: int  # the ledger's session id
    card: str  # the card's UID, hex
    bay: str
    car: bool  # at a wallbox
    plug_at: float  # seconds from the start
    tap_at: float
    first_current_at: float | None  # the first tick with current drawn in truth
    end_at: float | None  # None: still open when the replay ended
    end_reason: str | None  # the ledger's reason
    leave_at: float | None  # unplugged by its owner (None: past the replay's end)
    soc_start: float
    soc_end: float
    wanted_wh: float  # what the battery wanted at the socket to reach full (from soc_start)
    max_w: float  # the most it draws at the socket (a charger's CC power; a car's max_a)
    delivered_wh: float  # energy through the socket during the session, in truth
    ledger_wh: float  # energy the ledger booked to the session
    switches: int  # relay (or a wallbox's charging) on/off changes while the session ran
    full: bool  # the battery reached full (float stage, or a car's soc 1) before it left
    # What its charger would have drawn alone, never switched off, over its stay (replay/alone.py);
    # inf for a car (capped by what it wanted only).
    alone_wh: float = math.inf

    @property
    def wanted_fraction(self) -> float:
        """The share of what the battery wanted that it got (1.0 when it wanted nothing)."""
        want = 1.0 - self.soc_start
        return 1.0 if want <= 1e-9 else min(1.0, max(0.0, (self.soc_end - self.soc_start) / want))


@dataclass(frozen=True, slots=True)
class Mark:
    """Something that happened at a time: a trip or a fault (with its end), for the picture."""

    at: float
    kind: str  # "trip" or "fault"
    label: str
    until: float | None = None


@dataclass
class Recording:
    scenario: str
    policy: str
    seed: int
    tick_s: float
    duration_s: float
    circuits: tuple[str, ...]
    phases: tuple[tuple[int, ...], ...]  # each circuit's supply phases, 1-based
    limit_a: np.ndarray  # (c,)
    times: np.ndarray  # (n,)
    amps: np.ndarray  # (n, c, 3)
    peak_amps: np.ndarray  # (n, c, 3)
    over_s: np.ndarray  # (n, c)
    thermal: np.ndarray  # (n, c, 3)
    closed: np.ndarray  # (n, c) bool
    capacity_w: np.ndarray  # (n,)
    charging: np.ndarray  # (n,) int
    waiting: np.ndarray  # (n,) int
    unused_ratio: np.ndarray  # (n,)
    sessions: list[SessionRecord] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    turned_away: int = 0  # arrivals that found no bay free
    wall_s: float = 0.0  # the run's wall time (not part of the truth)

    @property
    def ticks(self) -> int:
        return int(self.times.shape[0])

    def phase_mask(self) -> np.ndarray:
        """(c, 3) bool: the phases each circuit carries."""
        mask = np.zeros((len(self.circuits), 3), dtype=bool)
        for i, phs in enumerate(self.phases):
            for p in phs:
                mask[i, p - 1] = True
        return mask


def empty(  # noqa: PLR0917 (what ran and the shape of its arrays)
    scenario: str,
    policy: str,
    seed: int,
    tick_s: float,
    duration_s: float,
    circuits: tuple[str, ...],
    phases: tuple[tuple[int, ...], ...],
    limit_a: np.ndarray,
    n: int,
) -> Recording:
    """A recording with room for `n` ticks (the runner trims it to the ticks it ran)."""
    c = len(circuits)
    return Recording(
        scenario=scenario,
        policy=policy,
        seed=seed,
        tick_s=tick_s,
        duration_s=duration_s,
        circuits=circuits,
        phases=phases,
        limit_a=np.asarray(limit_a, dtype=np.float64),
        times=np.zeros(n),
        amps=np.zeros((n, c, 3)),
        peak_amps=np.zeros((n, c, 3)),
        over_s=np.zeros((n, c)),
        thermal=np.zeros((n, c, 3)),
        closed=np.ones((n, c), dtype=bool),
        capacity_w=np.zeros(n),
        charging=np.zeros(n, dtype=np.int64),
        waiting=np.zeros(n, dtype=np.int64),
        unused_ratio=np.zeros(n),
    )


def trimmed(rec: Recording, n: int) -> Recording:
    """`rec` with its per-tick arrays cut to the first `n` ticks."""
    for name in (
        "times",
        "amps",
        "peak_amps",
        "over_s",
        "thermal",
        "closed",
        "capacity_w",
        "charging",
        "waiting",
        "unused_ratio",
    ):
        setattr(rec, name, getattr(rec, name)[:n].copy())
    return rec
