"""The one topology: bays, circuits, phases and roles derived once from the config."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from chargectl.commands.staff import shed_bays
from chargectl.config.schema import Breaker, Circuit, Device
from chargectl.control.allocation import make_allocator
from chargectl.control.core import ControlCore
from chargectl.control.layout import build_layout
from chargectl.drivers.template import shipped
from chargectl.topology import topology_of
from tests.control.sheds import two_row_shed


def test_tree_order_phases_and_bays() -> None:
    shed = two_row_shed(phases=3, ports=2)
    topo = topology_of(shed)
    assert [c.id for c in topo.circuits] == ["main", "row-a", "row-b"]
    assert [c.parent for c in topo.circuits] == [-1, 0, 0]
    assert topo.is_tree
    # The root carries the supply's phases; a child without its own, its parent's.
    assert topo.phases_of("main") == (1, 2, 3)
    assert topo.phases_of("row-a") == (1, 2, 3)
    assert topo.bay_ids == ("pa/1", "pa/2", "pb/1", "pb/2", "wb")
    assert topo.pile_bays == {"pa": slice(0, 2), "pb": slice(2, 4)}
    assert topo.wallbox_bay == {"wb": 4}
    wb = topo.bays[4]
    assert (wb.role, wb.port, wb.phases, topo.circuits[wb.circuit].id) == (
        "evse",
        None,
        (1, 2, 3),
        "main",
    )
    assert topo.bays[2].circuit == topo.circuit_index["row-b"]
    assert topo.roles == {"meter": "meter", "pa": "pile", "pb": "pile", "wb": "evse"}
    assert topo.devices_of("pile") == ("pa", "pb")


def test_own_phases_win_over_the_parent() -> None:
    shed = two_row_shed(phases=3)
    rows = tuple(
        dataclasses.replace(c, phases=(2,)) if c.id == "row-b" else c for c in shed.circuits
    )
    topo = topology_of(dataclasses.replace(shed, circuits=rows))
    assert topo.phases_of("row-b") == (2,)
    assert topo.phases_of("row-a") == (1, 2, 3)


def test_a_cycle_is_left_out_of_the_tree_without_raising() -> None:
    shed = two_row_shed()
    loop = (
        Circuit("x", 10.0, Breaker(16.0), "y", (), None, 0.0),
        Circuit("y", 10.0, Breaker(16.0), "x", (), None, 0.0),
    )
    pile = Device("px", "pile", "line", 9, "x", (1,), 2, 2000)
    bad = dataclasses.replace(shed, circuits=shed.circuits + loop, devices=(*shed.devices, pile))
    topo = topology_of(bad)
    assert not topo.is_tree
    assert [c.id for c in topo.circuits] == ["main", "row-a", "row-b"]
    assert topo.phases_of("x") == (1,)  # the supply's
    assert not any(b.device == "px" for b in topo.bays)  # on a circuit outside the tree
    with pytest.raises(ValueError, match="one tree"):
        build_layout(bad)


def test_unknown_kinds_and_circuits_have_no_bays() -> None:
    shed = two_row_shed(ports=1)
    odd = (
        Device("mystery", "no-such-kind", "line", 20, "main", (1,), 4, 2000),
        Device("stray", "pile", "line", 21, "nowhere", (1,), 2, 2000),
    )
    topo = topology_of(dataclasses.replace(shed, devices=(*shed.devices, *odd)))
    assert "mystery" not in topo.roles
    assert topo.roles["stray"] == "pile"
    assert topo.bay_ids == ("pa/1", "pb/1", "wb")


def test_layout_and_staff_commands_read_the_same_topology() -> None:
    shed = two_row_shed(ports=3)
    layout = build_layout(shed)
    assert layout.topology.bay_ids == tuple(b.id for b in layout.bays)
    assert shed_bays(shed) == list(layout.topology.bay_ids)
    assert layout.circuit_ids == tuple(c.id for c in layout.topology.circuits)


def test_a_wallbox_offers_what_its_template_allows() -> None:
    """The least offer and the setpoint's resolution come from the wallbox's template: a box
    whose template says 8 A and 1 A steps is offered 0 below 8 A and whole amps above."""
    shed = two_row_shed(ports=2)
    coarse = dataclasses.replace(shipped()["evse"], min_current_a=8.0, step_a=1.0)
    topo = topology_of(shed, {**shipped(), "evse": coarse})
    layout = build_layout(shed, topo)
    j = layout.evse_index["wb"]
    assert (layout.wallbox_min_a[j], layout.wallbox_step_a[j]) == (8.0, 1.0)
    assert not layout.wallbox_min_a[layout.socket].any()
    core = ControlCore(shed, layout, make_allocator(layout))
    for planned, offered in ((7.9, 0.0), (8.0, 8.0), (12.7, 12.0), (40.0, 16.0)):
        setpoints = np.full(layout.n_bays, 1.5)
        setpoints[j] = planned
        got = core._offers(setpoints)
        assert got[j] == offered
        assert (got[layout.socket] == 1.5).all()  # sockets as planned
    # The shipped contract wallbox: 6 A and 0.1 A steps.
    shipped_layout = build_layout(shed)
    shipped_core = ControlCore(shed, shipped_layout, make_allocator(shipped_layout))
    setpoints = np.zeros(shipped_layout.n_bays)
    setpoints[j] = 6.79
    assert shipped_core._offers(setpoints)[j] == 6.7
    setpoints[j] = 5.99
    assert shipped_core._offers(setpoints)[j] == 0.0
