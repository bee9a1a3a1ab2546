"""The checks of the simulator's section: its ranges, the unmanaged load per circuit, the
chargers plugged into pile sockets and the cars on wallboxes at start."""

from __future__ import annotations

from collections.abc import Iterable

from chargectl.config.check_settings import check_ranges
from chargectl.config.problems import Context, join
from chargectl.config.schema import PluggedCar, PluggedCharger


def check_sim(ctx: Context) -> None:
    sim = ctx.shed.sim
    check_ranges(ctx, sim, "sim")
    if not 0.0 <= sim.voltage_noise_v <= 20.0:
        ctx.report("sim.voltage_noise_v", f"must be in 0..20 V, got {sim.voltage_noise_v:g}")
    if not sim.voltage_wander_s > 0:
        ctx.report("sim.voltage_wander_s", f"must be > 0, got {sim.voltage_wander_s:g}")
    if not sim.socket_rating_a > 0:
        ctx.report("sim.socket_rating_a", f"must be > 0, got {sim.socket_rating_a:g}")
    for i, load in enumerate(sim.base_load):
        path = ctx.path(load, f"sim.base_load[{i}]")
        check_ranges(ctx, load, path)
        if not ctx.known("circuits", load.circuit):
            ctx.unknown(join(path, "circuit"), "circuit", load.circuit, ctx.circuits)
        elif load.circuit in ctx.circuits:
            n = len(ctx.phases_of(load.circuit))
            if len(load.amps) != n:
                ctx.report(
                    join(path, "amps"),
                    f"one value per phase of circuit '{load.circuit}' ({n}), got {len(load.amps)}",
                )
        if any(a < 0 for a in load.amps):
            ctx.report(join(path, "amps"), "must be >= 0")
    check_chargers(ctx, sim.chargers)
    check_cars(ctx, sim.cars)


def check_cars(ctx: Context, cars: Iterable[PluggedCar]) -> None:
    seen: set[str] = set()
    for i, car in enumerate(cars):
        path = ctx.path(car, f"sim.cars[{i}]")
        check_ranges(ctx, car, path)
        dpath = join(path, "device")
        if car.phases not in (1, 3):
            ctx.report(join(path, "phases"), f"must be 1 or 3, got {car.phases}")
        if not 0.0 < car.drop_s <= 5.0:
            ctx.report(
                join(path, "drop_s"),
                f"must be > 0 and <= 5 (IEC 61851-1: 5 s), got {car.drop_s:g}",
            )
        if not ctx.known("devices", car.device):
            ctx.unknown(dpath, "device", car.device, ctx.devices)
        elif car.device in ctx.devices and ctx.role(ctx.devices[car.device].kind) not in (
            "evse",
            None,
        ):
            ctx.report(dpath, f"'{car.device}' is not a wallbox (evse)")
        if car.device in seen:
            ctx.report(dpath, f"a second car on wallbox '{car.device}'")
        seen.add(car.device)


def check_chargers(ctx: Context, chargers: Iterable[PluggedCharger]) -> None:
    bays: set[str] = set()
    for i, ch in enumerate(chargers):
        path = ctx.path(ch, f"sim.chargers[{i}]")
        check_ranges(ctx, ch, path)
        bpath = join(path, "bay")
        if not ch.profile.strip():
            ctx.report(join(path, "profile"), "must not be empty")
        if ch.power_factor is not None and not 0.5 <= ch.power_factor <= 0.99:
            ctx.report(join(path, "power_factor"), f"must be in 0.5..0.99, got {ch.power_factor:g}")
        pile_id, sep, port_text = ch.bay.rpartition("/")
        if not sep or not port_text.isdigit():
            ctx.report(bpath, f"a bay is '<pile>/<port>', got '{ch.bay}'")
            continue
        if ch.bay in bays:
            ctx.report(bpath, f"a second charger in bay '{ch.bay}'")
        bays.add(ch.bay)
        if not ctx.known("devices", pile_id):
            ctx.unknown(bpath, "device", pile_id, ctx.devices)
            continue
        pile = ctx.devices.get(pile_id)
        if pile is None:
            continue  # left out for its own problems
        role = ctx.role(pile.kind)
        if role is None:
            continue  # its unknown kind is reported at the device
        if role != "pile":
            ctx.report(bpath, f"'{pile_id}' is not a pile")
        elif not 1 <= int(port_text) <= pile.ports:
            ctx.report(bpath, f"pile '{pile_id}' has ports 1..{pile.ports}, got {port_text}")
