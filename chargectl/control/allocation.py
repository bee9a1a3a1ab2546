"""The allocation kernel bound to the shed's layout (built once per topology)."""

from __future__ import annotations

from chargectl.alloc.allocator import Allocator
from chargectl.alloc.problem import BaySpec, CircuitSpec, Topology
from chargectl.control.layout import Layout


def make_allocator(layout: Layout) -> Allocator:
    circuits = [
        CircuitSpec(
            cid,
            None if layout.parent[i] < 0 else layout.circuit_ids[layout.parent[i]],
            tuple(p + 1 for p in range(3) if layout.circuit_phases[i, p]),
        )
        for i, cid in enumerate(layout.circuit_ids)
    ]
    bays = [BaySpec(b.id, layout.circuit_ids[b.circuit], b.phases) for b in layout.bays]
    return Allocator(Topology.build(circuits, bays))
