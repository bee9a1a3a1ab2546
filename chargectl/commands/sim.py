"""`chargectl sim CONFIG [--scenario FILE] [--speed X] [--virtual] [--view] [--duration S]
[--templates DIR]...`

Serves every device of the shed config on its bus, the control API at `sim.control_api`,
and steps the physics in real time (or `--speed` times faster; `--virtual`: only when the
control API says `advance`). Prints one JSON "ready" line on stdout with the bound endpoints;
`--view` (the default when stdout is a terminal) then redraws a compact live view there.
Ctrl-C or SIGTERM ends it cleanly (exit 0). `--templates DIR` (repeatable) adds the device
templates of DIR to the shipped ones and the config's own (`templates:`): a device of a new
model is one YAML file there.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from chargectl.cli import UsageError, template_dirs
from chargectl.config.schema import Endpoint


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG", help="shed config file (YAML)")
    parser.add_argument("--scenario", metavar="FILE", help="scenario file (YAML): timed events")
    parser.add_argument(
        "--speed", type=float, default=1.0, metavar="X", help="simulated seconds per wall second"
    )
    parser.add_argument(
        "--virtual",
        action="store_true",
        help="virtual clock: time moves only on the control API's POST /advance",
    )
    parser.add_argument(
        "--duration", type=float, metavar="S", help="stop after S simulated seconds"
    )
    view = parser.add_mutually_exclusive_group()
    view.add_argument("--view", dest="view", action="store_true", default=None)
    view.add_argument("--no-view", dest="view", action="store_false")
    parser.add_argument(
        "--control-port", type=int, metavar="PORT", help="override sim.control_api's port"
    )
    parser.add_argument(
        "--templates",
        action="append",
        default=[],
        metavar="DIR",
        help="a directory of device templates (<kind>.yaml) besides the shipped ones",
    )


def run(args: argparse.Namespace) -> int:
    # The simulator pulls in numpy and numba: imported only when the command runs.
    from chargectl.config.load import ConfigError, load_shed
    from chargectl.sim.devices.build import BuildError, find_templates
    from chargectl.sim.physics.topology import TopologyError
    from chargectl.sim.scenario import ScenarioError, load_scenario
    from chargectl.sim.serve import print_ready, serve
    from chargectl.sim.world import WorldError

    if args.speed <= 0:
        raise UsageError(f"--speed must be > 0, got {args.speed}")
    if args.duration is not None and args.duration <= 0:
        raise UsageError(f"--duration must be > 0, got {args.duration}")
    if args.virtual and args.speed != 1.0:
        raise UsageError("--speed has no meaning with --virtual")
    try:
        shed = load_shed(args.config, template_dirs(args))
    except ConfigError as exc:
        raise UsageError("\n".join(str(p) for p in exc.problems)) from None
    try:
        templates = find_templates(shed.template_dirs())  # the config's and --templates
    except BuildError as exc:
        raise UsageError(f"--templates: {exc}") from None
    scenario = None
    if args.scenario:
        try:
            scenario = load_scenario(args.scenario, shed)
        except ScenarioError as exc:
            raise UsageError("\n".join(exc.problems)) from None
    endpoint = shed.sim.control_api
    if args.control_port is not None:
        endpoint = Endpoint(endpoint.host, args.control_port)
    view = sys.stdout.isatty() if args.view is None else args.view
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            sim = await serve(
                shed,
                stop,
                scenario=scenario,
                speed=args.speed,
                virtual=args.virtual,
                duration_s=args.duration,
                view=sys.stdout if view else None,
                control_api=endpoint,
                on_ready=print_ready,
                templates=templates,
            )
        except OSError as exc:
            print(f"chargectl sim: cannot listen: {exc}", file=sys.stderr)
            return 1
        except (WorldError, TopologyError) as exc:
            raise UsageError(str(exc)) from None
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        trips = len(sim.world.breakers.trips)
        print(
            f"chargectl sim: stopped at t={sim.world.now:.1f} s, {trips} breaker trip(s)",
            file=sys.stderr,
        )
        return 0

    return asyncio.run(main())
