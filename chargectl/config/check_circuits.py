"""The checks of the breaker tree: one root, parents that exist, no cycles, phases on the
supply and on the parent, limits against the breaker's rating, and the meter each circuit
names (a meter kind, measuring every phase of the circuit, one circuit per meter).

A circuit's phases are the topology's (`Context.phases_of`): its own, else its parent's; a
circuit in a cycle or under an unknown parent carries the supply's.
"""

from __future__ import annotations

from chargectl.config.problems import Context, a, join, listed
from chargectl.config.schema import Circuit

# IEC 60898-1: a breaker must carry 1.13 In for an hour; above that it trips in time.
BREAKER_HOLD_RATIO = 1.13


def check_tree(ctx: Context) -> None:
    circuits = ctx.shed.circuits
    if not circuits and not ctx.left_out.get("circuits"):
        ctx.report("circuits", "at least one circuit is needed: the supply (the root)")
        return
    roots = [c for c in circuits if c.parent is None]
    if not roots and circuits and not ctx.left_out.get("circuits"):
        ctx.report("circuits", "no root circuit: exactly one circuit (the supply) has no parent")
    for extra in roots[1:]:
        path = ctx.path(extra, f"circuits[{circuits.index(extra)}]")
        ctx.report(
            path,
            f"a second root circuit '{extra.id}' (no parent) besides '{roots[0].id}': "
            "give it a parent",
        )
    reported: set[str] = set()
    for i, c in enumerate(circuits):
        if c.parent is None:
            continue
        path = join(ctx.path(c, f"circuits[{i}]"), "parent")
        if not ctx.known("circuits", c.parent):
            ctx.unknown(path, "circuit", c.parent, ctx.circuits)
            continue
        # Walk up; meeting `c` again is a cycle (reported once, at its first member).
        chain, seen, cur = [c.id], {c.id}, ctx.circuits.get(c.parent)
        while cur is not None and cur.id not in seen:
            chain.append(cur.id)
            seen.add(cur.id)
            cur = ctx.circuits.get(cur.parent) if cur.parent is not None else None
        if cur is not None and cur.id == c.id and not reported & seen:
            reported |= seen
            ctx.report(path, f"cycle: {' -> '.join([*chain, c.id])}")


def check_phase_list(ctx: Context, phases: tuple[int, ...], path: str) -> bool:
    """Phases are 1..3, listed once each, and on the supply."""
    ok = True
    if not phases:
        ctx.report(path, "at least one phase is needed")
        return False
    absent = [p for p in phases if p not in (1, 2, 3)]
    if absent:
        ctx.report(path, f"phase {listed(absent)} does not exist: phases are 1, 2, 3")
        ok = False
    off_supply = [p for p in phases if p in (1, 2, 3) and p not in ctx.supply]
    if off_supply:
        ctx.report(path, f"phase {listed(off_supply)}: the supply is single-phase (shed.phases: 1)")
        ok = False
    dups = sorted({p for p in phases if phases.count(p) > 1})
    if dups:
        ctx.report(path, f"phase {listed(dups)} listed twice")
        ok = False
    return ok


def check_circuit(ctx: Context, c: Circuit, path: str) -> None:
    if not c.limit_a > 0:
        ctx.report(join(path, "limit_a"), f"must be > 0, got {c.limit_a:g}")
    if not c.breaker.rating_a > 0:
        ctx.report(join(path, "breaker.rating_a"), f"must be > 0, got {c.breaker.rating_a:g}")
    elif c.limit_a > BREAKER_HOLD_RATIO * c.breaker.rating_a:
        ctx.report(
            join(path, "limit_a"),
            f"{c.limit_a:g} A is above {BREAKER_HOLD_RATIO:g} x the breaker rating "
            f"({c.breaker.rating_a:g} A): the breaker would trip on the planned load",
        )
    elif c.limit_a > c.breaker.rating_a:
        ctx.warn(
            join(path, "limit_a"),
            f"{c.limit_a:g} A is above the breaker rating ({c.breaker.rating_a:g} A): "
            "the plan would run the breaker into its overload zone",
        )
    if c.unmanaged_worst_a is not None:
        if c.unmanaged_worst_a < 0:
            ctx.report(
                join(path, "unmanaged_worst_a"), f"must be >= 0, got {c.unmanaged_worst_a:g}"
            )
        elif c.limit_a > 0 and c.unmanaged_worst_a >= c.limit_a:
            ctx.warn(
                join(path, "unmanaged_worst_a"),
                f"{c.unmanaged_worst_a:g} A leaves no room under limit_a ({c.limit_a:g} A)",
            )
    parent = ctx.circuits.get(c.parent) if c.parent is not None else None
    if parent is not None and parent.id != c.id and c.limit_a > parent.limit_a > 0:
        ctx.warn(
            join(path, "limit_a"),
            f"{c.limit_a:g} A is above the limit of its parent '{parent.id}' "
            f"({parent.limit_a:g} A): the parent's limit binds first",
        )
    if c.phases:
        ppath = join(path, "phases")
        if check_phase_list(ctx, c.phases, ppath) and parent is not None:
            lacking = [p for p in c.phases if p not in ctx.phases_of(parent.id)]
            if lacking:
                ctx.report(
                    ppath,
                    f"phase {listed(lacking)}: the parent circuit '{parent.id}' does not carry it",
                )
    if c.meter is not None and not ctx.known("devices", c.meter):
        ctx.unknown(join(path, "meter"), "device", c.meter, ctx.devices)


def check_meters(ctx: Context) -> None:
    measured: dict[str, str] = {}  # meter id -> the circuit it measures
    for i, c in enumerate(ctx.shed.circuits):
        if c.meter is None or c.meter not in ctx.devices:
            continue
        path = join(ctx.path(c, f"circuits[{i}]"), "meter")
        meter = ctx.devices[c.meter]
        role = ctx.role(meter.kind)
        if role is None:
            continue  # the unknown kind is reported at the device
        if role != "meter":
            ctx.report(path, f"'{c.meter}' is {a(role)}, not a meter (kind '{meter.kind}')")
            continue
        if c.meter in measured:
            ctx.report(path, f"meter '{c.meter}' already measures circuit '{measured[c.meter]}'")
            continue
        measured[c.meter] = c.id
        if meter.circuit is not None and meter.circuit != c.id:
            ctx.report(
                path, f"meter '{c.meter}' says it is on circuit '{meter.circuit}', not '{c.id}'"
            )
        missing = [p for p in ctx.phases_of(c.id) if p not in meter.phases]
        if missing:
            ctx.report(
                path,
                f"meter '{c.meter}' does not measure phase {listed(missing)} of circuit '{c.id}'",
            )
    if ctx.left_out.get("circuits"):
        return  # a circuit left out for its own problems may be the one naming a meter
    for i, d in enumerate(ctx.shed.devices):
        if ctx.role(d.kind) == "meter" and d.id not in measured:
            ctx.warn(
                ctx.path(d, f"devices[{i}]"),
                f"meter '{d.id}' is named by no circuit's 'meter': the controller ignores it",
            )
