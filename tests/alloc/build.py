"""Small helpers to write allocation problems in tests, and hypothesis strategies for them."""

from __future__ import annotations

from hypothesis import strategies as st

from chargectl.alloc.problem import Problem, ProblemBay, ProblemCircuit


def circuit(
    cid: str,
    limit: float | tuple[float | None, ...],
    *,
    parent: str | None = None,
    unmanaged: float | tuple[float, ...] = 0.0,
) -> ProblemCircuit:
    """A circuit; a single number means single phase (L1 only)."""
    lim = (limit, None, None) if isinstance(limit, int | float) else limit
    unm = (unmanaged, 0.0, 0.0) if isinstance(unmanaged, int | float) else unmanaged
    return ProblemCircuit(
        cid,
        parent,
        (lim[0], lim[1], lim[2]),
        (float(unm[0]), float(unm[1]), float(unm[2])),
    )


def socket(bid: str, amps: float, cid: str = "main", phase: int = 1, **kw: object) -> ProblemBay:
    return ProblemBay(bid, cid, (phase,), amps, amps, **kw)  # type: ignore[arg-type]


def wallbox(
    bid: str, lo: float, hi: float, cid: str = "main", phases: tuple[int, ...] = (1,), **kw: object
) -> ProblemBay:
    return ProblemBay(bid, cid, phases, lo, hi, **kw)  # type: ignore[arg-type]


# -- hypothesis ----------------------------------------------------------------------------

# Currents from a coarse grid (ties, exact sums, limits hit exactly) or arbitrary floats.
_grid = st.integers(0, 80).map(lambda k: k / 2)
_amps = st.one_of(_grid, st.floats(0, 40, allow_nan=False, allow_infinity=False))
_socket_amps = st.one_of(st.sampled_from([0.5, 1.4, 1.8, 2.0, 2.5, 5.0]), st.floats(0.1, 6))


@st.composite
def problems(draw: st.DrawFn, max_bays: int = 200, max_circuits: int = 12) -> Problem:
    three_phase = draw(st.booleans())
    supply: tuple[int, ...] = (1, 2, 3) if three_phase else (1,)
    n_roots = draw(st.integers(1, 2))
    n_circuits = draw(st.integers(n_roots, max_circuits))
    circuits: list[ProblemCircuit] = []
    depth: dict[str, int] = {}
    phases_of: dict[str, tuple[int, ...]] = {}
    for i in range(n_circuits):
        cid = f"c{i}"
        phases: tuple[int, ...]
        if i < n_roots:
            parent, phases = None, supply
        else:
            eligible = [c.id for c in circuits if depth[c.id] < 4]
            parent = draw(st.sampled_from(eligible))
            pp = phases_of[parent]
            phases = tuple(sorted(draw(st.sets(st.sampled_from(pp), min_size=1))))
        depth[cid] = 1 if parent is None else depth[parent] + 1
        phases_of[cid] = phases
        lim: list[float | None] = [None, None, None]
        unm = [0.0, 0.0, 0.0]
        for p in phases:
            lim[p - 1] = draw(_grid) if draw(st.booleans()) else draw(_amps)
            kind = draw(st.integers(0, 9))
            if kind == 0:  # infeasible on its own
                unm[p - 1] = (lim[p - 1] or 0.0) + draw(st.floats(0.5, 5))
            elif kind == 9:  # at the limit: full, or infeasible by a hair (rule 4's 1e-9 A)
                unm[p - 1] = (lim[p - 1] or 0.0) + draw(st.sampled_from([0.0, 1e-9, 3e-9]))
            elif kind < 5:
                unm[p - 1] = draw(_amps) / 4
        circuits.append(ProblemCircuit(cid, parent, (lim[0], lim[1], lim[2]), tuple(unm)))  # type: ignore[arg-type]
    # Shuffle so the problem's order is not the topological order.
    circuits = draw(st.permutations(circuits))

    n_bays = draw(st.integers(0, max_bays))
    bays: list[ProblemBay] = []
    credits = draw(st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=4))
    for j in range(n_bays):
        cid = draw(st.sampled_from([c.id for c in circuits]))
        cph = phases_of[cid]
        if draw(st.integers(0, 2)) > 0:  # a socket on one phase
            bay_phases: tuple[int, ...] = (draw(st.sampled_from(cph)),)
            lo = hi = draw(_socket_amps)
        else:  # a wallbox, one or all of its circuit's phases
            bay_phases = cph if draw(st.booleans()) else (draw(st.sampled_from(cph)),)
            lo = draw(st.sampled_from([6.0, 6.0, 0.0, 1.0, 3.5]))
            hi = draw(st.one_of(st.sampled_from([0.0, 4.0, 6.0, 16.0, 32.0]), _amps))
        credit = draw(st.one_of(st.sampled_from(credits), st.floats(0, 10)))
        bays.append(
            ProblemBay(
                id=f"b{draw(st.integers(0, 10 * max_bays))}-{j}",
                circuit=cid,
                phases=bay_phases,
                min_a=lo,
                max_a=hi,
                priority=draw(st.sampled_from([0, 0, 0, 1, 2])),
                credit=credit,
                on=draw(st.booleans()),
            )
        )
    return Problem(tuple(circuits), tuple(bays))
