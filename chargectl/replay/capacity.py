"""How many sockets can a shed's supply carry: a scenario replayed on the same shed scaled to
a range of socket counts, several seeds each (`chargectl capacity SCENARIO --sockets A:B:STEP`).

    scaled_shed  the shed with piles of the same kind added or removed, still a valid config
    sweep        counts x seeds replays on a local process pool or an existing Dask cluster,
                 summarised per count
    largest_ok   the answer: the largest count that keeps everyone served without a trip

Scaling (`scaled_shed`), decided so that a grown shed is one an installer would build:
- a pile added copies the last pile of its circuit (kind, bus, ports, port cut-off) under a
  fresh id `<that pile>-x1`, `-x2`, ... and takes the lowest free Modbus unit id on that bus;
- added piles go round the circuits that hold piles, in config order, so a two-row shed
  grows both rows; each goes on the phase of its circuit that has the fewest sockets (a pile
  copied onto the same phase every time would unbalance the supply and understate capacity);
- piles are removed from the row that has the most (the later row on a tie), its last pile
  first, so a shrunk shed stays balanced too; never below one pile; wallboxes and meters stay,
  and `sim.chargers` entries in removed piles go with them;
- the pile count is the least (in that order of adding or removing) that gives at least the
  sockets asked; sockets are counted on the topology, not read from `ports`.
Only the Shed is scaled: a scenario whose faults name a removed pile is the runner's to refuse.

Summary (`sweep`), per count over its seeds (seed i is the scenario's seed + i):
- `served_ratio` and `wait_p95_s` at their 5th and 95th percentile (linear interpolation);
- a run whose `served_ratio` is None with 0 sessions asked for nothing and was refused
  nothing: it counts as 1.0. None with sessions is a report we cannot judge: ValueError;
- a run whose `wait_p95_s` is None (nobody waited for current) is left out of the wait
  percentiles, which are None when every run has none;
- `ok`: the 5th percentile of `served_ratio` >= 0.95 ("keeps served_ratio >= 0.95" in 19 of 20
  seeded days) and no run tripped a breaker (`trips_max == 0`: a trip is never acceptable).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import Any

import numpy as np

from chargectl.config.schema import Device, Shed
from chargectl.topology import Topology, topology_of

__all__ = [
    "MAX_POINTS",
    "SERVED_OK",
    "RunFn",
    "largest_ok",
    "parse_range",
    "scaled_shed",
    "socket_count",
    "sweep",
    "table",
]

RunFn = Callable[[str, int | None, int], dict[str, Any]]

UNITS = range(1, 248)  # Modbus serial unit ids
SERVED_OK = 0.95  # the 5th percentile of served_ratio a count must reach
LOW_Q, HIGH_Q = 5.0, 95.0  # percentiles reported
MAX_POINTS = 200  # socket counts in one sweep


# ---------------------------------------------------------------- scaling


def socket_count(shed: Shed) -> int:
    """Socket bays of the shed (wallboxes are bays but not sockets)."""
    return sum(1 for b in topology_of(shed).bays if b.is_socket)


def scaled_shed(shed: Shed, sockets: int) -> Shed:
    """`shed` with the least pile count giving at least `sockets` socket bays (see the module
    docstring for where piles go). ValueError when it cannot be done: no pile to copy, or a
    bus without a free unit id."""
    if sockets < 1:
        raise ValueError(f"sockets must be >= 1, got {sockets}")
    topo = topology_of(shed)
    per_pile = _sockets_per_pile(topo)
    piles = [d for d in shed.devices if d.id in per_pile]
    if not piles:
        raise ValueError(f"shed '{shed.shed.name}' has no pile with sockets to copy or remove")
    have = sum(per_pile.values())
    if have == sockets:
        return shed
    if have > sockets:
        removed = {p.id for p in piles} - {p.id for p in _shrunk(piles, per_pile, sockets)}
        if not removed:  # one pile, or no pile small enough to go
            return shed
        out = _without(shed, removed)
    else:
        out = dataclasses.replace(
            shed, devices=shed.devices + _added(shed, topo, piles, per_pile, sockets - have)
        )
    got = socket_count(out)
    if got < sockets:  # the copies should carry exactly their originals' sockets
        raise ValueError(f"scaled shed has {got} sockets, fewer than the {sockets} asked")
    return out


def _sockets_per_pile(topo: Topology) -> dict[str, int]:
    return dict(Counter(b.device for b in topo.bays if b.is_socket))


def _shrunk(piles: list[Device], per_pile: dict[str, int], sockets: int) -> list[Device]:
    kept = list(piles)
    have = sum(per_pile.values())
    while len(kept) > 1:
        rows = Counter(p.circuit for p in kept)
        order = list(dict.fromkeys(p.circuit for p in kept))
        fullest = max(order[::-1], key=lambda c: rows[c])  # a tie: the later row
        last = next(p for p in reversed(kept) if p.circuit == fullest)
        if have - per_pile[last.id] < sockets:
            break
        kept.remove(last)
        have -= per_pile[last.id]
    return kept


def _without(shed: Shed, removed: set[str]) -> Shed:
    chargers = tuple(c for c in shed.sim.chargers if c.bay.rpartition("/")[0] not in removed)
    return dataclasses.replace(
        shed,
        devices=tuple(d for d in shed.devices if d.id not in removed),
        sim=dataclasses.replace(shed.sim, chargers=chargers),
    )


def _added(
    shed: Shed, topo: Topology, piles: list[Device], per_pile: dict[str, int], missing: int
) -> tuple[Device, ...]:
    rows = list(dict.fromkeys(p.circuit for p in piles))
    last_of = {p.circuit: p for p in piles}
    # Sockets per (circuit, phase), to put each new pile on its row's lightest phase.
    load = Counter((p.circuit, p.phases[0]) for p in piles for _ in range(per_pile[p.id]))
    taken = {(d.bus, d.unit) for d in shed.devices}
    ids = {d.id for d in shed.devices}
    suffix = Counter[str]()
    added: list[Device] = []
    while missing > 0:
        row = rows[len(added) % len(rows)]
        source = last_of[row]
        phase = min(topo.phases_of(str(row)), key=lambda ph: load[(row, ph)])
        unit = next((u for u in UNITS if (source.bus, u) not in taken), None)
        if unit is None:
            raise ValueError(
                f"bus '{source.bus}' has no free Modbus unit id (1..247) for another pile "
                f"like '{source.id}': {missing} more sockets needed; "
                "a larger shed needs another bus"
            )
        new_id = _fresh_id(source.id, ids, suffix)
        added.append(dataclasses.replace(source, id=new_id, unit=unit, phases=(phase,)))
        taken.add((source.bus, unit))
        ids.add(new_id)
        load[(row, phase)] += per_pile[source.id]
        missing -= per_pile[source.id]
    return tuple(added)


def _fresh_id(base: str, ids: set[str], suffix: Counter[str]) -> str:
    while True:
        suffix[base] += 1
        candidate = f"{base}-x{suffix[base]}"
        # A wallbox named `<candidate>/<n>` would clash with one of its bays.
        if candidate not in ids and not any(i.startswith(candidate + "/") for i in ids):
            return candidate


# ---------------------------------------------------------------- the sweep


def parse_range(text: str) -> list[int]:
    """`A:B:STEP` (A, A+STEP, ... up to B) or a single count `N`."""
    parts = text.strip().split(":")
    if len(parts) not in (1, 3):
        raise ValueError(f"--sockets: expected A:B:STEP or a single count, got '{text}'")
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"--sockets: whole numbers expected, got '{text}'") from None
    if len(numbers) == 1:
        numbers = [numbers[0], numbers[0], 1]
    low, high, step = numbers
    if low < 1:
        raise ValueError(f"--sockets: counts start at 1, got {low}")
    if high < low:
        raise ValueError(f"--sockets: A:B:STEP needs A <= B, got {low} > {high}")
    if step < 1:
        raise ValueError(f"--sockets: STEP must be >= 1, got {step}")
    points = range(low, high + 1, step)
    if len(points) > MAX_POINTS:
        raise ValueError(
            f"--sockets: {len(points)} counts, at most {MAX_POINTS}: take a larger STEP"
        )
    return list(points)


def sweep(
    scenario_path: str,
    counts: Sequence[int],
    seeds: int,
    *,
    run: RunFn | None = None,
    workers: int | None = None,
    dask_address: str | None = None,
    on_done: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """One row per count (see the module docstring). Counts that scale to the same shed are
    replayed once; each run gets the actual socket count, so the runner scales to the same
    shed. `run(scenario_path, sockets, seed)` must be picklable (a top-level function)."""
    from chargectl.replay.scenario import load_scenario

    if seeds < 1:
        raise ValueError(f"--seeds: must be >= 1, got {seeds}")
    if not counts:
        raise ValueError("--sockets: no socket count to try")
    scenario = load_scenario(scenario_path)
    actual = {n: socket_count(scaled_shed(scenario.shed, n)) for n in counts}
    jobs = [
        (sockets, scenario.seed + i)
        for sockets in sorted(set(actual.values()))
        for i in range(seeds)
    ]
    fn = run if run is not None else _default_run()
    if dask_address is not None:
        reports = _on_dask(dask_address, fn, scenario_path, jobs, on_done)
    else:
        reports = _on_pool(workers, fn, scenario_path, jobs, on_done)
    by_count: dict[int, list[dict[str, Any]]] = {}
    for (sockets, _), report in zip(jobs, reports, strict=True):
        by_count.setdefault(sockets, []).append(report)
    return [_row(n, actual[n], by_count[actual[n]]) for n in counts]


def _default_run() -> RunFn:
    from chargectl.replay.runner import replay_point  # type: ignore[import-not-found,unused-ignore]

    fn: RunFn = replay_point
    return fn


Job = tuple[int, int]  # (sockets, seed)


def _on_pool(
    workers: int | None,
    run: RunFn,
    path: str,
    jobs: list[Job],
    on_done: Callable[[int, int], None] | None,
) -> list[dict[str, Any]]:
    # Spawned, not forked: the runner uses asyncio and threads, which a fork would copy
    # half-way through whatever the parent was doing.
    size = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    reports: list[dict[str, Any] | None] = [None] * len(jobs)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=size, mp_context=ctx) as pool:
        index: dict[Future[dict[str, Any]], int] = {
            pool.submit(run, path, sockets, seed): i for i, (sockets, seed) in enumerate(jobs)
        }
        try:
            for done, future in enumerate(as_completed(index), 1):
                reports[index[future]] = future.result()
                if on_done is not None:
                    on_done(done, len(jobs))
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return _all(reports)


def _on_dask(
    address: str,
    run: RunFn,
    path: str,
    jobs: list[Job],
    on_done: Callable[[int, int], None] | None,
) -> list[dict[str, Any]]:
    import distributed  # only a sweep on a cluster needs it

    reports: list[dict[str, Any] | None] = [None] * len(jobs)
    with distributed.Client(address) as client:
        futures = client.map(
            run,
            [path] * len(jobs),
            [sockets for sockets, _ in jobs],
            [seed for _, seed in jobs],
            pure=False,
        )
        index = {f.key: i for i, f in enumerate(futures)}
        try:
            for done, future in enumerate(distributed.as_completed(futures), 1):
                reports[index[future.key]] = future.result()
                if on_done is not None:
                    on_done(done, len(jobs))
        except BaseException:
            client.cancel(futures)
            raise
    return _all(reports)


def _all(reports: Iterable[dict[str, Any] | None]) -> list[dict[str, Any]]:
    out = list(reports)
    missing = sum(1 for r in out if r is None)
    if missing:
        raise RuntimeError(f"{missing} replay runs returned no report")
    return [r for r in out if r is not None]


def _served(report: dict[str, Any]) -> float:
    ratio = report["served_ratio"]
    if ratio is not None:
        return float(ratio)
    if report["sessions"] == 0:
        return 1.0  # nobody asked for energy: nobody was refused any
    raise ValueError(
        f"a replay with {report['sessions']} sessions reported no served_ratio "
        f"(seed {report.get('seed')}): cannot judge the count"
    )


def _percentiles(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    low, high = np.percentile(np.asarray(values, dtype=float), [LOW_Q, HIGH_Q])
    return float(low), float(high)


def _row(asked: int, sockets: int, reports: list[dict[str, Any]]) -> dict[str, Any]:
    served_low, served_high = _percentiles([_served(r) for r in reports])
    waits = [float(r["wait_p95_s"]) for r in reports if r["wait_p95_s"] is not None]
    wait_low, wait_high = _percentiles(waits)
    trips = max(int(r["trips"]) for r in reports)
    return {
        "asked": asked,
        "sockets": sockets,
        "runs": len(reports),
        "served_ratio_p5": served_low,
        "served_ratio_p95": served_high,
        "wait_p95_s_p5": wait_low,
        "wait_p95_s_p95": wait_high,
        "trips_max": trips,
        "ok": served_low is not None and served_low >= SERVED_OK and trips == 0,
    }


def largest_ok(rows: Iterable[dict[str, Any]]) -> int | None:
    """The largest socket count whose row is ok and every smaller count's row too (a count
    that passes above one that fails passed on the luck of its seeds); None when the
    smallest fails."""
    best: int | None = None
    for row in sorted(rows, key=lambda r: int(r["sockets"])):
        if not row["ok"]:
            break
        best = int(row["sockets"])
    return best


# ---------------------------------------------------------------- the terminal

COLUMNS = (  # header, row key, format
    ("sockets", "sockets", "{:d}"),
    ("runs", "runs", "{:d}"),
    ("served p5", "served_ratio_p5", "{:.3f}"),
    ("served p95", "served_ratio_p95", "{:.3f}"),
    ("wait p95 p5 (s)", "wait_p95_s_p5", "{:.0f}"),
    ("wait p95 p95 (s)", "wait_p95_s_p95", "{:.0f}"),
    ("trips max", "trips_max", "{:d}"),
    ("ok", "ok", "yes/no"),
)


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    if fmt == "yes/no":
        return "yes" if value else "no"
    return fmt.format(value)


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a plain text table, then the answer."""
    cells = [[h for h, _, _ in COLUMNS]]
    for row in rows:
        cells.append([_cell(row[key], fmt) for _, key, fmt in COLUMNS])
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    best = largest_ok(rows)
    answer = (
        f"largest count keeping served_ratio p5 >= {SERVED_OK} with 0 trips: {best}"
        if best is not None
        else f"no count keeps served_ratio p5 >= {SERVED_OK} with 0 trips"
    )
    return "\n".join([*lines, "", answer])
