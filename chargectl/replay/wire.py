"""The replay's Modbus line: in memory, but every request and reply framed as on the wire.

`WireClient` is a `ModbusClient` (drivers/bus.py) for a replay on virtual time. Unlike
drivers/memory.py, which calls register models directly, it goes through the bytes:

    request -> PDU (function, address, count or values, as pymodbus encodes them)
    -> ADU (MBAP with a transaction id on a TCP bus; unit + CRC-16 on an RTU bus)
    -> the simulator's own `BusServer.answer` (the unit's faults, power, the line's pacing,
       then `sim.modbus_frame.handle_pdu` against the device model)
    -> reply ADU -> checked (transaction, unit, length or CRC) -> reply PDU decoded.

So exception replies, coil functions and every per-unit fault the simulator injects (silent,
delay, exception, garbage, refuse_writes) reach the bus as they do over TCP, and the reply is
decoded with the same rules as drivers/transport.py: an exception reply to the function asked
is returned as its code; a reply to another function, a byte count that disagrees with the
frame, or a write echo that names another address, value or count is no answer
(`TimeoutError`); a read reply of the wrong register count is handed up as it is (the bus
raises `BadValue`, as it does for pymodbus). A unit that does not answer never returns: the
bus's timeout runs out on its injected clock.

`wire_factories` builds one client factory per config bus, for `Options.client_factories`;
`FrameStats` counts frames and the time spent framing (for the benchmark). `settle` and
`advance` drive a process on a `VirtualClock`: step the world, move the clock, then let every
woken task run until all wait on the clock again.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from chargectl.config.schema import RtuBus, Shed
from chargectl.drivers.bus import ClientFactory, ModbusClient
from chargectl.runtime.clock import VirtualClock
from chargectl.sim.modbus_frame import (
    COIL_OFF,
    COIL_ON,
    MBAP,
    WRITE_COIL,
    WRITE_COILS,
    WRITE_MULTIPLE,
    WRITE_SINGLE,
    mbap_frame,
    pack_bits,
    rtu_check,
    rtu_frame,
    unpack_bits,
)
from chargectl.sim.runner import Simulator

# What answers a request PDU to a unit: the reply PDU, or None (the line stays silent).
# `BusServer.answer` is one.
Answer = Callable[[int, bytes], Awaitable[bytes | None]]

_HEAD = struct.Struct(">BHH")  # function, address, count or value
_MULTI = struct.Struct(">BHHB")  # function, address, count, byte count


@dataclass
class FrameStats:
    """Frames through the wire clients that share it, and the time spent framing on the
    client's side (encoding requests, checking and decoding replies), in seconds."""

    requests: int = 0
    replies: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    codec_s: float = 0.0


class WireClient:
    """One line's client. `rtu`: unit + PDU + CRC frames, else MBAP (Modbus TCP)."""

    def __init__(self, answer: Answer, *, rtu: bool = False, stats: FrameStats | None = None):
        self._answer = answer
        self._rtu = rtu
        self._stats = stats
        self._transaction = 0
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
        t0 = time.perf_counter()
        pdu = _HEAD.pack(function, addr, count)
        reply = await self._exchange(unit, pdu, t0)
        t1 = time.perf_counter()
        try:
            return decode_read(function, count, reply)
        finally:
            self._spent(t1)

    async def write(self, function: int, unit: int, addr: int, values: Sequence[int]) -> int | None:
        t0 = time.perf_counter()
        pdu = encode_write(function, addr, values)
        reply = await self._exchange(unit, pdu, t0)
        t1 = time.perf_counter()
        try:
            return decode_write(pdu, reply)
        finally:
            self._spent(t1)

    async def _exchange(self, unit: int, pdu: bytes, t0: float) -> bytes:
        """Frame `pdu`, hand it to the line as the server would read it, and unframe the
        reply. Framing time counts in the stats; the unit's own work does not."""
        if not self._connected:
            raise ConnectionError("replay line not connected")
        self._transaction = (self._transaction + 1) & 0xFFFF
        tid = self._transaction
        frame = rtu_frame(unit, pdu) if self._rtu else mbap_frame(tid, unit, pdu)
        got_unit, got_pdu = _unframe(frame, self._rtu, tid)  # what the server reads
        stats = self._stats
        if stats is not None:
            stats.requests += 1
            stats.bytes_out += len(frame)
            stats.codec_s += time.perf_counter() - t0
        reply = await self._answer(got_unit, got_pdu)
        if reply is None:
            await asyncio.get_running_loop().create_future()  # silence: the bus times out
        assert reply is not None
        t1 = time.perf_counter()
        back = rtu_frame(unit, reply) if self._rtu else mbap_frame(tid, unit, reply)
        try:
            answered_unit, answer = _unframe(back, self._rtu, tid)
        finally:
            if stats is not None:
                stats.replies += 1
                stats.bytes_in += len(back)
                stats.codec_s += time.perf_counter() - t1
        if answered_unit != unit:
            raise TimeoutError(f"a reply from unit {answered_unit} to a request to unit {unit}")
        await asyncio.sleep(0)  # a request is never instantaneous to its caller
        return answer

    def _spent(self, since: float) -> None:
        if self._stats is not None:
            self._stats.codec_s += time.perf_counter() - since


# -- frames ---------------------------------------------------------------------------------
def _unframe(frame: bytes, rtu: bool, transaction: int) -> tuple[int, bytes]:
    """(unit, PDU) of one whole ADU; `TimeoutError` for one a receiver would drop."""
    if rtu:
        checked = rtu_check(frame)
        if checked is None:
            raise TimeoutError("an RTU frame with a bad CRC")
        return checked
    tid, protocol, length, unit = MBAP.unpack_from(frame)
    if tid != transaction or protocol != 0 or length != len(frame) - MBAP.size + 1:
        raise TimeoutError(f"an MBAP header that does not match: {frame[: MBAP.size].hex()}")
    return unit, frame[MBAP.size :]


def encode_write(function: int, addr: int, values: Sequence[int]) -> bytes:
    """A write request PDU (functions 05, 06, 15, 16), as pymodbus encodes it."""
    if function == WRITE_COIL:
        return _HEAD.pack(function, addr, COIL_ON if values[0] else COIL_OFF)
    if function == WRITE_SINGLE:
        return _HEAD.pack(function, addr, values[0])
    if function == WRITE_COILS:
        data = pack_bits([int(bool(v)) for v in values])
        return _MULTI.pack(function, addr, len(values), len(data)) + data
    if function == WRITE_MULTIPLE:
        head = _MULTI.pack(function, addr, len(values), 2 * len(values))
        return head + struct.pack(f">{len(values)}H", *values)
    raise ValueError(f"function {function:02d} is not a write")


def _exception_code(function: int, reply: bytes) -> int | None:
    """The code of an exception reply to `function`, None for a normal reply to it; a reply
    to another function, or an exception reply of the wrong length, is no answer."""
    if not reply:
        raise TimeoutError(f"an empty reply to function {function:02d}")
    if reply[0] == function | 0x80:
        if len(reply) != 2:
            raise TimeoutError(f"an exception reply of {len(reply)} bytes: {reply.hex()}")
        return reply[1]
    if reply[0] != function:
        raise TimeoutError(f"a reply of function {reply[0]:#04x} to a function {function:02d}")
    return None


def decode_read(function: int, count: int, reply: bytes) -> list[int] | int:
    """The values of a read reply PDU (01..04), or its exception code."""
    code = _exception_code(function, reply)
    if code is not None:
        return code
    if len(reply) < 2 or len(reply) != 2 + reply[1]:
        raise TimeoutError(f"a read reply whose byte count disagrees with it: {reply.hex()}")
    data = reply[2:]
    if function in (1, 2):
        return unpack_bits(data, min(count, 8 * len(data)))
    if len(data) % 2:
        raise TimeoutError(f"a register reply of an odd byte count: {reply.hex()}")
    return list(struct.unpack(f">{len(data) // 2}H", data))


def decode_write(request: bytes, reply: bytes) -> int | None:
    """None when `reply` echoes the write `request`, or its exception code."""
    code = _exception_code(request[0], reply)
    if code is not None:
        return code
    # 05 and 06 echo the whole request; 15 and 16 its function, address and count.
    echo = request if request[0] in (WRITE_COIL, WRITE_SINGLE) else request[:5]
    if reply != echo:
        raise TimeoutError(f"write echo {reply.hex()} does not match {echo.hex()}")
    return None


# -- factories ------------------------------------------------------------------------------
def wire_factories(
    shed: Shed, answers: Mapping[str, Answer], stats: FrameStats | None = None
) -> dict[str, ClientFactory]:
    """One factory per config bus, answered by `answers[bus id]`: for `Options`."""

    def factory(answer: Answer, rtu: bool) -> ClientFactory:
        def make() -> ModbusClient:
            return WireClient(answer, rtu=rtu, stats=stats)

        return make

    return {b.id: factory(answers[b.id], isinstance(b, RtuBus)) for b in shed.buses}


def simulator_factories(
    sim: Simulator, stats: FrameStats | None = None
) -> dict[str, ClientFactory]:
    """Client factories onto a `Simulator`'s bus servers (not started: no sockets), so its
    faults and powered units apply as on its TCP and RTU endpoints."""
    return wire_factories(sim.shed, {b: s.answer for b, s in sim.servers.items()}, stats)


# -- driving on virtual time ----------------------------------------------------------------
async def settle(max_turns: int = 100_000) -> None:
    """Let every runnable task run until all of them wait (on the virtual clock, an event, a
    thread): a tick woken by the clock finishes its requests before time moves again."""
    loop = asyncio.get_running_loop()
    ready = getattr(loop, "_ready", None)  # CPython's run queue; without it, a fixed count
    for _ in range(max_turns if ready is not None else 50):
        await asyncio.sleep(0)
        if ready is not None and not ready:
            return


async def advance(sim: Simulator, seconds: float) -> None:
    """Step `sim`'s world (and its scenario) and its `VirtualClock` together by `seconds`,
    settling after every world step."""
    clock = sim.clock
    if not isinstance(clock, VirtualClock):
        raise TypeError("advance needs a simulator on a VirtualClock")
    target = sim.world.now + seconds
    while target - sim.world.now > 1e-9:
        dt = min(sim.step_s, target - sim.world.now)
        sim.advance(dt)
        clock.advance(dt)
        await settle()
