"""An in-memory line: the bus talks straight to register models, no sockets, no framing.

For replays on virtual time and for tests. A model is anything with the simulator's device
interface (`read_input`, `read_holding`, `write_holding` returning values or an exception
code), so `chargectl.sim.devices` models plug in directly. A unit that is absent, or for which
`answers(unit)` is false, never answers: the request waits until the bus's timeout runs out
on the bus's clock, as on a real line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol


class RegisterModel(Protocol):
    def read_input(self, addr: int, count: int) -> list[int] | int: ...
    def read_holding(self, addr: int, count: int) -> list[int] | int: ...
    def write_holding(self, addr: int, values: list[int]) -> int | None: ...


def _always(unit: int) -> bool:
    return True


class MemoryClient:
    def __init__(
        self,
        units: Mapping[int, RegisterModel],
        *,
        answers: Callable[[int], bool] = _always,
    ) -> None:
        self.units = units
        self.answers = answers
        self._connected = False

    @property
    def connected(self) -> bool:
        return self._connected

    async def connect(self) -> bool:
        self._connected = True
        return True

    def close(self) -> None:
        self._connected = False

    async def read(self, function: int, unit: int, addr: int, count: int) -> list[int] | int:
        model = await self._model(unit)
        read = model.read_input if function == 4 else model.read_holding
        reply = read(addr, count)
        return reply if isinstance(reply, int) else [int(v) for v in reply]

    async def write(self, function: int, unit: int, addr: int, values: Sequence[int]) -> int | None:
        model = await self._model(unit)
        return model.write_holding(addr, list(values))

    async def _model(self, unit: int) -> RegisterModel:
        if not self._connected:
            raise ConnectionError("memory line not connected")
        model = self.units.get(unit)
        if model is None or not self.answers(unit):
            await asyncio.get_running_loop().create_future()  # silence: the bus times out
        assert model is not None
        await asyncio.sleep(0)  # a request is never instantaneous to its caller
        return model
