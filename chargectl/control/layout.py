"""The shed as index arrays: circuits in topological order, bays in a fixed order.

Built once from the config. Everything per tick is then arrays indexed by circuit (C) or bay
(B), phases as a last axis of 3 (L1..L3; a phase a circuit lacks is masked off).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from chargectl.config.schema import Shed, bay_id
from chargectl.drivers.registry import role_of

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Bay:
    id: str
    device: str
    port: int | None  # pile port 1..N; None for a wallbox
    circuit: int  # index into Layout.circuit_ids
    phases: tuple[int, ...]  # 1-based supply phases
    is_socket: bool


@dataclass(frozen=True)
class Layout:
    circuit_ids: tuple[str, ...]  # topological order: a parent before its children
    parent: IntArray  # [C], -1 for the root
    circuit_phases: BoolArray  # [C, 3]
    limit_a: FloatArray  # [C, 3], 0 where the circuit lacks the phase
    breaker_a: FloatArray  # [C]
    unmanaged_worst_a: FloatArray  # [C, 3]
    meter_of: tuple[str | None, ...]  # [C] meter device id
    bays: tuple[Bay, ...]
    bay_phases: BoolArray  # [B, 3]
    bay_circuit: IntArray  # [B]
    socket: BoolArray  # [B] True for a pile port, False for a wallbox
    # under[c, b]: bay b is in the subtree of circuit c (small sheds: a dense matrix is simplest)
    under: BoolArray
    pile_slices: dict[str, slice]  # pile device id -> its bays' slice
    evse_index: dict[str, int]  # wallbox device id -> its bay index
    bay_index: dict[str, int]

    @property
    def n_bays(self) -> int:
        return len(self.bays)

    @property
    def n_circuits(self) -> int:
        return len(self.circuit_ids)


def build_layout(shed: Shed) -> Layout:
    by_id = {c.id: c for c in shed.circuits}
    supply = tuple(range(1, shed.shed.phases + 1))
    order: list[str] = []
    children: dict[str | None, list[str]] = {}
    for c in shed.circuits:
        children.setdefault(c.parent, []).append(c.id)
    stack = list(reversed(children.get(None, [])))
    while stack:
        cid = stack.pop()
        order.append(cid)
        stack.extend(reversed(children.get(cid, [])))
    if len(order) != len(shed.circuits):
        raise ValueError("circuits do not form one tree (run `chargectl check`)")
    index = {cid: i for i, cid in enumerate(order)}

    n = len(order)
    parent = np.full(n, -1, dtype=np.int64)
    phases = np.zeros((n, 3), dtype=np.bool_)
    limit = np.zeros((n, 3))
    worst = np.zeros((n, 3))
    breaker = np.zeros(n)
    meters: list[str | None] = []
    for i, cid in enumerate(order):
        c = by_id[cid]
        parent[i] = -1 if c.parent is None else index[c.parent]
        own = c.phases or (supply if c.parent is None else _phases_of(phases[parent[i]]))
        for p in own:
            phases[i, p - 1] = True
        limit[i] = np.where(phases[i], c.limit_a, 0.0)
        default_worst = 0.25 * c.limit_a if c.meter else 0.0
        w = c.unmanaged_worst_a if c.unmanaged_worst_a is not None else default_worst
        worst[i] = np.where(phases[i], w, 0.0)
        breaker[i] = c.breaker.rating_a
        meters.append(c.meter)

    bays: list[Bay] = []
    pile_slices: dict[str, slice] = {}
    evse_index: dict[str, int] = {}
    for d in shed.devices:
        role = role_of(d.kind)
        if role == "pile":
            assert d.circuit is not None
            start = len(bays)
            for port in range(1, d.ports + 1):
                bays.append(Bay(bay_id(d.id, port), d.id, port, index[d.circuit], d.phases, True))
            pile_slices[d.id] = slice(start, len(bays))
        elif role == "evse":
            assert d.circuit is not None
            evse_index[d.id] = len(bays)
            bays.append(Bay(d.id, d.id, None, index[d.circuit], d.phases, False))

    b = len(bays)
    bay_phases = np.zeros((b, 3), dtype=np.bool_)
    bay_circuit = np.zeros(b, dtype=np.int64)
    for j, bay in enumerate(bays):
        bay_circuit[j] = bay.circuit
        for p in bay.phases:
            bay_phases[j, p - 1] = True
    under = np.zeros((n, b), dtype=np.bool_)
    for j in range(b):
        node = int(bay_circuit[j])
        while node >= 0:
            under[node, j] = True
            node = int(parent[node])
    return Layout(
        circuit_ids=tuple(order),
        parent=parent,
        circuit_phases=phases,
        limit_a=limit,
        breaker_a=breaker,
        unmanaged_worst_a=worst,
        meter_of=tuple(meters),
        bays=tuple(bays),
        bay_phases=bay_phases,
        bay_circuit=bay_circuit,
        socket=np.array([bay.is_socket for bay in bays], dtype=np.bool_),
        under=under,
        pile_slices=pile_slices,
        evse_index=evse_index,
        bay_index={bay.id: j for j, bay in enumerate(bays)},
    )


def _phases_of(mask: BoolArray) -> tuple[int, ...]:
    return tuple(int(p) + 1 for p in np.flatnonzero(mask))


def circuit_load(layout: Layout, bay_amps: FloatArray) -> FloatArray:
    """[C, 3]: the current of the bays under each circuit, per phase."""
    per_bay = bay_amps[:, None] * layout.bay_phases  # [B, 3]
    return np.asarray(layout.under.astype(np.float64) @ per_bay)
