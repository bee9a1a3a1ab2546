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
from typing import Protocol, cast


class RegisterModel(Protocol):
    """A unit's tables. A model serving coils or discrete inputs (a template that puts its
    relays there) also has `read_coils`, `read_discrete` and `write_coils`; one without
    answers those functions with exception 01 (illegal function)."""

    def read_input(self, addr: int, count: int) -> list[int] | int: ...
    def read_holding(self, addr: int, count: int) -> list[int] | int: ...
    def write_holding(self, addr: int, values: list[int]) -> int | None: ...


ILLEGAL_FUNCTION = 1
_READERS = {1: "read_coils", 2: "read_discrete", 3: "read_holding", 4: "read_input"}


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
        read = getattr(model, _READERS[function], None)
        if read is None:
            return ILLEGAL_FUNCTION
        reply = read(addr, count)
        return reply if isinstance(reply, int) else [int(v) for v in reply]

    async def write(self, function: int, unit: int, addr: int, values: Sequence[int]) -> int | None:
        model = await self._model(unit)
        if function in (5, 15):
            write_coils = getattr(model, "write_coils", None)
            if write_coils is None:
                return ILLEGAL_FUNCTION
            return cast(int | None, write_coils(addr, [int(bool(v)) for v in values]))
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
