"""The small protocols the control loop's I/O adapter talks to: one per role. A driver says
its role (`role`), and the adapter uses only what the role's protocol offers; what a model can
do beyond the role's core is in `capabilities` (template_fields.CAPABILITIES). No code outside
drivers/ tests a concrete driver class."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Protocol

from chargectl.config.schema import Device
from chargectl.drivers.readings import EvseHot, MeterReading, PileHot, PileSlow, Tap


class PileRole(Protocol):
    role: Literal["pile"]
    id: str
    ports: int
    capabilities: frozenset[str]

    async def read_hot(self) -> PileHot: ...
    async def read_slow(self) -> PileSlow: ...
    async def read_tap(self) -> Tap | None: ...
    async def setup(
        self,
        watchdog_s: int,
        failsafe_mask: int,
        port_power_limit_w: int | None = None,
        *,
        retry_for_s: float = 0.0,
    ) -> None: ...
    async def set_failsafe_mask(self, mask: int, *, retry_for_s: float = 0.0) -> None: ...
    async def heartbeat(self) -> None: ...
    async def write_relays(self, relays: Mapping[int, bool]) -> int: ...
    async def write_indicators(self, lamps: Mapping[int, int]) -> int: ...
    async def fault_reset(self, port: int | None = None) -> None: ...


class EvseRole(Protocol):
    role: Literal["evse"]
    id: str
    capabilities: frozenset[str]
    min_current_a: float
    step_a: float

    @property
    def max_current_a(self) -> float: ...
    async def read_hot(self) -> EvseHot: ...
    async def read_tap(self) -> Tap | None: ...
    async def setup(
        self,
        watchdog_s: int,
        failsafe_current_a: float = 0.0,
        current_a: float = 0.0,
        *,
        retry_for_s: float = 0.0,
    ) -> bool: ...
    async def set_current(self, amps: float) -> None: ...
    async def set_indicator(self, code: int) -> None: ...
    async def heartbeat(self) -> None: ...


class MeterRole(Protocol):
    role: Literal["meter"]
    id: str
    device: Device

    async def read(self) -> MeterReading: ...
