"""The shed's topology, derived once from the config: the only place that says which bays
exist, which circuit each hangs from, which phases each circuit and bay carries, and what
role each device plays.

The control layout (`control.layout`), the metrics, the staff commands, `chargectl check`
and the simulator all ask this object; none of them walks `shed.circuits` or
`shed.devices` to answer those questions again.

Building never raises, so that `check` can use it on a config it is about to refuse: a
circuit in a cycle or under an unknown parent is left out of the tree order (`is_tree` is
then False) and carries the supply's phases; a device of an unknown kind or on an unknown
circuit has no bays. Everything that plans current (`control.layout`) insists on a tree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from chargectl.config.schema import Circuit, Device, Shed, bay_id
from chargectl.drivers.registry import find
from chargectl.drivers.template import Template

SUPPLY_PHASES = {1: (1,), 3: (1, 2, 3)}


@dataclass(frozen=True, slots=True)
class CircuitNode:
    id: str
    parent: int  # index into Topology.circuits; -1 for the root
    phases: tuple[int, ...]  # supply phases 1..3: its own, else its parent's
    config: Circuit

    @property
    def limit_a(self) -> float:
        return self.config.limit_a

    @property
    def meter(self) -> str | None:
        return self.config.meter


@dataclass(frozen=True, slots=True)
class Bay:
    """One place a resident charges: a pile's socket or a wallbox."""

    id: str  # `pile-a/3` for a socket, `wb-1` for a wallbox
    device: str
    port: int | None  # pile port 1..N; None for a wallbox
    circuit: int  # index into Topology.circuits
    phases: tuple[int, ...]  # 1-based supply phases the bay draws on
    role: str  # "pile" or "evse"
    kind: str  # the device's template
    # A wallbox's least offer (below it only 0: IEC 61851) and its setpoint's resolution,
    # from its template; 0 for a socket (a relay is on or off).
    min_a: float = 0.0
    step_a: float = 0.0

    @property
    def is_socket(self) -> bool:
        return self.port is not None


@dataclass(frozen=True)
class Topology:
    supply_phases: tuple[int, ...]
    circuits: tuple[CircuitNode, ...]  # tree order: a parent before its children
    bays: tuple[Bay, ...]  # in config order; a pile's ports in a row
    roles: dict[str, str]  # device id -> "pile" | "evse" | "meter" (known kinds only)
    is_tree: bool  # every circuit configured is in `circuits` once (under a root)
    outside_tree: dict[str, tuple[int, ...]]  # circuits left out of the tree -> supply phases

    @cached_property
    def circuit_index(self) -> dict[str, int]:
        return {c.id: i for i, c in enumerate(self.circuits)}

    @cached_property
    def bay_index(self) -> dict[str, int]:
        return {b.id: j for j, b in enumerate(self.bays)}

    @cached_property
    def bay_ids(self) -> tuple[str, ...]:
        return tuple(b.id for b in self.bays)

    @cached_property
    def pile_bays(self) -> dict[str, slice]:
        """Pile device id -> the slice of `bays` holding its ports."""
        out: dict[str, slice] = {}
        for j, b in enumerate(self.bays):
            if b.is_socket:
                s = out.get(b.device)
                out[b.device] = slice(j if s is None else s.start, j + 1)
        return out

    @cached_property
    def wallbox_bay(self) -> dict[str, int]:
        """Wallbox device id -> its bay index."""
        return {b.device: j for j, b in enumerate(self.bays) if not b.is_socket}

    @cached_property
    def circuit_phases(self) -> dict[str, tuple[int, ...]]:
        """Circuit id -> its phases (also for a circuit outside the tree: the supply's)."""
        return {c.id: c.phases for c in self.circuits} | self.outside_tree

    def phases_of(self, circuit_id: str) -> tuple[int, ...]:
        return self.circuit_phases.get(circuit_id, self.supply_phases)

    def circuit(self, circuit_id: str) -> CircuitNode:
        return self.circuits[self.circuit_index[circuit_id]]

    def devices_of(self, role: str) -> tuple[str, ...]:
        return tuple(d for d, r in self.roles.items() if r == role)


def topology_of(shed: Shed, templates: Mapping[str, Template] | None = None) -> Topology:
    """`templates`: kind -> template (default: the shipped ones and those in the directories
    the config names); a device whose kind is in none has no role and no bays."""
    found = find(shed.template_dirs()).templates if templates is None else templates
    supply = SUPPLY_PHASES.get(shed.shed.phases, (1, 2, 3))
    by_id: dict[str, Circuit] = {}
    for c in shed.circuits:
        by_id.setdefault(c.id, c)
    children: dict[str | None, list[str]] = {}
    for c in by_id.values():
        parent = c.parent if c.parent is None or c.parent in by_id else "\0unknown"
        children.setdefault(parent, []).append(c.id)

    # Depth first from the root(s), so that a parent comes before its children.
    order: list[CircuitNode] = []
    index: dict[str, int] = {}
    stack = [(cid, -1) for cid in reversed(children.get(None, []))]
    while stack:
        cid, parent_i = stack.pop()
        c = by_id[cid]
        inherited = supply if parent_i < 0 else order[parent_i].phases
        index[cid] = len(order)
        order.append(CircuitNode(cid, parent_i, c.phases or inherited, c))
        stack.extend((child, index[cid]) for child in reversed(children.get(cid, [])))
    outside = {cid: by_id[cid].phases or supply for cid in by_id if cid not in index}

    roles: dict[str, str] = {}
    bays: list[Bay] = []
    for d in shed.devices:
        template = found.get(d.kind)
        if template is None:
            continue
        roles.setdefault(d.id, template.role)
        if template.role in ("pile", "evse") and d.circuit in index:
            bays.extend(_bays(d, template, index[d.circuit]))
    return Topology(
        supply_phases=supply,
        circuits=tuple(order),
        bays=tuple(bays),
        roles=roles,
        is_tree=not outside and len(by_id) == len(shed.circuits),
        outside_tree=outside,
    )


def _bays(d: Device, t: Template, circuit: int) -> list[Bay]:
    if t.role == "evse":
        least, step = t.min_current_a or 0.0, t.step_a or 0.0
        return [Bay(bay_id(d.id, None), d.id, None, circuit, d.phases, "evse", d.kind, least, step)]
    return [
        Bay(bay_id(d.id, p), d.id, p, circuit, d.phases, "pile", d.kind)
        for p in range(1, d.ports + 1)
    ]
