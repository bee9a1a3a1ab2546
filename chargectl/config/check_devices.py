"""The checks of the devices, whatever their model: the bus and Modbus unit, the phases and
the circuit, the settings each role has (and no setting of another role), and unique bays.
What depends on the model (port counts, ranges, capabilities) is `check_templates`."""

from __future__ import annotations

from chargectl.config.check_circuits import check_phase_list
from chargectl.config.check_templates import check_against_template, unknown_kind
from chargectl.config.problems import Context, a, join, listed
from chargectl.config.schema import Device, bay_id

UNIT_RANGE = (1, 247)  # Modbus serial unit ids
# Settings only one role has, and that role.
ROLE_SETTINGS = (("ports", "pile"), ("port_power_limit_w", "pile"), ("max_current_a", "evse"))


def check_devices(ctx: Context) -> None:
    units: dict[tuple[str, int], tuple[Device, str]] = {}
    for i, d in enumerate(ctx.shed.devices):
        check_device(ctx, d, ctx.path(d, f"devices[{i}]"), units)


def check_device(
    ctx: Context, d: Device, path: str, units: dict[tuple[str, int], tuple[Device, str]]
) -> None:
    role = ctx.role(d.kind)
    if role is None:
        unknown_kind(ctx, d, path)
    if not ctx.known("buses", d.bus):
        ctx.unknown(join(path, "bus"), "bus", d.bus, ctx.buses)
    if not UNIT_RANGE[0] <= d.unit <= UNIT_RANGE[1]:
        ctx.report(join(path, "unit"), f"must be in 1..247, got {d.unit}")
    elif (d.bus, d.unit) in units:
        other, other_path = units[(d.bus, d.unit)]
        at = ctx.line(other_path)
        where = f" (line {at})" if at is not None else ""
        ctx.report(
            join(path, "unit"),
            f"unit {d.unit} on bus '{d.bus}' is taken by device '{other.id}'{where}",
        )
    else:
        units[(d.bus, d.unit)] = (d, path)
    ppath = join(path, "phases")
    phases_ok = check_phase_list(ctx, d.phases, ppath)
    if d.circuit is not None:
        if not ctx.known("circuits", d.circuit):
            ctx.unknown(join(path, "circuit"), "circuit", d.circuit, ctx.circuits)
        elif phases_ok and d.circuit in ctx.circuits:
            carried = ctx.phases_of(d.circuit)
            lacking = [p for p in d.phases if p not in carried]
            if lacking:
                ctx.report(
                    ppath,
                    f"phase {listed(lacking)}: circuit '{d.circuit}' does not "
                    f"carry it (it carries {listed(carried)})",
                )
    elif role in ("pile", "evse"):
        ctx.report(join(path, "circuit"), f"missing: a {role} hangs on a circuit")
    check_role_settings(ctx, d, path, role, phases_ok)
    template = ctx.template(d.kind)
    if template is not None:
        check_against_template(ctx, d, path, template, phases_ok)


def check_role_settings(
    ctx: Context, d: Device, path: str, role: str | None, phases_ok: bool
) -> None:
    if role == "pile" and phases_ok and len(d.phases) != 1:
        ctx.report(
            join(path, "phases"),
            f"a pile is wired to one phase (its sockets are single-phase), got {len(d.phases)}",
        )
    if role == "evse" and phases_ok and len(d.phases) not in (1, 3):
        ctx.report(join(path, "phases"), f"a wallbox has 1 or 3 phases, got {len(d.phases)}")
    # Settings of another role are a mistake (a wallbox with `ports`), not harmless noise.
    defaults = Device(id="", kind="", bus="", unit=0, circuit=None, phases=())
    for name, owner in ROLE_SETTINGS:
        if role is not None and role != owner and getattr(d, name) != getattr(defaults, name):
            ctx.report(join(path, name), f"only a {owner} has '{name}' (this device is {a(role)})")


def check_bays(ctx: Context) -> None:
    """Bay ids are unique: a pile `wb` and a wallbox `wb/1` would both make bay `wb/1`."""
    first: dict[str, tuple[str, str]] = {}  # bay -> (what makes it, its device's path)
    ids: set[str] = set()
    for i, d in enumerate(ctx.shed.devices):
        if d.id in ids:
            continue  # a duplicate device id, reported as such
        ids.add(d.id)
        template = ctx.template(d.kind)
        if template is None:
            continue  # an unknown kind, reported as such
        low, high = template.ports
        if template.role == "pile" and low <= d.ports <= high:
            bays = [
                (bay_id(d.id, port), f"port {port} of pile '{d.id}'")
                for port in range(1, d.ports + 1)
            ]
        elif template.role == "evse":
            bays = [(bay_id(d.id, None), f"wallbox '{d.id}'")]
        else:
            continue
        path = ctx.path(d, f"devices[{i}]")
        for bay, what in bays:
            if bay not in first:
                first[bay] = (what, path)
                continue
            other, other_path = first[bay]
            at = ctx.line(other_path)
            where = f" (line {at})" if at is not None else ""
            ctx.report(
                join(path, "id"),
                f"bay '{bay}' of {what} is also the bay of {other}{where}: bay ids (a "
                "pile's '<pile>/<port>', a wallbox's id) must be unique",
            )
            break
