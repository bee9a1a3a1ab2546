"""Small sheds built directly as `Shed` objects, and register decoding helpers for the tests."""

from __future__ import annotations

import struct
from pathlib import Path

from chargectl.config.schema import (
    BaseLoad,
    Breaker,
    Circuit,
    Device,
    Endpoint,
    PluggedCar,
    Shed,
    ShedInfo,
    SimSettings,
    TcpBus,
)

REPO = Path(__file__).resolve().parents[2]
CAMPUS = REPO / "deploy" / "examples" / "campus.yaml"
SMALL = REPO / "deploy" / "examples" / "small.yaml"


def small_shed(
    *,
    rating_a: float = 32.0,
    curve: str = "C",
    ports: int = 12,
    base_a: float = 0.0,
    noise_a: float = 0.0,
    port_power_limit_w: int = 2000,
) -> Shed:
    """One pile and an SDM120 on a single-phase supply, no chargers plugged."""
    return Shed(
        source=Path("/nonexistent/small.yaml"),
        shed=ShedInfo("test", 1, 220.0),
        circuits=(
            Circuit(
                "main",
                min(30.0, rating_a),
                Breaker(rating_a, curve),
                meter="m",  # type: ignore[arg-type]
            ),
        ),
        buses=(TcpBus("line", "127.0.0.1", 0),),
        devices=(
            Device("pile", "pile", "line", 1, "main", (1,), ports, port_power_limit_w),
            Device("m", "sdm120", "line", 10, None, (1,)),
        ),
        sim=SimSettings(
            control_api=Endpoint("127.0.0.1", 0),
            base_load=(BaseLoad("main", (base_a,), noise_a),) if base_a or noise_a else (),
        ),
    )


def tree_shed() -> Shed:
    """Three-phase: main (63 A) with sub (40 A) below it; a pile on sub phase 2, a pile on
    main phase 1, a 3-phase wallbox on main, an SDM630 on each circuit."""
    return Shed(
        source=Path("/nonexistent/tree.yaml"),
        shed=ShedInfo("tree", 3, 230.0),
        circuits=(
            Circuit("main", 63.0, Breaker(63.0, "C"), meter="m-main"),
            Circuit("sub", 40.0, Breaker(40.0, "B"), parent="main", meter="m-sub"),
        ),
        buses=(TcpBus("line", "127.0.0.1", 0),),
        devices=(
            Device("m-main", "sdm630", "line", 10, None, (1, 2, 3)),
            Device("m-sub", "sdm630", "line", 11, None, (1, 2, 3)),
            Device("p-sub", "pile", "line", 1, "sub", (2,), 10),
            Device("p-main", "pile", "line", 2, "main", (1,), 4),
            Device("wb", "evse", "line", 21, "main", (1, 2, 3), max_current_a=16.0),
        ),
        sim=SimSettings(
            control_api=Endpoint("127.0.0.1", 0),
            base_load=(BaseLoad("main", (1.0, 2.0, 3.0)), BaseLoad("sub", (0.5, 0.5, 0.5))),
            cars=(PluggedCar("wb", max_a=16.0, phases=3, soc=0.2),),
        ),
    )


def f32(regs: list[int] | int, offset: int = 0) -> float:
    assert isinstance(regs, list), f"exception {regs}"
    return float(struct.unpack(">f", struct.pack(">HH", regs[offset], regs[offset + 1]))[0])


def u32(regs: list[int] | int, offset: int = 0) -> int:
    assert isinstance(regs, list), f"exception {regs}"
    return (regs[offset] << 16) | regs[offset + 1]
