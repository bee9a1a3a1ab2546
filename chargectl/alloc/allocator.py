"""The kernel's Python face: per-tick arrays, the call, warm-up, and a `Problem` convenience.

The controller builds an `Allocator` once per topology, then each tick either fills
`allocator.inputs` in place and calls `allocator.run()`, or calls the allocator with its own
seven arrays (the `Allocate` shape of `chargectl.control.core`). Either way the work per tick
is one validation pass and one kernel call over arrays; no Python object per bay.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from chargectl.alloc import kernel
from chargectl.alloc.problem import (
    BaySpec,
    BoolArray,
    CircuitSpec,
    FloatArray,
    IntArray,
    Plan,
    Problem,
    ProblemError,
    Topology,
)


@dataclass(frozen=True, eq=False)
class TickInputs:
    """What changes every tick. Fill in place; a phase a circuit lacks is ignored."""

    limit_a: FloatArray  # [C, 3]
    unmanaged_a: FloatArray  # [C, 3]
    min_a: FloatArray  # [B]
    max_a: FloatArray  # [B]
    priority: IntArray  # [B] higher first
    credit: FloatArray  # [B] lower first
    on: BoolArray  # [B] on now (a tie-break after credit)

    @classmethod
    def zeros(cls, topo: Topology) -> TickInputs:
        c, b = topo.n_circuits, topo.n_bays
        return cls(
            limit_a=np.zeros((c, 3)),
            unmanaged_a=np.zeros((c, 3)),
            min_a=np.zeros(b),
            max_a=np.zeros(b),
            priority=np.zeros(b, dtype=np.int64),
            credit=np.zeros(b),
            on=np.zeros(b, dtype=np.bool_),
        )


@dataclass(frozen=True, eq=False)
class PlanArrays:
    setpoints: FloatArray  # [B] 0 (off) or min_a <= x <= max_a
    planned_a: FloatArray  # [C, 3] unmanaged plus the bays below; 0 on a missing phase
    binding: BoolArray  # [C, 3] planned within BIND_TOL_A of the limit, or above it
    infeasible: BoolArray  # [C, 3] unmanaged alone above the limit

    @classmethod
    def zeros(cls, topo: Topology) -> PlanArrays:
        c, b = topo.n_circuits, topo.n_bays
        return cls(
            setpoints=np.zeros(b),
            planned_a=np.zeros((c, 3)),
            binding=np.zeros((c, 3), dtype=np.bool_),
            infeasible=np.zeros((c, 3), dtype=np.bool_),
        )


_ERRORS = {
    kernel.ERR_LIMIT: ("circuit", "limit_a must be a finite number >= 0"),
    kernel.ERR_UNMANAGED: ("circuit", "unmanaged_a must be a finite number >= 0"),
    kernel.ERR_MIN: ("bay", "min_a must be a finite number >= 0"),
    kernel.ERR_MAX: ("bay", "max_a must be a finite number >= 0"),
    kernel.ERR_CREDIT: ("bay", "credit must be a finite number >= 0"),
    kernel.ERR_PRIORITY: ("bay", f"priority must be 0 .. {kernel.PRIORITY_LIMIT - 1}"),
}


class Allocator:
    """The kernel bound to one topology, with its inputs, outputs and workspace allocated once.

    `run()` solves `self.inputs` into `self.result` (the same arrays every tick).
    Calling the allocator with seven arrays returns fresh output arrays unless
    `reuse_outputs` is set, so a caller may keep a tick's result.
    """

    def __init__(self, topo: Topology, *, reuse_outputs: bool = False) -> None:
        self.topo = topo
        self.inputs = TickInputs.zeros(topo)
        self.result = PlanArrays.zeros(topo)
        self.reuse_outputs = reuse_outputs
        b, c = topo.n_bays, topo.n_circuits
        self._iwork = np.zeros(
            kernel.INT_WORK_B * b + kernel.INT_WORK_EXTRA + kernel.INT_WORK_C * c, dtype=np.int64
        )
        # The kernel starts each tick's admission sort from the last tick's order.
        self._iwork[:b] = np.arange(b)
        self._fwork = np.zeros(kernel.FLOAT_WORK_B * b + kernel.FLOAT_WORK_C * c)
        self._full = np.zeros(3 * c, dtype=np.bool_)
        self._err = np.zeros(2, dtype=np.int64)

        # run()'s arguments, built once: a tick then costs one kernel call.
        self._run_args = self._kernel_args(self.inputs, self.result)

    def run(self) -> PlanArrays:
        kernel.allocate_kernel(*self._run_args)
        self._raise_if_bad()
        return self.result

    def __call__(  # noqa: PLR0917 (the controller's Allocate shape: seven arrays)
        self,
        limit_a: npt.ArrayLike,
        unmanaged_a: npt.ArrayLike,
        min_a: npt.ArrayLike,
        max_a: npt.ArrayLike,
        priority: npt.ArrayLike,
        credit: npt.ArrayLike,
        on: npt.ArrayLike,
    ) -> tuple[FloatArray, FloatArray, BoolArray, BoolArray]:
        topo = self.topo
        c, b = topo.n_circuits, topo.n_bays
        ins = TickInputs(
            limit_a=_array(limit_a, np.float64, (c, 3), "limit_a"),
            unmanaged_a=_array(unmanaged_a, np.float64, (c, 3), "unmanaged_a"),
            min_a=_array(min_a, np.float64, (b,), "min_a"),
            max_a=_array(max_a, np.float64, (b,), "max_a"),
            priority=_array(priority, np.int64, (b,), "priority"),
            credit=_array(credit, np.float64, (b,), "credit"),
            on=_array(on, np.bool_, (b,), "on"),
        )
        out = self.result if self.reuse_outputs else PlanArrays.zeros(topo)
        self.solve(ins, out)
        return out.setpoints, out.planned_a, out.binding, out.infeasible

    def solve(self, ins: TickInputs, out: PlanArrays) -> PlanArrays:
        """Solve other input arrays (shaped and typed like `self.inputs`) into `out`."""
        kernel.allocate_kernel(*self._kernel_args(ins, out))
        self._raise_if_bad()
        return out

    def _kernel_args(self, ins: TickInputs, out: PlanArrays) -> tuple[np.ndarray, ...]:
        t = self.topo
        return (
            t.parent, t.has_phase, t.preorder, t.sub_lo, t.sub_hi, t.bay_circuit, t.bay_phase,
            t.id_rank, t.by_id, t.subtree_bays, ins.limit_a, ins.unmanaged_a, ins.min_a, ins.max_a,
            ins.priority, ins.credit, ins.on, out.setpoints, out.planned_a, out.binding,
            out.infeasible, self._iwork, self._fwork, self._full, self._err,
        )  # fmt: skip

    def _raise_if_bad(self) -> None:
        """The kernel checks the values first and, if one is bad, leaves the outputs alone."""
        err = self._err
        if err[0] != kernel.ERR_NONE:
            what, message = _ERRORS[int(err[0])]
            i = int(err[1])
            name = self.topo.circuit_ids[i] if what == "circuit" else self.topo.bay_ids[i]
            raise ProblemError(f"{what} {name!r}: {message}")


def _array(x: npt.ArrayLike, dtype: type, shape: tuple[int, ...], name: str) -> np.ndarray:
    a: np.ndarray = np.ascontiguousarray(x, dtype=dtype)
    if a.shape != shape:
        raise ProblemError(f"{name}: shape {a.shape}, expected {shape}")
    return a


def load_problem(problem: Problem) -> Allocator:
    """An allocator for `problem`'s topology with its values filled in."""
    topo = Topology.build([c.spec() for c in problem.circuits], [b.spec() for b in problem.bays])
    alloc = Allocator(topo)
    ins = alloc.inputs
    for i, c in enumerate(problem.circuits):
        for p in range(3):
            lim = c.limit_a[p]
            ins.limit_a[i, p] = 0.0 if lim is None else lim
            ins.unmanaged_a[i, p] = c.unmanaged_a[p]
    for j, b in enumerate(problem.bays):
        ins.min_a[j] = b.min_a
        ins.max_a[j] = b.max_a
        ins.priority[j] = b.priority
        ins.credit[j] = b.credit
        ins.on[j] = b.on
    return alloc


def to_plan(topo: Topology, out: PlanArrays) -> Plan:
    """Arrays to a `Plan` keyed by id (missing phases as None)."""
    planned: dict[str, tuple[float | None, ...]] = {}
    binding: dict[str, tuple[bool | None, ...]] = {}
    infeasible: list[tuple[str, int]] = []
    for i, cid in enumerate(topo.circuit_ids):
        has = topo.has_phase[i]
        planned[cid] = tuple(float(out.planned_a[i, p]) if has[p] else None for p in range(3))
        binding[cid] = tuple(bool(out.binding[i, p]) if has[p] else None for p in range(3))
        infeasible.extend((cid, p + 1) for p in range(3) if out.infeasible[i, p])
    setpoints = {bid: float(out.setpoints[j]) for j, bid in enumerate(topo.bay_ids)}
    return Plan(setpoints, planned, binding, tuple(infeasible))


def plan(problem: Problem) -> Plan:
    """Solve a whole `Problem` with the kernel (for `chargectl plan`, tests, tools)."""
    alloc = load_problem(problem)
    return to_plan(alloc.topo, alloc.run())


def warm() -> float:
    """Compile the kernel, or load it from numba's cache, on a tiny problem; returns seconds.

    Call at start-up, before the first control write. The cache lives where numba puts it
    (NUMBA_CACHE_DIR if set, else next to this package or a user cache directory).
    """
    t0 = time.perf_counter()
    topo = Topology.build(
        [CircuitSpec("main", None, (1, 2, 3)), CircuitSpec("row", "main", (1,))],
        [BaySpec("s", "row", (1,)), BaySpec("w", "main", (1, 2, 3))],
    )
    alloc = Allocator(topo)
    alloc.inputs.limit_a[:] = [[16.0, 16.0, 16.0], [10.0, 0.0, 0.0]]
    alloc.inputs.min_a[:] = [2.0, 6.0]
    alloc.inputs.max_a[:] = [2.0, 16.0]
    result = alloc.run()
    if not result.setpoints[1] > 0.0:
        raise RuntimeError("allocation kernel warm-up gave a wrong answer")
    return time.perf_counter() - t0
