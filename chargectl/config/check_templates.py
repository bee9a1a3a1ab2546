"""The checks that depend on a device's model: its settings against its template's ranges
and capabilities, the safety rules a model must meet to be in the shed at all, and the
template directories themselves (`templates:` and `--templates DIR`).

The safety rules are about the daemon being dead (killed, crashed, the edge box off): then
only what each device does on its own keeps the circuits within their breakers.
- a pile needs a watchdog, a fail-safe mask (which sockets stay on when it fires) and a
  per-port power cut-off: the fail-safe budget counts each socket left on at its cut-off,
  and without one nothing bounds it;
- a wallbox needs a watchdog and a fail-safe current (0 A when the watchdog fires).
"""

from __future__ import annotations

from chargectl.config.problems import Context, Problem, join
from chargectl.config.schema import Device
from chargectl.drivers.errors import ConfigError
from chargectl.drivers.template import Field, Template, encode_value

# pile.md, holding register 4 takes 0..3500 W, 0 disabling the cut-off. The fail-safe budget
# counts every fail-safe socket at this cut-off, so it may not be disabled, and below 100 W no
# e-bike charger would run. A model's own range (its template's) narrows it further.
PORT_POWER_LIMIT_RANGE = (100, 3500)
UNSAFE = "the shed would not be safe with the daemon dead"
# capability -> what it is and what gives it, for the safety messages
NEEDS: dict[str, dict[str, str]] = {
    "pile": {
        "watchdog": "no watchdog (fields watchdog_timeout and heartbeat): its relays would "
        "stay as the daemon left them",
        "failsafe_mask": "no fail-safe mask (field failsafe_mask): which sockets stay on when "
        "its watchdog fires would be the pile's choice, not the budget's",
        "port_power_cutoff": "no per-port power cut-off (field port_power_limit): the "
        "fail-safe budget counts each socket left on at its cut-off, and without one "
        "nothing bounds it",
    },
    "evse": {
        "watchdog": "no watchdog (fields watchdog_timeout and heartbeat, or a box-set "
        "watchdog_s with setpoint_heartbeat): it would keep its last offer",
        "failsafe_current": "no fail-safe current (field failsafe_current): nothing takes it "
        "to 0 A when the daemon is gone",
    },
}


def check_template_dirs(ctx: Context) -> None:
    """The directories named, and every template in them: a malformed one is reported
    where it is wrong, `FILE:LINE: PATH: MESSAGE` of the template file."""
    dirs = ctx.shed.template_dirs()
    for i, text in enumerate(ctx.shed.templates):
        path = f"templates[{i}]"
        if not text.strip():
            ctx.report(path, "must not be empty (a directory of templates)")
        elif dirs[i] in ctx.found.missing:
            ctx.report(path, f"templates directory not found: {dirs[i]}")
    ctx.problems.extend(problem_of(exc) for exc in ctx.found.errors)


def problem_of(exc: ConfigError) -> Problem:
    """A template's `FILE:LINE`, `PATH: MESSAGE` error as a Problem of that file."""
    file, _, line = exc.device.rpartition(":")
    if not line.isdigit():
        file, line = exc.device, ""
    path, sep, message = exc.detail.partition(": ")
    if not sep:
        path, message = "", exc.detail
    return Problem(file, int(line) if line else None, path, message)


def unknown_kind(ctx: Context, d: Device, path: str) -> None:
    known = ", ".join(sorted(ctx.found.templates))
    ctx.report(
        join(path, "kind"),
        f"unknown device kind '{d.kind}'; known: {known} (templates looked for in "
        f"{ctx.found.looked_in()})",
    )


def check_against_template(
    ctx: Context, d: Device, path: str, t: Template, phases_ok: bool
) -> None:
    if t.role == "pile":
        _pile(ctx, d, path, t)
    elif t.role == "evse":
        _evse(ctx, d, path, t, phases_ok)
    elif phases_ok and len(d.phases) != t.phases:
        ctx.report(
            join(path, "phases"),
            f"kind '{t.kind}' measures {t.phases} phase{'s' if t.phases > 1 else ''}, "
            f"got {len(d.phases)}",
        )
    for capability, missing in NEEDS.get(t.role, {}).items():
        if capability not in t.capabilities:
            ctx.report(
                join(path, "kind"),
                f"{t.role} '{d.id}': its template '{t.kind}' has {missing}; {UNSAFE}",
            )
    watchdog = t.fields.get("watchdog_timeout")
    if watchdog is not None and not fits(watchdog, ctx.shed.control.watchdog_s):
        ctx.report(
            join(path, "kind"),
            f"control.watchdog_s {ctx.shed.control.watchdog_s} s does not fit the "
            f"watchdog_timeout of template '{t.kind}' ({_register(watchdog)})",
        )


def _pile(ctx: Context, d: Device, path: str, t: Template) -> None:
    low, high = t.ports
    if not low <= d.ports <= high:
        count = f"exactly {low}" if low == high else f"{low}..{high}"
        ctx.report(
            join(path, "ports"), f"a pile of kind '{t.kind}' has {count} ports, got {d.ports}"
        )
    limit = d.port_power_limit_w
    lpath = join(path, "port_power_limit_w")
    low_w, high_w = PORT_POWER_LIMIT_RANGE
    cut = t.fields.get("port_power_limit")
    if not low_w <= limit <= high_w:
        ctx.report(
            lpath,
            f"must be in {low_w}..{high_w} W (the fail-safe budget counts every fail-safe "
            f"socket at the pile's own cut-off, so it may not be disabled), got {limit}",
        )
    elif cut is not None:
        # The driver's own bounds (PileDriver.setup): the template's range, else the register's.
        lo = cut.min or 0.0
        hi = cut.max if cut.max is not None else 0xFFFF * cut.scale
        if not lo <= limit <= hi:
            ctx.report(
                lpath,
                f"pile '{d.id}': {limit} W is outside the per-port cut-off range of its "
                f"template '{t.kind}' ({lo:g}..{hi:g} W)",
            )
        elif not fits(cut, limit):
            ctx.report(
                lpath,
                f"pile '{d.id}': {limit} W does not fit the port_power_limit of its template "
                f"'{t.kind}' ({_register(cut)})",
            )
    mask = t.fields.get("failsafe_mask")
    bits = _mask_bits(mask)
    if mask is not None and bits is not None and low <= d.ports <= high and d.ports > bits:
        ctx.report(
            join(path, "ports"),
            f"pile '{d.id}': the failsafe_mask of its template '{t.kind}' ({mask.type}) holds "
            f"{bits} ports, got {d.ports}",
        )


def _evse(ctx: Context, d: Device, path: str, t: Template, phases_ok: bool) -> None:
    if t.max_current_a is not None:
        low, high = t.max_current_a
        if not low <= d.max_current_a <= high:
            ctx.report(
                join(path, "max_current_a"),
                f"wallbox '{d.id}': its template '{t.kind}' takes {low:g}..{high:g} A, "
                f"got {d.max_current_a:g}",
            )
        else:
            f = t.fields["current_limit"]
            if not fits(f, d.max_current_a):
                ctx.report(
                    join(path, "max_current_a"),
                    f"wallbox '{d.id}': {d.max_current_a:g} A does not fit the current_limit "
                    f"of its template '{t.kind}' ({_register(f)})",
                )
    if phases_ok and len(d.phases) > t.phases:
        ctx.report(
            join(path, "phases"),
            f"wallbox '{d.id}': its template '{t.kind}' carries {t.phases} phase"
            f"{'s' if t.phases > 1 else ''}, got {len(d.phases)}",
        )
    tick = ctx.shed.control.tick_s
    if t.watchdog_s is not None and tick > 0 and t.watchdog_s <= tick:
        ctx.report(
            join(path, "kind"),
            f"wallbox '{d.id}': its template '{t.kind}' sets a watchdog of {t.watchdog_s} s on "
            f"the box, not longer than control.tick_s ({tick:g} s): the box would fall into "
            "failsafe between ticks",
        )


def fits(f: Field, value: float) -> bool:
    """Whether `value` (in the vocabulary's unit) can be written to `f` as the driver writes
    it (value / scale, integers truncated)."""
    try:
        encode_value(value / f.scale, f.type, f.word_order)
    except (ValueError, OverflowError):
        return False
    return True


def _mask_bits(f: Field | None) -> int | None:
    """Ports a holding-register mask holds; None: one coil per port (no limit)."""
    if f is None or f.table == "coil":
        return None
    return {"u16": 16, "i16": 15, "u32": 32, "i32": 31}.get(f.type)


def _register(f: Field) -> str:
    return f"{f.table} {f.address}, {f.type}, scale {f.scale:g}"
