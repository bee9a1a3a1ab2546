"""Test doubles for the drivers: register images, a scripted client, a virtual-time runner."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from chargectl.runtime.clock import VirtualClock

T = TypeVar("T")

ILLEGAL_ADDRESS = 2


@dataclass
class Image:
    """A unit's registers; an address not in the image answers exception 02, like a device."""

    input: dict[int, int] = field(default_factory=dict)
    holding: dict[int, int] = field(default_factory=dict)
    coil: dict[int, int] = field(default_factory=dict)  # 0/1
    discrete: dict[int, int] = field(default_factory=dict)  # 0/1

    def read_table(self, function: int, addr: int, count: int) -> list[int] | int:
        table = {1: self.coil, 2: self.discrete, 3: self.holding, 4: self.input}[function]
        return _read(table, addr, count)

    def read_input(self, addr: int, count: int) -> list[int] | int:
        return _read(self.input, addr, count)

    def read_holding(self, addr: int, count: int) -> list[int] | int:
        return _read(self.holding, addr, count)

    def write_holding(self, addr: int, values: list[int]) -> int | None:
        for i, v in enumerate(values):
            self.holding[addr + i] = v
        return None


def _read(table: dict[int, int], addr: int, count: int) -> list[int] | int:
    if any(a not in table for a in range(addr, addr + count)):
        return ILLEGAL_ADDRESS
    return [table[a] for a in range(addr, addr + count)]


def place(regs: Sequence[int], at: int = 0) -> dict[int, int]:
    return {at + i: v for i, v in enumerate(regs)}


def f32_words(value: float) -> list[int]:
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return [hi, lo]


@dataclass
class Sent:
    function: int
    unit: int
    addr: int
    payload: object  # count for reads, values for writes


class ScriptedClient:
    """A `ModbusClient` over `Image`s with faults to inject, recording what it was sent."""

    def __init__(self, units: dict[int, Image]) -> None:
        self.units = units
        self.connect_results: list[bool] = []  # next connect() results (default: True)
        self.connects = 0
        self.silent: set[int] = set()  # units that never answer
        self.drop_next = False  # the next request finds the link gone
        self.short_reply: set[int] = set()  # units whose replies lack a register
        self.sent: list[Sent] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._connected = False

    @property
    def connected(self) -> bool:
        return self._connected

    async def connect(self) -> bool:
        self.connects += 1
        ok = self.connect_results.pop(0) if self.connect_results else True
        self._connected = ok
        return ok

    def close(self) -> None:
        self._connected = False

    async def read(self, function: int, unit: int, addr: int, count: int) -> list[int] | int:
        self.sent.append(Sent(function, unit, addr, count))
        image = await self._begin(unit)
        try:
            reply = image.read_table(function, addr, count)
            if isinstance(reply, list) and unit in self.short_reply:
                reply = reply[:-1]
            return reply
        finally:
            self.in_flight -= 1

    async def write(self, function: int, unit: int, addr: int, values: Sequence[int]) -> int | None:
        self.sent.append(Sent(function, unit, addr, list(values)))
        image = await self._begin(unit)
        try:
            if function in (5, 15):
                image.coil.update({addr + i: int(bool(v)) for i, v in enumerate(values)})
                return None
            return image.write_holding(addr, list(values))
        finally:
            self.in_flight -= 1

    async def _begin(self, unit: int) -> Image:
        if self.drop_next:
            self.drop_next = False
            self._connected = False
            raise ConnectionResetError("peer reset")
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await asyncio.sleep(0)
        image = self.units.get(unit)
        if image is None or unit in self.silent:
            try:
                await asyncio.get_running_loop().create_future()  # never answers
            finally:
                self.in_flight -= 1
        assert image is not None
        return image

    def functions(self) -> list[int]:
        return [s.function for s in self.sent]


async def run_virtual(clock: VirtualClock, aw: Awaitable[T], max_s: float = 3600.0) -> T:
    """Run `aw` to completion, moving virtual time to each next sleeper when nothing else can
    run. Virtual time ends where the awaited work really ended."""
    task = asyncio.ensure_future(aw)
    start = clock.now()
    while not task.done():
        for _ in range(20):
            await asyncio.sleep(0)
            if task.done():
                break
        else:
            deadline = clock.next_deadline()
            if deadline is None:
                raise AssertionError("stuck: nothing to wait for on the virtual clock")
            clock.advance(max(0.0, deadline - clock.now()))
            if clock.now() - start > max_s:
                task.cancel()
                raise AssertionError(f"still running after {max_s} virtual seconds")
    return task.result()
