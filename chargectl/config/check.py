"""The semantic checks of a shed config: pass 2 of `chargectl.config.load`.

They run on a `Shed`, loaded or built in code, in this order (a Shed built in code gets its
problems in it; the loader sorts them by line):

    settings    the supply, ranges of every section, timing        check_settings
    ids         duplicate ids of circuits, buses and devices       here
    circuits    the tree (one root, no cycles), limits, phases     check_circuits
    buses       connections, one entry per line                    check_settings
    devices     bus, unit, phases, circuit, role settings          check_devices
                against the template: ranges, safety rules         check_templates
    meters      each circuit's meter                               check_circuits
    endpoints   metrics, API, MQTT                                 check_settings
    firewatch   the fire-risk watch's thresholds                   check_settings
    bays, text  unique bay ids; names, paths, hosts                check_devices, check_text
    templates   the template directories and their files           check_templates
    sim         the simulator's section                            check_sim

Warnings are what may be intended but is usually a mistake: a sub-circuit limit above its
parent's, a limit above the breaker rating. `Problem` and `Context` are in `problems`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from chargectl.config.check_circuits import check_circuit, check_meters, check_tree
from chargectl.config.check_devices import check_bays, check_devices
from chargectl.config.check_settings import (
    check_bus,
    check_bus_endpoints,
    check_endpoints,
    check_firewatch,
    check_info,
    check_mqtt,
    check_ranges,
    check_timing,
)
from chargectl.config.check_sim import check_sim
from chargectl.config.check_templates import check_template_dirs
from chargectl.config.check_text import check_hosts, check_text
from chargectl.config.problems import Context, Problem, Severity, join
from chargectl.config.schema import Shed

__all__ = ["Problem", "Severity", "check_shed"]


def check_shed(
    shed: Shed,
    *,
    where: Mapping[int, str] | None = None,
    lines: Mapping[str, int] | None = None,
    left_out: Mapping[str, set[str]] | None = None,
) -> list[Problem]:
    """Every semantic problem of `shed` (references, cycles, ids, phases, ranges, ...).

    For a Shed built in code call it with the shed alone: paths are then positions
    (`circuits[1]`) and lines are unknown. The loader passes where each object came from.
    """
    ctx = Context(shed, where or {}, lines or {}, left_out or {})
    check_info(ctx)
    check_ranges(ctx, shed.control, "control")
    check_ranges(ctx, shed.sessions, "sessions")
    check_timing(ctx)
    duplicates(ctx, "circuits", shed.circuits, "circuit")
    duplicates(ctx, "buses", shed.buses, "bus")
    duplicates(ctx, "devices", shed.devices, "device")
    check_tree(ctx)
    for i, c in enumerate(shed.circuits):
        check_circuit(ctx, c, ctx.path(c, f"circuits[{i}]"))
    for i, b in enumerate(shed.buses):
        check_bus(ctx, b, ctx.path(b, f"buses[{i}]"))
    check_bus_endpoints(ctx)
    check_devices(ctx)
    check_meters(ctx)
    check_endpoints(ctx)
    check_mqtt(ctx)
    check_firewatch(ctx)
    check_bays(ctx)
    check_text(ctx)
    check_hosts(ctx)
    check_template_dirs(ctx)
    check_sim(ctx)
    return ctx.problems


def duplicates(ctx: Context, section: str, items: Iterable[Any], what: str) -> None:
    first: dict[str, str] = {}
    for i, item in enumerate(items):
        path = ctx.path(item, f"{section}[{i}]")
        if not item.id.strip():
            ctx.report(join(path, "id"), "must not be empty")
        elif item.id in first:
            at = ctx.line(first[item.id])
            where = f"line {at}" if at is not None else first[item.id]
            ctx.report(join(path, "id"), f"duplicate {what} id '{item.id}' (first at {where})")
        else:
            first[item.id] = path
