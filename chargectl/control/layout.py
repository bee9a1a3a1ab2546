"""The shed as index arrays: circuits in topological order, bays in a fixed order.

Built once from the shed's one `Topology` (which circuits, bays and phases there are); this
module only turns it into the arrays the core and the kernel index. Everything per tick is
then arrays indexed by circuit (C) or bay (B), phases as a last axis of 3 (L1..L3; a phase a
circuit lacks is masked off).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from chargectl.config.schema import Shed
from chargectl.topology import Bay, Topology, topology_of

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Layout:
    topology: Topology  # what the arrays index
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
    wallbox_min_a: FloatArray  # [B] a wallbox's least offer (its template's); 0 for a socket
    wallbox_step_a: FloatArray  # [B] a wallbox setpoint's resolution; 0 for a socket
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


def build_layout(shed: Shed, topology: Topology | None = None) -> Layout:
    topo = topology_of(shed) if topology is None else topology
    if not topo.is_tree:
        raise ValueError("circuits do not form one tree (run `chargectl check`)")
    n = len(topo.circuits)
    parent = np.array([c.parent for c in topo.circuits], dtype=np.int64)
    phases = np.zeros((n, 3), dtype=np.bool_)
    limit = np.zeros((n, 3))
    worst = np.zeros((n, 3))
    breaker = np.zeros(n)
    for i, circuit in enumerate(topo.circuits):
        c = circuit.config
        for p in circuit.phases:
            phases[i, p - 1] = True
        limit[i] = np.where(phases[i], c.limit_a, 0.0)
        default_worst = 0.25 * c.limit_a if c.meter else 0.0
        w = c.unmanaged_worst_a if c.unmanaged_worst_a is not None else default_worst
        worst[i] = np.where(phases[i], w, 0.0)
        breaker[i] = c.breaker.rating_a

    bays = topo.bays
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
        topology=topo,
        circuit_ids=tuple(c.id for c in topo.circuits),
        parent=parent,
        circuit_phases=phases,
        limit_a=limit,
        breaker_a=breaker,
        unmanaged_worst_a=worst,
        meter_of=tuple(c.meter for c in topo.circuits),
        bays=bays,
        bay_phases=bay_phases,
        bay_circuit=bay_circuit,
        socket=np.array([bay.is_socket for bay in bays], dtype=np.bool_),
        wallbox_min_a=np.array([bay.min_a for bay in bays], dtype=np.float64),
        wallbox_step_a=np.array([bay.step_a for bay in bays], dtype=np.float64),
        under=under,
        pile_slices=topo.pile_bays,
        evse_index=topo.wallbox_bay,
        bay_index=topo.bay_index,
    )


def circuit_load(layout: Layout, bay_amps: FloatArray) -> FloatArray:
    """[C, 3]: the current of the bays under each circuit, per phase."""
    per_bay = bay_amps[:, None] * layout.bay_phases  # [B, 3]
    return np.asarray(layout.under.astype(np.float64) @ per_bay)
