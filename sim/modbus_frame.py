"""Modbus framing for the simulator: request PDUs to replies, MBAP and RTU frames, CRC16,
and the wire time of a frame on a serial line. Pure: bytes in, bytes out.

Our own small framing rather than pymodbus's server: pymodbus answers exception 04 for a unit
it does not have, where a real RS485 line stays silent.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Protocol

from chargectl.sim.devices.registers import (
    DEVICE_FAILURE,
    ILLEGAL_FUNCTION,
    ILLEGAL_VALUE,
    MAX_READ,
    MAX_WRITE,
)

READ_COILS = 0x01
READ_DISCRETE = 0x02
READ_HOLDING = 0x03
READ_INPUT = 0x04
WRITE_COIL = 0x05
WRITE_SINGLE = 0x06
WRITE_COILS = 0x0F
WRITE_MULTIPLE = 0x10

MAX_BITS_READ = 2000  # coils or discrete inputs per read (01/02)
MAX_BITS_WRITE = 1968  # coils per write (15)
COIL_ON, COIL_OFF = 0xFF00, 0x0000  # the only values a single-coil write (05) may carry

MBAP = struct.Struct(">HHHB")  # transaction id, protocol id (0), length (unit + PDU), unit
MAX_PDU = 253


class RegisterDevice(Protocol):
    def read_input(self, addr: int, count: int) -> list[int] | int: ...
    def read_holding(self, addr: int, count: int) -> list[int] | int: ...
    def write_holding(self, addr: int, values: list[int]) -> int | None: ...


class CoilDevice(Protocol):
    """What a device with coils or discrete inputs adds (a device without them answers 01)."""

    def read_coils(self, addr: int, count: int) -> list[int] | int: ...
    def read_discrete(self, addr: int, count: int) -> list[int] | int: ...
    def write_coils(self, addr: int, values: list[int]) -> int | None: ...


def exception_pdu(function: int, code: int) -> bytes:
    return bytes([(function | 0x80) & 0xFF, code & 0xFF])


def pack_bits(bits: list[int]) -> bytes:
    """Coil or discrete values as the wire carries them: 8 a byte, the first in bit 0."""
    out = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        if bit:
            out[i // 8] |= 1 << (i % 8)
    return bytes(out)


def unpack_bits(data: bytes, count: int) -> list[int]:
    return [(data[i // 8] >> (i % 8)) & 1 for i in range(count)]


def handle_pdu(
    device: RegisterDevice,
    pdu: bytes,
    garbage: Mapping[int, int] | None = None,
    garbage_by_table: Mapping[str, Mapping[int, int]] | None = None,
) -> bytes:
    """The reply PDU to a request PDU. `garbage` replaces input-register values by address
    (a device serving a corrupt reading), `garbage_by_table` those of the holding, coil and
    discrete tables. A PDU whose length does not match its function answers 03; an unknown
    function, or a coil function to a device without coils, 01."""
    if not pdu:
        raise ValueError("empty Modbus PDU")
    fc = pdu[0]
    if fc in (READ_HOLDING, READ_INPUT):
        if len(pdu) != 5:
            return exception_pdu(fc, ILLEGAL_VALUE)
        addr, count = struct.unpack_from(">HH", pdu, 1)
        if not 1 <= count <= MAX_READ:
            return exception_pdu(fc, ILLEGAL_VALUE)
        read = device.read_input if fc == READ_INPUT else device.read_holding
        result = read(addr, count)
        if isinstance(result, int):
            return exception_pdu(fc, result)
        if len(result) != count:  # a model bug must show, not become a short reply
            return exception_pdu(fc, DEVICE_FAILURE)
        bad = garbage if fc == READ_INPUT else (garbage_by_table or {}).get("holding")
        if bad:
            result = [bad.get(addr + i, v) & 0xFFFF for i, v in enumerate(result)]
        return bytes([fc, 2 * count]) + struct.pack(f">{count}H", *result)
    if fc == WRITE_SINGLE:
        if len(pdu) != 5:
            return exception_pdu(fc, ILLEGAL_VALUE)
        addr, value = struct.unpack_from(">HH", pdu, 1)
        error = device.write_holding(addr, [value])
        return pdu if error is None else exception_pdu(fc, error)
    if fc == WRITE_MULTIPLE:
        if len(pdu) < 6:
            return exception_pdu(fc, ILLEGAL_VALUE)
        addr, count, nbytes = struct.unpack_from(">HHB", pdu, 1)
        if not 1 <= count <= MAX_WRITE or nbytes != 2 * count or len(pdu) != 6 + nbytes:
            return exception_pdu(fc, ILLEGAL_VALUE)
        values = list(struct.unpack_from(f">{count}H", pdu, 6))
        error = device.write_holding(addr, values)
        return pdu[:5] if error is None else exception_pdu(fc, error)
    if fc in (READ_COILS, READ_DISCRETE, WRITE_COIL, WRITE_COILS):
        return _coil_pdu(device, pdu, garbage_by_table or {})
    return exception_pdu(fc, ILLEGAL_FUNCTION)


def _coil_pdu(device: object, pdu: bytes, garbage: Mapping[str, Mapping[int, int]]) -> bytes:
    """Functions 01, 02, 05 and 15 (Modbus application protocol 6.1, 6.2, 6.5, 6.11)."""
    fc = pdu[0]
    name = {
        READ_COILS: "read_coils",
        READ_DISCRETE: "read_discrete",
        WRITE_COIL: "write_coils",
        WRITE_COILS: "write_coils",
    }[fc]
    serve = getattr(device, name, None)
    if serve is None:
        return exception_pdu(fc, ILLEGAL_FUNCTION)
    if fc in (READ_COILS, READ_DISCRETE):
        if len(pdu) != 5:
            return exception_pdu(fc, ILLEGAL_VALUE)
        addr, count = struct.unpack_from(">HH", pdu, 1)
        if not 1 <= count <= MAX_BITS_READ:
            return exception_pdu(fc, ILLEGAL_VALUE)
        result = serve(addr, count)
        if isinstance(result, int):
            return exception_pdu(fc, result)
        if len(result) != count:
            return exception_pdu(fc, DEVICE_FAILURE)
        bad = garbage.get("coil" if fc == READ_COILS else "discrete")
        if bad:
            result = [bad.get(addr + i, v) for i, v in enumerate(result)]
        data = pack_bits([int(v) & 1 for v in result])
        return bytes([fc, len(data)]) + data
    if fc == WRITE_COIL:
        if len(pdu) != 5:
            return exception_pdu(fc, ILLEGAL_VALUE)
        addr, value = struct.unpack_from(">HH", pdu, 1)
        if value not in (COIL_ON, COIL_OFF):
            return exception_pdu(fc, ILLEGAL_VALUE)
        error = serve(addr, [int(value == COIL_ON)])
        return pdu if error is None else exception_pdu(fc, error)
    if len(pdu) < 6:
        return exception_pdu(fc, ILLEGAL_VALUE)
    addr, count, nbytes = struct.unpack_from(">HHB", pdu, 1)
    if not 1 <= count <= MAX_BITS_WRITE or nbytes != (count + 7) // 8 or len(pdu) != 6 + nbytes:
        return exception_pdu(fc, ILLEGAL_VALUE)
    error = serve(addr, unpack_bits(pdu[6:], count))
    return pdu[:5] if error is None else exception_pdu(fc, error)


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """Modbus RTU CRC-16 (polynomial 0xA001 reflected, initial 0xFFFF)."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


def rtu_frame(unit: int, pdu: bytes) -> bytes:
    """unit + PDU + CRC, the CRC low byte first."""
    body = bytes([unit]) + pdu
    return body + crc16(body).to_bytes(2, "little")


def rtu_check(frame: bytes) -> tuple[int, bytes] | None:
    """(unit, PDU) of a whole RTU frame, or None if it is too short or its CRC is wrong."""
    if len(frame) < 4 or crc16(frame[:-2]) != int.from_bytes(frame[-2:], "little"):
        return None
    return frame[0], frame[1:-2]


def rtu_request_length(buf: bytes) -> int | None:
    """How long the RTU request at the start of `buf` is: None while too few bytes arrived
    to tell, 0 for a function whose length we cannot know (delimited by silence instead)."""
    if len(buf) < 2:
        return None
    fc = buf[1]
    if fc in (READ_COILS, READ_DISCRETE, READ_HOLDING, READ_INPUT, WRITE_COIL, WRITE_SINGLE):
        return 8
    if fc in (WRITE_MULTIPLE, WRITE_COILS):
        return None if len(buf) < 7 else 9 + buf[6]
    return 0


def mbap_frame(transaction: int, unit: int, pdu: bytes) -> bytes:
    return MBAP.pack(transaction, 0, len(pdu) + 1, unit) + pdu


def char_seconds(baudrate: int) -> float:
    """One character on an 8N1 line: start, 8 data, parity-or-stop, stop = 11 bits."""
    return 11.0 / baudrate


def gap_seconds(baudrate: int) -> float:
    """The silent interval that ends a frame: 3.5 characters, fixed 1.75 ms above 19200."""
    return 3.5 * char_seconds(baudrate) if baudrate <= 19200 else 0.00175


def wire_seconds(nbytes: int, baudrate: int) -> float:
    """A frame of `nbytes` on the wire, with the gap that ends it."""
    return nbytes * char_seconds(baudrate) + gap_seconds(baudrate)
