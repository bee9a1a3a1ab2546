"""The allocation problem: its types, and the topology as flat index arrays.

Two views of one problem:
- `Problem` (circuits and bays as frozen records) is what `chargectl plan` reads, what the
  plain-Python reference solves and what tests build;
- `Topology` (built once per shed) plus per-tick value arrays is what the kernel solves.

Phases are numbered 1..3 as people number them (as in `chargectl.config.schema`); arrays put them on
a last axis of 3 (L1..L3). Every structural mistake raises `ProblemError`, whose message names
the circuit or bay at fault.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

PHASES = (1, 2, 3)
# A bay fits when the sum is at most the limit plus this (rule 2); the same slack decides
# whether unmanaged load alone makes a circuit infeasible (rule 4).
FIT_EPS_A = 1e-9
# Priorities are integers 0 .. PRIORITY_LIMIT - 1 (the kernel packs them into 31 bits).
PRIORITY_LIMIT = 1 << 31
# A circuit-phase "binds" when its planned load is within this of its limit (or above it).
BIND_TOL_A = 1e-6


class ProblemError(ValueError):
    """A bad problem (structure or values). The message names the circuit or bay."""


@dataclass(frozen=True, slots=True)
class CircuitSpec:
    id: str
    parent: str | None  # None: a root (a supply)
    phases: tuple[int, ...]  # the phases it carries, 1..3


@dataclass(frozen=True, slots=True)
class BaySpec:
    id: str
    circuit: str
    phases: tuple[int, ...]  # the phases it draws on, 1..3 (the same current on each)


@dataclass(frozen=True, slots=True)
class ProblemCircuit:
    id: str
    parent: str | None
    limit_a: tuple[float | None, float | None, float | None]  # None: no such phase
    unmanaged_a: tuple[float, float, float]  # 0 on a phase the circuit lacks

    @property
    def phases(self) -> tuple[int, ...]:
        return tuple(p for p in PHASES if self.limit_a[p - 1] is not None)

    def spec(self) -> CircuitSpec:
        return CircuitSpec(self.id, self.parent, self.phases)


@dataclass(frozen=True, slots=True)
class ProblemBay:
    id: str
    circuit: str
    phases: tuple[int, ...]  # 1..3, ascending
    min_a: float
    max_a: float
    priority: int = 0
    credit: float = 0.0
    on: bool = False

    def spec(self) -> BaySpec:
        return BaySpec(self.id, self.circuit, self.phases)


@dataclass(frozen=True, slots=True)
class Problem:
    circuits: tuple[ProblemCircuit, ...]
    bays: tuple[ProblemBay, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    """A result keyed by id: what `chargectl plan` prints and what the reference returns."""

    setpoints: dict[str, float]  # bay -> A (0: off)
    planned_a: dict[str, tuple[float | None, ...]]  # circuit -> per phase (None: no phase)
    binding: dict[str, tuple[bool | None, ...]]  # circuit -> per phase (None: no phase)
    infeasible: tuple[tuple[str, int], ...]  # (circuit, phase 1..3), in circuit order


@dataclass(frozen=True, eq=False)
class Topology:
    """Circuits and bays as index arrays. Circuit i is `circuit_ids[i]`, bay j is
    `bay_ids[j]`: the caller's order, so the per-tick arrays follow the caller's numbering.

    The kernel also needs a few derived orders, all built here once:
    - `preorder`: circuits parents-first, each subtree contiguous;
    - `subtree_bays[sub_lo[c]:sub_hi[c]]`: the bays in circuit c's subtree;
    - `id_rank`: a bay's rank by id (the last admission tie-break).
    """

    circuit_ids: tuple[str, ...]
    bay_ids: tuple[str, ...]
    parent: IntArray  # [C] parent index, -1 for a root
    has_phase: BoolArray  # [C, 3]
    preorder: IntArray  # [C]
    sub_lo: IntArray  # [C]
    sub_hi: IntArray  # [C]
    bay_circuit: IntArray  # [B]
    bay_phase: BoolArray  # [B, 3]
    id_rank: IntArray  # [B]
    by_id: IntArray  # [B] the bay of each id rank (the inverse of id_rank)
    subtree_bays: IntArray  # [B]
    depth: int  # circuits on the longest root-to-leaf path

    @property
    def n_circuits(self) -> int:
        return len(self.circuit_ids)

    @property
    def n_bays(self) -> int:
        return len(self.bay_ids)

    def circuit_index(self) -> dict[str, int]:
        return {cid: i for i, cid in enumerate(self.circuit_ids)}

    def bay_index(self) -> dict[str, int]:
        return {bid: j for j, bid in enumerate(self.bay_ids)}

    @classmethod
    def build(cls, circuits: Sequence[CircuitSpec], bays: Sequence[BaySpec]) -> Topology:
        index = _circuit_index(circuits)
        n_c = len(circuits)
        parent = np.full(n_c, -1, dtype=np.int64)
        has_phase = np.zeros((n_c, 3), dtype=np.bool_)
        for i, c in enumerate(circuits):
            _check_phases(c.phases, f"circuit {c.id!r}")
            if not c.phases:
                raise ProblemError(f"circuit {c.id!r}: carries no phase")
            if c.parent is not None:
                if c.parent not in index:
                    raise ProblemError(f"circuit {c.id!r}: unknown parent circuit {c.parent!r}")
                parent[i] = index[c.parent]
            for p in c.phases:
                has_phase[i, p - 1] = True
        preorder, depth = _preorder(circuits, parent)
        for i, c in enumerate(circuits):
            if parent[i] >= 0:
                missing = [p for p in c.phases if not has_phase[parent[i], p - 1]]
                if missing:
                    raise ProblemError(
                        f"circuit {c.id!r}: carries L{missing[0]} but its parent "
                        f"{c.parent!r} does not"
                    )

        n_b = len(bays)
        seen: set[str] = set()
        bay_circuit = np.zeros(n_b, dtype=np.int64)
        bay_phase = np.zeros((n_b, 3), dtype=np.bool_)
        for j, b in enumerate(bays):
            if b.id in seen:
                raise ProblemError(f"bay {b.id!r}: duplicate bay id")
            seen.add(b.id)
            if b.circuit not in index:
                raise ProblemError(f"bay {b.id!r}: unknown circuit {b.circuit!r}")
            _check_phases(b.phases, f"bay {b.id!r}")
            if not b.phases:
                raise ProblemError(f"bay {b.id!r}: draws on no phase")
            ci = index[b.circuit]
            bay_circuit[j] = ci
            for p in b.phases:
                if not has_phase[ci, p - 1]:
                    raise ProblemError(
                        f"bay {b.id!r}: draws on L{p} but its circuit {b.circuit!r} has no L{p}"
                    )
                bay_phase[j, p - 1] = True

        # Bays grouped by their circuit's preorder position: a subtree is then one slice.
        position = np.empty(n_c, dtype=np.int64)
        position[preorder] = np.arange(n_c, dtype=np.int64)
        subtree_bays = np.argsort(position[bay_circuit], kind="stable").astype(np.int64)
        direct = np.bincount(bay_circuit, minlength=n_c).astype(np.int64)
        sub_lo = np.zeros(n_c, dtype=np.int64)
        sub_hi = np.zeros(n_c, dtype=np.int64)
        start = 0
        for c in preorder:
            sub_lo[c] = start
            start += direct[c]
        # Children after parents in preorder: walking it backwards closes each subtree.
        sub_hi[:] = sub_lo + direct
        for c in preorder[::-1]:
            if parent[c] >= 0:
                sub_hi[parent[c]] = max(sub_hi[parent[c]], sub_hi[c])

        by_id = np.array(sorted(range(n_b), key=lambda j: bays[j].id), dtype=np.int64)
        id_rank = np.empty(n_b, dtype=np.int64)
        id_rank[by_id] = np.arange(n_b, dtype=np.int64)

        arrays = (parent, has_phase, preorder, sub_lo, sub_hi, bay_circuit, bay_phase)
        for a in (*arrays, id_rank, by_id, subtree_bays):
            a.flags.writeable = False
        return cls(
            circuit_ids=tuple(c.id for c in circuits),
            bay_ids=tuple(b.id for b in bays),
            parent=parent,
            has_phase=has_phase,
            preorder=preorder,
            sub_lo=sub_lo,
            sub_hi=sub_hi,
            bay_circuit=bay_circuit,
            bay_phase=bay_phase,
            id_rank=id_rank,
            by_id=by_id,
            subtree_bays=subtree_bays,
            depth=depth,
        )


def _circuit_index(circuits: Sequence[CircuitSpec]) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, c in enumerate(circuits):
        if c.id in index:
            raise ProblemError(f"circuit {c.id!r}: duplicate circuit id")
        index[c.id] = i
    return index


def _check_phases(phases: tuple[int, ...], where: str) -> None:
    for p in phases:
        if p not in PHASES:
            raise ProblemError(f"{where}: phase {p!r} is not one of 1, 2, 3")
    if len(set(phases)) != len(phases):
        raise ProblemError(f"{where}: phase listed twice in {phases}")


def _preorder(circuits: Sequence[CircuitSpec], parent: IntArray) -> tuple[IntArray, int]:
    """Depth-first order from the roots (children in the caller's order), and the depth."""
    n = len(circuits)
    children: list[list[int]] = [[] for _ in range(n)]
    roots: list[int] = []
    for i in range(n):
        (roots if parent[i] < 0 else children[int(parent[i])]).append(i)
    order: list[int] = []
    depth = 0
    stack = [(r, 1) for r in reversed(roots)]
    while stack:
        c, d = stack.pop()
        order.append(c)
        depth = max(depth, d)
        stack.extend((k, d + 1) for k in reversed(children[c]))
    if len(order) != n:
        # Whatever no root reaches hangs on a cycle: name the cycle.
        reached = set(order)
        start = next(i for i in range(n) if i not in reached)
        path = [start]
        while int(parent[path[-1]]) not in path:
            path.append(int(parent[path[-1]]))
        cycle_start = path.index(int(parent[path[-1]]))
        loop = [circuits[i].id for i in path[cycle_start:]]
        loop.append(loop[0])
        raise ProblemError(f"circuit {loop[0]!r}: parents form a cycle ({' -> '.join(loop)})")
    return np.array(order, dtype=np.int64), depth
