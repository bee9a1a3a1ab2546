"""The bus server at the byte level: MBAP and RTU framing, malformed input, several clients,
one request at a time on the line, pacing, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import tty
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from chargectl.sim.devices.pile import PileModel
from chargectl.sim.modbus_frame import rtu_frame, wire_seconds
from chargectl.sim.server import BusServer
from tests.sim_devices.conftest import ABSENT, EVSE, PILE, make_server

pytestmark = pytest.mark.timeout(30)

READ_MODEL = b"\x04\x00\x00\x00\x01"  # read input register 0 (the model)


def mbap(tid: int, unit: int, pdu: bytes, protocol: int = 0) -> bytes:
    return struct.pack(">HHHB", tid, protocol, len(pdu) + 1, unit) + pdu


async def read_mbap(reader: asyncio.StreamReader, wait_s: float = 1.0) -> tuple[int, int, bytes]:
    header = await asyncio.wait_for(reader.readexactly(7), wait_s)
    tid, protocol, length, unit = struct.unpack(">HHHB", header)
    assert protocol == 0
    pdu = await asyncio.wait_for(reader.readexactly(length - 1), wait_s)
    return tid, unit, pdu


@pytest.fixture
async def tcp() -> AsyncIterator[tuple[BusServer, int]]:
    server, *_ = make_server()
    port = await server.serve_tcp("127.0.0.1", 0)
    try:
        yield server, port
    finally:
        await server.close()


# --------------------------------------------------------------------------- TCP
async def test_transaction_ids_echo_and_pipelined_requests(tcp: tuple[BusServer, int]) -> None:
    _, port = tcp
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(mbap(0xBEEF, PILE, READ_MODEL) + mbap(0x0102, EVSE, READ_MODEL))
    assert await read_mbap(reader) == (0xBEEF, PILE, b"\x04\x02\x43\x50")
    assert await read_mbap(reader) == (0x0102, EVSE, b"\x04\x02\x45\x56")
    writer.close()


async def test_absent_unit_gets_no_answer_not_exception_04(tcp: tuple[BusServer, int]) -> None:
    _, port = tcp
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(mbap(1, ABSENT, READ_MODEL))
    with pytest.raises(TimeoutError):
        await read_mbap(reader, wait_s=0.3)
    writer.write(mbap(2, PILE, READ_MODEL))
    assert await read_mbap(reader) == (2, PILE, b"\x04\x02\x43\x50")
    writer.close()


async def test_unknown_function_answers_01(tcp: tuple[BusServer, int]) -> None:
    _, port = tcp
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(mbap(5, PILE, b"\x2b\x0e\x01\x00"))
    assert await read_mbap(reader) == (5, PILE, b"\xab\x01")
    writer.write(mbap(6, PILE, b"\x05\x00\x00\xff\x00"))  # write coil
    assert await read_mbap(reader) == (6, PILE, b"\x85\x01")
    writer.close()


async def test_non_modbus_protocol_id_is_skipped(tcp: tuple[BusServer, int]) -> None:
    server, port = tcp
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(mbap(1, PILE, READ_MODEL, protocol=7) + mbap(2, PILE, READ_MODEL))
    assert await read_mbap(reader) == (2, PILE, b"\x04\x02\x43\x50")
    assert server.dropped_frames == 1
    writer.close()


@pytest.mark.parametrize("length", [0, 1, 300])
async def test_nonsense_mbap_length_closes_only_that_connection(
    tcp: tuple[BusServer, int], length: int
) -> None:
    _, port = tcp
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(struct.pack(">HHHB", 1, 0, length, PILE) + b"\x04\x00")
    assert await asyncio.wait_for(reader.read(), 1.0) == b""  # closed by the server
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(mbap(3, PILE, READ_MODEL))
    assert await read_mbap(reader) == (3, PILE, b"\x04\x02\x43\x50")
    writer.close()


async def test_client_hanging_up_mid_frame_is_harmless(tcp: tuple[BusServer, int]) -> None:
    server, port = tcp
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(mbap(1, PILE, READ_MODEL)[:9])
    await writer.drain()
    writer.close()
    await asyncio.sleep(0.05)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(mbap(2, PILE, READ_MODEL))
    assert await read_mbap(reader) == (2, PILE, b"\x04\x02\x43\x50")
    writer.close()
    assert server.answered[PILE] == 1


async def test_several_pymodbus_clients_at_once(tcp: tuple[BusServer, int]) -> None:
    _, port = tcp
    clients = [AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0) for _ in range(4)]
    for c in clients:
        assert await c.connect()

    async def poll(c: AsyncModbusTcpClient, unit: int) -> list[int]:
        out = []
        for _ in range(20):
            rr = await c.read_input_registers(0, count=1, device_id=unit)
            out.append(rr.registers[0])
        return out

    results = await asyncio.gather(*(poll(c, (PILE, EVSE)[i % 2]) for i, c in enumerate(clients)))
    assert results == [[0x4350] * 20, [0x4556] * 20] * 2
    for c in clients:
        c.close()


async def test_one_request_at_a_time_on_the_line(tcp: tuple[BusServer, int]) -> None:
    server, port = tcp
    server.faults[PILE].delay_s = 0.3
    r1, w1 = await asyncio.open_connection("127.0.0.1", port)
    r2, w2 = await asyncio.open_connection("127.0.0.1", port)
    done: list[int] = []

    async def ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, unit: int) -> None:
        writer.write(mbap(1, unit, READ_MODEL))
        await read_mbap(reader)
        done.append(unit)

    slow = asyncio.create_task(ask(r1, w1, PILE))
    await asyncio.sleep(0.05)  # the slow request holds the line
    await ask(r2, w2, EVSE)
    await slow
    assert done == [PILE, EVSE]
    w1.close()
    w2.close()


async def test_model_failure_answers_04_and_serving_goes_on() -> None:
    class Broken(PileModel):
        def read_input(self, addr: int, count: int) -> list[int] | int:
            raise RuntimeError("model bug")

    server = BusServer({1: Broken(2), 2: PileModel(2)})
    port = await server.serve_tcp("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(mbap(1, 1, READ_MODEL) + mbap(2, 2, READ_MODEL))
    assert await read_mbap(reader) == (1, 1, b"\x84\x04")
    assert await read_mbap(reader) == (2, 2, b"\x04\x02\x43\x50")
    writer.close()
    await server.close()


# --------------------------------------------------------------------------- pacing
class RecordingClock:
    """Sleeps take no time; their lengths are recorded."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def now(self) -> float:
        return 0.0

    def wall(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


async def test_pacing_costs_both_frames_at_the_baud_rate() -> None:
    clock = RecordingClock()
    server, *_ = make_server(baudrate=9600, pace=True, clock=clock)
    assert await server.answer(PILE, b"\x04\x00\x00\x00\x0a") is not None
    # request: unit + 5 PDU bytes + CRC = 8; reply: unit + 2 + 20 + CRC = 25
    assert clock.sleeps == pytest.approx([wire_seconds(8, 9600), wire_seconds(25, 9600)])
    clock.sleeps.clear()
    assert await server.answer(ABSENT, b"\x04\x00\x00\x00\x0a") is None
    assert clock.sleeps == pytest.approx([wire_seconds(8, 9600)])  # the request still went out


async def test_pacing_in_real_time() -> None:
    server, *_ = make_server(baudrate=9600, pace=True)
    port = await server.serve_tcp("127.0.0.1", 0)
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    assert await client.connect()
    loop = asyncio.get_running_loop()
    start = loop.time()
    rr = await client.read_input_registers(0, count=80, device_id=PILE)
    elapsed = loop.time() - start
    assert not rr.isError()
    # 8 + 165 bytes on a 9600 baud line: about 0.2 s, never less
    assert elapsed >= wire_seconds(8, 9600) + wire_seconds(165, 9600)
    client.close()
    await server.close()


def test_server_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="baud"):
        BusServer({}, pace=True)
    with pytest.raises(ValueError, match="unit id"):
        BusServer({0: PileModel(1)})
    with pytest.raises(ValueError, match="unit id"):
        BusServer({248: PileModel(1)})


# --------------------------------------------------------------------------- RTU
class RawSerial:
    """The client end of the pty, opened by its link path, raw bytes in and out."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd)

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    async def receive(self, quiet_s: float = 0.3) -> bytes:
        """Everything that arrives until `quiet_s` passes with nothing new."""
        out = b""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + quiet_s
        while loop.time() < deadline:
            try:
                chunk = os.read(self.fd, 1024)
            except BlockingIOError:
                await asyncio.sleep(0.005)
                continue
            out += chunk
            deadline = loop.time() + 0.05 if out else deadline
        return out

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
async def rtu(tmp_path: Path) -> AsyncIterator[tuple[BusServer, RawSerial, Path]]:
    server, *_ = make_server()
    link = tmp_path / "ttySIM1"
    await server.serve_rtu(str(link))
    raw = RawSerial(str(link))
    try:
        yield server, raw, link
    finally:
        raw.close()
        await server.close()


async def test_rtu_reply_frame(rtu: tuple[BusServer, RawSerial, Path]) -> None:
    _, raw, _ = rtu
    raw.send(rtu_frame(PILE, READ_MODEL))
    assert await raw.receive() == rtu_frame(PILE, b"\x04\x02\x43\x50")


async def test_rtu_bad_crc_is_dropped_then_the_line_recovers(
    rtu: tuple[BusServer, RawSerial, Path],
) -> None:
    server, raw, _ = rtu
    frame = bytearray(rtu_frame(PILE, READ_MODEL))
    frame[-1] ^= 0xFF
    raw.send(bytes(frame))
    assert await raw.receive() == b""
    assert server.dropped_frames == 1
    raw.send(rtu_frame(PILE, READ_MODEL))
    assert await raw.receive() == rtu_frame(PILE, b"\x04\x02\x43\x50")


async def test_rtu_noise_then_silence_then_a_frame(rtu: tuple[BusServer, RawSerial, Path]) -> None:
    server, raw, _ = rtu
    raw.send(b"\x01\x10\x00")  # a torn frame: its header promises more bytes that never come
    assert await raw.receive() == b""
    raw.send(rtu_frame(EVSE, READ_MODEL))
    assert await raw.receive() == rtu_frame(EVSE, b"\x04\x02\x45\x56")
    assert server.dropped_frames == 1


async def test_rtu_absent_unit_and_unknown_function(rtu: tuple[BusServer, RawSerial, Path]) -> None:
    _, raw, _ = rtu
    raw.send(rtu_frame(ABSENT, READ_MODEL))
    assert await raw.receive() == b""
    raw.send(rtu_frame(PILE, b"\x2b\x0e\x01\x00"))  # length unknown: ends at the silence
    assert await raw.receive() == rtu_frame(PILE, b"\xab\x01")


async def test_rtu_write_multiple(rtu: tuple[BusServer, RawSerial, Path]) -> None:
    server, raw, _ = rtu
    raw.send(rtu_frame(PILE, b"\x10\x00\x10\x00\x02\x04\x00\x01\x00\x01"))
    assert await raw.receive() == rtu_frame(PILE, b"\x10\x00\x10\x00\x02")
    pile = server.units[PILE]
    assert isinstance(pile, PileModel)
    assert pile.contact_closed()[:3].tolist() == [True, True, False]


def link_state(link: Path) -> tuple[bool, bool]:
    """(is a symlink, points at an existing pty)"""
    return link.is_symlink(), link.is_symlink() and Path(os.readlink(link)).exists()


async def test_close_removes_the_link(tmp_path: Path) -> None:
    server, *_ = make_server()
    link = tmp_path / "dev" / "ttySIM2"
    await server.serve_rtu(str(link))
    assert link_state(link) == (True, True)
    port = await server.serve_tcp("127.0.0.1", 0)
    await server.close()
    assert link_state(link) == (False, False)
    with pytest.raises(OSError):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        with contextlib.suppress(Exception):
            writer.close()


async def test_link_path_must_not_be_a_regular_file(tmp_path: Path) -> None:
    server, *_ = make_server()
    path = tmp_path / "taken"
    path.write_text("not a tty")
    with pytest.raises(FileExistsError, match="taken"):
        await server.serve_rtu(str(path))
    await server.close()
