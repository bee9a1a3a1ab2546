"""Serving one bus of simulated devices: Modbus TCP (an RS485-to-TCP gateway, the devices
as unit ids) or RTU on a pty, with the line's pacing and the protocol faults of each unit.

What a real RS485 line does, the server does: an absent or unpowered unit never answers (no
exception 04), one request at a time on the line, a garbled frame is dropped. Function codes
03, 04, 06 and 16, and 01, 02, 05 and 15 for a device whose template has coils or discrete
inputs; any other answers exception 01.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeAlias

from chargectl.runtime.clock import Clock, RealClock
from chargectl.sim.devices.evse import EvseModel
from chargectl.sim.devices.meter import MeterModel
from chargectl.sim.devices.pile import PileModel
from chargectl.sim.devices.registers import DEVICE_FAILURE
from chargectl.sim.modbus_frame import (
    COIL_ON,
    MAX_PDU,
    MBAP,
    WRITE_COIL,
    WRITE_COILS,
    WRITE_MULTIPLE,
    WRITE_SINGLE,
    exception_pdu,
    handle_pdu,
    mbap_frame,
    rtu_check,
    rtu_frame,
    rtu_request_length,
    unpack_bits,
    wire_seconds,
)
from chargectl.sim.modbus_pty import PtyLink

log = logging.getLogger(__name__)

Model: TypeAlias = PileModel | EvseModel | MeterModel

# An RTU frame whose length the function code does not tell ends at a silence this long. The
# pty delivers a client's frame in one read, so this only delays answering unknown functions.
RTU_SILENCE_S = 0.02
RTU_OVERHEAD = 3  # unit id + CRC around the PDU on the wire


GARBAGE_TABLES = ("input", "holding", "coil", "discrete")
WRITE_TABLES = ("holding", "coil")


@dataclass
class UnitFaults:
    """Protocol-level faults of one unit, settable live (read at every request)."""

    silent: bool = False  # no answer at all (device gone / unpowered)
    delay_s: float = 0.0  # answer late
    exception: int | None = None  # answer every request with this exception code
    garbage: dict[int, int] = field(default_factory=dict)  # input addr -> raw value served
    # The same for the other tables: "holding", "coil", "discrete" -> {addr: raw value}.
    garbage_by_table: dict[str, dict[int, int]] = field(default_factory=dict)
    # Holding ranges (addr, count): a write (06/16) touching one answers exception 04 and
    # changes nothing; reads still work (a device whose flash or relay driver fails).
    refuse_writes: list[tuple[int, int]] = field(default_factory=list)
    refuse_coil_writes: list[tuple[int, int]] = field(default_factory=list)  # the same, 05/15

    def garbage_of(self, table: str) -> dict[int, int]:
        """The live garbage mapping of a table (created empty on first use)."""
        if table not in GARBAGE_TABLES:
            raise ValueError(f"table must be one of {', '.join(GARBAGE_TABLES)}, got {table!r}")
        if table == "input":
            return self.garbage
        return self.garbage_by_table.setdefault(table, {})

    def refused_ranges(self, table: str) -> list[tuple[int, int]]:
        if table not in WRITE_TABLES:
            raise ValueError(f"table must be one of {', '.join(WRITE_TABLES)}, got {table!r}")
        return self.refuse_writes if table == "holding" else self.refuse_coil_writes

    def refuses(self, pdu: bytes) -> bool:
        """True if `pdu` is a write that touches a refused range of its table."""
        if len(pdu) < 5 or pdu[0] not in (WRITE_SINGLE, WRITE_MULTIPLE, WRITE_COIL, WRITE_COILS):
            return False
        ranges = (
            self.refuse_writes
            if pdu[0] in (WRITE_SINGLE, WRITE_MULTIPLE)
            else (self.refuse_coil_writes)
        )
        if not ranges:
            return False
        addr, n = struct.unpack_from(">HH", pdu, 1)
        count = 1 if pdu[0] in (WRITE_SINGLE, WRITE_COIL) else n
        return any(a < addr + count and addr < a + c for a, c in ranges)


def _always_powered(unit: int) -> bool:
    return True


class BusServer:
    def __init__(
        self,
        units: dict[int, Model],
        *,
        baudrate: int | None = None,
        pace: bool = False,
        clock: Clock | None = None,
    ) -> None:
        if pace and not baudrate:
            raise ValueError("bus pacing needs a baud rate")
        if baudrate is not None and baudrate <= 0:
            raise ValueError(f"bus baud rate must be > 0, got {baudrate}")
        for unit in units:
            if not 1 <= unit <= 247:
                raise ValueError(f"Modbus unit id must be 1..247, got {unit}")
        self.units = units
        self.baudrate = baudrate
        self.pace = pace
        self.faults: dict[int, UnitFaults] = {unit: UnitFaults() for unit in units}
        self.powered: Callable[[int], bool] = _always_powered
        self.requests: Counter[int] = Counter()  # per unit id, answered or not
        self.answered: Counter[int] = Counter()
        self.dropped_frames = 0  # garbled RTU frames, malformed MBAP headers
        self._clock: Clock = clock or RealClock()
        self._line = asyncio.Lock()  # one request at a time on the line
        self._servers: list[asyncio.Server] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._links: list[PtyLink] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._handlers: set[asyncio.Task[object]] = set()  # one per TCP connection

    # ------------------------------------------------------------------ one request
    async def answer(self, unit: int, pdu: bytes) -> bytes | None:
        """The reply PDU to `pdu` addressed to `unit`, or None: no answer on the line."""
        async with self._line:
            self.requests[unit] += 1
            if self.pace and self.baudrate:
                await self._clock.sleep(wire_seconds(len(pdu) + RTU_OVERHEAD, self.baudrate))
            model = self.units.get(unit)
            if model is None or not self.powered(unit):
                return None
            faults = self.faults.get(unit) or UnitFaults()
            if faults.silent:
                return None
            if faults.delay_s > 0:
                await self._clock.sleep(faults.delay_s)
            if faults.exception is not None:
                reply = exception_pdu(pdu[0], faults.exception)
            elif faults.refuses(pdu):
                reply = exception_pdu(pdu[0], DEVICE_FAILURE)
                _log_refused(model, pdu)
            else:
                try:
                    reply = handle_pdu(model, pdu, faults.garbage, faults.garbage_by_table)
                except Exception:  # a model bug: answer as a failing device, keep serving
                    log.exception("unit %d failed on request %s", unit, pdu.hex())
                    reply = exception_pdu(pdu[0], DEVICE_FAILURE)
            if self.pace and self.baudrate:
                await self._clock.sleep(wire_seconds(len(reply) + RTU_OVERHEAD, self.baudrate))
            self.answered[unit] += 1
            return reply

    # ------------------------------------------------------------------ TCP
    async def serve_tcp(self, host: str, port: int) -> int:
        """Listen on host:port (0: any free port); returns the bound port."""
        server = await asyncio.start_server(self._tcp_client, host, port)
        self._servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            while True:
                header = await reader.readexactly(MBAP.size)
                transaction, protocol, length, unit = MBAP.unpack(header)
                if not 2 <= length <= MAX_PDU + 1:
                    # The stream cannot be re-synchronised after a nonsense length: close.
                    self.dropped_frames += 1
                    log.warning("MBAP length %d from %s: closing", length, _peer(writer))
                    return
                pdu = await reader.readexactly(length - 1)
                if protocol != 0:
                    self.dropped_frames += 1  # not Modbus: skip the frame, keep the stream
                    continue
                reply = await self.answer(unit, pdu)
                if reply is not None:
                    writer.write(mbap_frame(transaction, unit, reply))
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return  # the client went away
        finally:
            self._writers.discard(writer)
            if task is not None:
                self._handlers.discard(task)
            writer.close()

    # ------------------------------------------------------------------ RTU
    async def serve_rtu(self, link_path: str) -> None:
        """Serve RTU on a new pty pair whose client end is symlinked at `link_path`."""
        link = PtyLink(link_path)
        self._links.append(link)
        task = asyncio.create_task(self._rtu_loop(link), name=f"rtu:{link_path}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _rtu_loop(self, link: PtyLink) -> None:
        buf = bytearray()
        while True:
            if buf:
                try:
                    chunk = await asyncio.wait_for(link.read(), RTU_SILENCE_S)
                except TimeoutError:
                    # Silence: the frame ends here, whatever length its header promised.
                    frame = bytes(buf)
                    buf.clear()
                    await self._rtu_frame(link, frame)
                    continue
            else:
                chunk = await link.read()
            buf += chunk
            while True:
                n = rtu_request_length(bytes(buf[:7]))
                if not n or len(buf) < n:
                    break  # need more bytes, or wait for the silence
                frame = bytes(buf[:n])
                del buf[:n]
                if rtu_check(frame) is None:
                    # A garbled frame poisons what follows it: drop everything buffered.
                    self.dropped_frames += 1
                    buf.clear()
                    break
                await self._rtu_frame(link, frame)

    async def _rtu_frame(self, link: PtyLink, frame: bytes) -> None:
        checked = rtu_check(frame)
        if checked is None:
            self.dropped_frames += 1
            return
        unit, pdu = checked
        if not pdu:
            self.dropped_frames += 1
            return
        reply = await self.answer(unit, pdu)
        if reply is not None:
            await link.write(rtu_frame(unit, reply))

    # ------------------------------------------------------------------ shutdown
    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for writer in list(self._writers):
            writer.close()
        # Closing a connection ends its handler (end of stream). Let them end rather than
        # cancel them: Python 3.11's stream callback logs a cancelled handler as an error.
        if self._handlers:
            _, stuck = await asyncio.wait(list(self._handlers), timeout=1.0)
            for task in stuck:
                task.cancel()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers.clear()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for link in self._links:
            link.close()
        self._links.clear()


def _log_refused(model: Model, pdu: bytes) -> None:
    """A refused write still shows in the device's write log, with its answer (04)."""
    writes = getattr(model, "writes", None)
    if writes is None:
        return
    addr, n = struct.unpack_from(">HH", pdu, 1)
    table = "holding"
    if pdu[0] == WRITE_SINGLE:
        values = [n]
    elif pdu[0] == WRITE_MULTIPLE:
        values = list(struct.unpack_from(f">{len(pdu[6:]) // 2}H", pdu, 6))
    elif pdu[0] == WRITE_COIL:
        values, table = [int(n == COIL_ON)], "coil"
    else:
        values, table = unpack_bits(pdu[6:], min(n, 8 * len(pdu[6:]))), "coil"
    writes.add(getattr(model, "_now", 0.0), addr, values, DEVICE_FAILURE, table)


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if peer else "?"
