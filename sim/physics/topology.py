"""The shed's wiring as index arrays: circuits, their tree, and where each socket hangs.

Circuits keep the config's order. `subtree[a, b]` is true when circuit b is a or lies below a,
so the current through a's breaker is `subtree @ own` (own: each circuit's directly fed load)
and a circuit has power when no breaker on its path to the supply is open.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from chargectl.config.schema import Circuit, Device, Shed
from chargectl.drivers.registry import role_of


class TopologyError(ValueError):
    """The config cannot be simulated (names what and where)."""


@dataclass(frozen=True, slots=True)
class PileSlot:
    device: Device
    start: int  # first socket index of this pile in the shed-wide arrays
    stop: int


@dataclass(frozen=True, slots=True)
class Topology:
    circuit_ids: tuple[str, ...]
    circuit_index: dict[str, int]
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


def circuit_phases(shed: Shed, c: Circuit) -> tuple[int, ...]:
    seen: set[str] = set()
    while not c.phases and c.parent is not None:
        if c.id in seen:
            raise TopologyError(f"circuits: cycle through {c.id!r}")
        seen.add(c.id)
        c = shed.circuit(c.parent)
    return c.phases or ((1,) if shed.shed.phases == 1 else (1, 2, 3))


def build(shed: Shed) -> Topology:
    ids = tuple(c.id for c in shed.circuits)
    index = {cid: i for i, cid in enumerate(ids)}
    if len(index) != len(ids):
        raise TopologyError("circuits: duplicate ids")
    n = len(ids)
    parent = np.full(n, -1, dtype=np.int64)
    for i, c in enumerate(shed.circuits):
        if c.parent is not None:
            if c.parent not in index:
                raise TopologyError(f"circuits[{i}].parent: unknown circuit {c.parent!r}")
            parent[i] = index[c.parent]
    subtree = np.zeros((n, n), dtype=bool)
    for b in range(n):
        a, hops = b, 0
        while a >= 0:
            subtree[a, b] = True
            a = int(parent[a])
            hops += 1
            if hops > n:
                raise TopologyError(f"circuits: cycle through {ids[b]!r}")
    phases = tuple(circuit_phases(shed, c) for c in shed.circuits)

    piles: list[PileSlot] = []
    bays: list[str] = []
    s_circuit: list[int] = []
    s_phase: list[int] = []
    evses: list[Device] = []
    meters: list[tuple[Device, int | None]] = []
    measured = {c.meter: i for i, c in enumerate(shed.circuits) if c.meter is not None}
    for d in shed.devices:
        where = f"devices[{d.id}]"
        try:
            role = role_of(d.kind)
        except KeyError as exc:
            raise TopologyError(f"{where}.kind: {exc.args[0]}") from None
        if role in ("pile", "evse"):
            if d.circuit not in index:
                raise TopologyError(f"{where}.circuit: unknown circuit {d.circuit!r}")
            ph = d.phases or phases[index[d.circuit]]
            if any(p not in (1, 2, 3) for p in ph):
                raise TopologyError(f"{where}.phases: phases are 1..3, got {list(ph)}")
        if role == "pile":
            if not 1 <= d.ports <= 32:
                raise TopologyError(f"{where}.ports: must be 1..32, got {d.ports}")
            start = len(bays)
            for port in range(1, d.ports + 1):
                bays.append(f"{d.id}/{port}")
                s_circuit.append(index[str(d.circuit)])
                # A pile wired to several phases spreads its ports over them in turn.
                s_phase.append(ph[(port - 1) % len(ph)] - 1)
            piles.append(PileSlot(d, start, len(bays)))
        elif role == "evse":
            evses.append(d)
        else:
            c_idx = measured.get(d.id)
            if c_idx is None and d.circuit is not None:
                if d.circuit not in index:
                    raise TopologyError(f"{where}.circuit: unknown circuit {d.circuit!r}")
                c_idx = index[d.circuit]
            meters.append((d, c_idx))
    return Topology(
        circuit_ids=ids,
        circuit_index=index,
        parent=parent,
        subtree=subtree,
        circuit_phases=phases,
        piles=tuple(piles),
        socket_bays=tuple(bays),
        socket_circuit=np.array(s_circuit, dtype=np.int64),
        socket_phase=np.array(s_phase, dtype=np.int64),
        evses=tuple(evses),
        meters=tuple(meters),
    )
