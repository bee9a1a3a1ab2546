"""The shed's wiring as index arrays: circuits, their tree, and where each socket hangs.

The bays, circuits, their phases and every device's role come from the shed's one topology
(`chargectl.topology`); this module only turns them into the arrays the physics steps over.
Circuits are in the topology's tree order (a parent before its children). `subtree[a, b]` is
true when circuit b is a or lies below a, so the current through a's breaker is
`subtree @ own` (own: each circuit's directly fed load) and a circuit has power when no
breaker on its path to the supply is open.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from chargectl.config.schema import Circuit, Device, Shed
from chargectl.drivers.template import Template
from chargectl.topology import Topology as ShedTopology
from chargectl.topology import topology_of


class TopologyError(ValueError):
    """The config cannot be simulated (names what and where)."""


@dataclass(frozen=True, slots=True)
class PileSlot:
    device: Device
    start: int  # first socket index of this pile in the shed-wide arrays
    stop: int


@dataclass(frozen=True, slots=True)
class Topology:
    shed: ShedTopology  # the shed's own topology, which this one is derived from
    circuit_ids: tuple[str, ...]
    circuit_index: dict[str, int]
    circuits: tuple[Circuit, ...]  # the config of each, in the same order
    parent: np.ndarray  # int, -1 for the root
    subtree: np.ndarray  # bool circuits x circuits
    circuit_phases: tuple[tuple[int, ...], ...]  # supply phases 1..3 each circuit carries
    piles: tuple[PileSlot, ...]
    socket_bays: tuple[str, ...]  # "<pile>/<port>" for each socket index
    socket_circuit: np.ndarray  # int per socket
    socket_phase: np.ndarray  # int 0..2 per socket
    evses: tuple[Device, ...]
    meters: tuple[tuple[Device, int | None], ...]  # (meter, index of the circuit it measures)

    @property
    def sockets(self) -> int:
        return len(self.socket_bays)

    def path_open(self, closed: np.ndarray) -> np.ndarray:
        """bool per circuit: some breaker from the supply down to it (itself included) is open."""
        return (self.subtree.T.astype(np.int64) @ (~closed).astype(np.int64)) > 0


def build(shed: Shed, templates: Mapping[str, Template] | None = None) -> Topology:
    """`templates`: kind -> template (default: the shipped ones)."""
    topo = topology_of(shed, templates)
    if not topo.is_tree:
        stray = ", ".join(sorted(topo.outside_tree)) or "a duplicate id"
        raise TopologyError(f"circuits: not one tree under the supply ({stray})")
    ids = tuple(c.id for c in topo.circuits)
    index = dict(topo.circuit_index)
    n = len(ids)
    parent = np.array([c.parent for c in topo.circuits], dtype=np.int64)
    subtree = np.zeros((n, n), dtype=bool)
    for b in range(n):
        a = b
        while a >= 0:
            subtree[a, b] = True
            a = int(parent[a])
    phases = tuple(c.phases for c in topo.circuits)

    for d in shed.devices:
        where = f"devices[{d.id}]"
        role = topo.roles.get(d.id)
        if role is None:
            raise TopologyError(f"{where}.kind: unknown device kind {d.kind!r}")
        if role in ("pile", "evse") and d.circuit not in index:
            raise TopologyError(f"{where}.circuit: unknown circuit {d.circuit!r}")
        if role in ("pile", "evse") and any(p not in (1, 2, 3) for p in d.phases):
            raise TopologyError(f"{where}.phases: phases are 1..3, got {list(d.phases)}")
        if role == "pile" and d.ports < 1:
            raise TopologyError(f"{where}.ports: a pile has at least 1 port, got {d.ports}")

    s_circuit: list[int] = []
    s_phase: list[int] = []
    bays: list[str] = []
    starts: dict[str, int] = {}
    for bay in topo.bays:
        if bay.port is None:
            continue
        starts.setdefault(bay.device, len(bays))
        ph = bay.phases or phases[bay.circuit]
        bays.append(bay.id)
        s_circuit.append(bay.circuit)
        # A pile wired to several phases spreads its ports over them in turn.
        s_phase.append(ph[(bay.port - 1) % len(ph)] - 1)
    piles = tuple(
        PileSlot(shed.device(dev), start, start + shed.device(dev).ports)
        for dev, start in starts.items()
    )
    evses = tuple(shed.device(dev) for dev in topo.devices_of("evse"))
    measured = {c.meter: i for i, c in enumerate(topo.circuits) if c.meter is not None}
    meters: list[tuple[Device, int | None]] = []
    for dev in topo.devices_of("meter"):
        d = shed.device(dev)
        c_idx = measured.get(d.id)
        if c_idx is None and d.circuit is not None:
            if d.circuit not in index:
                raise TopologyError(f"devices[{d.id}].circuit: unknown circuit {d.circuit!r}")
            c_idx = index[d.circuit]
        meters.append((d, c_idx))
    return Topology(
        shed=topo,
        circuit_ids=ids,
        circuit_index=index,
        circuits=tuple(c.config for c in topo.circuits),
        parent=parent,
        subtree=subtree,
        circuit_phases=phases,
        piles=piles,
        socket_bays=tuple(bays),
        socket_circuit=np.array(s_circuit, dtype=np.int64),
        socket_phase=np.array(s_phase, dtype=np.int64),
        evses=evses,
        meters=tuple(meters),
    )
