"""Topology: index arrays from circuits and bays, and the structural errors."""

from __future__ import annotations

import numpy as np
import pytest

from chargectl.alloc.problem import BaySpec, CircuitSpec, ProblemError, Topology

THREE = (1, 2, 3)


def test_arrays_follow_the_callers_order_and_group_subtrees() -> None:
    topo = Topology.build(
        [
            CircuitSpec("row-b", "main", THREE),
            CircuitSpec("leaf", "row-a", (1,)),
            CircuitSpec("main", None, THREE),
            CircuitSpec("row-a", "main", (1, 2)),
        ],
        [
            BaySpec("z", "leaf", (1,)),
            BaySpec("y", "row-b", (3,)),
            BaySpec("x", "main", THREE),
            BaySpec("w", "row-a", (2,)),
        ],
    )
    assert topo.circuit_ids == ("row-b", "leaf", "main", "row-a")
    assert list(topo.parent) == [2, 3, -1, 2]
    assert topo.depth == 3
    order = [topo.circuit_ids[c] for c in topo.preorder]
    assert order.index("main") < order.index("row-a") < order.index("leaf")
    assert topo.has_phase.tolist()[3] == [True, True, False]
    assert list(topo.bay_circuit) == [1, 0, 2, 3]
    assert topo.bay_phase.tolist()[0] == [True, False, False]
    assert list(topo.id_rank) == [3, 2, 1, 0]

    def subtree(cid: str) -> set[str]:
        c = topo.circuit_ids.index(cid)
        return {topo.bay_ids[j] for j in topo.subtree_bays[topo.sub_lo[c] : topo.sub_hi[c]]}

    assert subtree("main") == {"w", "x", "y", "z"}
    assert subtree("row-a") == {"w", "z"}
    assert subtree("leaf") == {"z"}
    assert subtree("row-b") == {"y"}


def test_arrays_are_read_only() -> None:
    topo = Topology.build([CircuitSpec("main", None, (1,))], [BaySpec("a", "main", (1,))])
    with pytest.raises(ValueError, match="read-only"):
        topo.parent[0] = 3
    assert isinstance(topo.bay_phase, np.ndarray)


@pytest.mark.parametrize(
    ("circuits", "bays", "message"),
    [
        ([CircuitSpec("a", "nope", (1,))], [], "circuit 'a': unknown parent circuit 'nope'"),
        (
            [CircuitSpec("a", None, (1,)), CircuitSpec("a", None, (1,))],
            [],
            "circuit 'a': duplicate circuit id",
        ),
        (
            [
                CircuitSpec("root", None, (1,)),
                CircuitSpec("x", "z", (1,)),
                CircuitSpec("y", "x", (1,)),
                CircuitSpec("z", "y", (1,)),
            ],
            [],
            r"circuit 'x': parents form a cycle \(x -> z -> y -> x\)",
        ),
        ([CircuitSpec("a", "a", (1,))], [], r"circuit 'a': parents form a cycle \(a -> a\)"),
        ([CircuitSpec("a", None, ())], [], "circuit 'a': carries no phase"),
        ([CircuitSpec("a", None, (4,))], [], "circuit 'a': phase 4 is not one of 1, 2, 3"),
        (
            [CircuitSpec("m", None, (1,)), CircuitSpec("r", "m", (1, 2))],
            [],
            "circuit 'r': carries L2 but its parent 'm' does not",
        ),
        (
            [CircuitSpec("m", None, (1,))],
            [BaySpec("b", "elsewhere", (1,))],
            "bay 'b': unknown circuit 'elsewhere'",
        ),
        (
            [CircuitSpec("m", None, (1,))],
            [BaySpec("b", "m", (1,)), BaySpec("b", "m", (1,))],
            "bay 'b': duplicate bay id",
        ),
        (
            [CircuitSpec("m", None, (1, 3))],
            [BaySpec("b", "m", (1, 2, 3))],
            "bay 'b': draws on L2 but its circuit 'm' has no L2",
        ),
        ([CircuitSpec("m", None, (1,))], [BaySpec("b", "m", ())], "bay 'b': draws on no phase"),
        (
            [CircuitSpec("m", None, (1,))],
            [BaySpec("b", "m", (1, 1))],
            r"bay 'b': phase listed twice in \(1, 1\)",
        ),
    ],
)
def test_structural_errors_name_the_culprit(
    circuits: list[CircuitSpec], bays: list[BaySpec], message: str
) -> None:
    with pytest.raises(ProblemError, match=message):
        Topology.build(circuits, bays)


def test_a_bay_may_share_an_id_with_a_circuit() -> None:
    # Separate name spaces: a wallbox on its own circuit may well be called the same.
    topo = Topology.build([CircuitSpec("wb-1", None, (1,))], [BaySpec("wb-1", "wb-1", (1,))])
    assert topo.bay_ids == topo.circuit_ids == ("wb-1",)
