"""Small sheds built directly from the config types (no YAML), for the control unit tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from chargectl.config.schema import (
    Breaker,
    Circuit,
    ControlSettings,
    Device,
    Shed,
    ShedInfo,
    TcpBus,
)
from chargectl.control.allocation import make_allocator
from chargectl.control.core import ControlCore
from chargectl.control.layout import Layout, build_layout
from chargectl.control.observe import Demand, Observation


def two_row_shed(
    *,
    phases: int = 1,
    main_limit: float = 30.0,
    row_limit: float = 16.0,
    ports: int = 8,
    port_power_limit_w: int = 2000,
    worst: float = 2.0,
    control: ControlSettings | None = None,
) -> Shed:
    """main (metered) -> row-a, row-b (unmetered), one pile per row, one wallbox on main."""
    ph = tuple(range(1, phases + 1))
    return Shed(
        source=Path("/tmp/test.yaml"),
        shed=ShedInfo(name="test", phases=phases, voltage_v=220.0),  # type: ignore[arg-type]
        circuits=(
            Circuit("main", main_limit, Breaker(32.0), None, (), "meter", worst),
            Circuit("row-a", row_limit, Breaker(20.0), "main", (), None, 0.0),
            Circuit("row-b", row_limit, Breaker(20.0), "main", (), None, 0.0),
        ),
        buses=(TcpBus("line", "127.0.0.1", 5020),),
        devices=(
            Device("meter", "sdm630" if phases == 3 else "sdm120", "line", 10, None, ph),
            Device("pa", "pile", "line", 1, "row-a", (1,), ports, port_power_limit_w),
            Device("pb", "pile", "line", 2, "row-b", (1,), ports, port_power_limit_w),
            Device("wb", "evse", "line", 3, "main", ph, max_current_a=16.0),
        ),
        control=control or ControlSettings(),
    )


def core_rig(**kw: Any) -> tuple[Layout, ControlCore, Observation]:
    """The two-row shed's layout, a core with the real kernel, and an observation where every
    device answers and main's single-phase meter reads 0 A."""
    shed = two_row_shed(**kw)
    lay = build_layout(shed)
    core = ControlCore(shed, lay, make_allocator(lay))
    obs = Observation.empty(lay)
    obs.bay_up[:] = True
    obs.meter_a[0] = [0.0, np.nan, np.nan]
    return lay, core, obs


def want(lay: Layout, bays: list[str]) -> Demand:
    """Sessions that want current at `bays`."""
    d = Demand.none(lay)
    for b in bays:
        d.wants[lay.bay_index[b]] = True
    return d
