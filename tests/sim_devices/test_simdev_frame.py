"""Modbus framing, pure: PDUs, CRC, RTU frame lengths, wire time."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.framer.rtu import FramerRTU

from chargectl.sim.devices.pile import PileModel
from chargectl.sim.modbus_frame import (
    crc16,
    handle_pdu,
    mbap_frame,
    rtu_check,
    rtu_frame,
    rtu_request_length,
    wire_seconds,
)


def test_crc_of_the_specification_example() -> None:
    # Modbus over serial line, appendix B: the frame 02 07 carries CRC bytes 41 12.
    assert rtu_frame(2, b"\x07")[-2:] == b"\x41\x12"


@given(st.binary(min_size=1, max_size=256))
def test_crc_matches_pymodbus(data: bytes) -> None:
    assert crc16(data).to_bytes(2, "little") == FramerRTU.compute_CRC(data).to_bytes(2, "big")


def test_rtu_check_round_trip_and_corruption() -> None:
    frame = rtu_frame(7, b"\x04\x00\x00\x00\x0a")
    assert rtu_check(frame) == (7, b"\x04\x00\x00\x00\x0a")
    bad = bytes([frame[0], frame[1] ^ 1, *frame[2:]])
    assert rtu_check(bad) is None
    assert rtu_check(frame[:3]) is None


def test_rtu_request_length() -> None:
    assert rtu_request_length(b"\x01") is None
    for fc in (3, 4, 6):
        assert rtu_request_length(bytes([1, fc])) == 8
    assert rtu_request_length(b"\x01\x10\x00\x10\x00\x02") is None
    assert rtu_request_length(b"\x01\x10\x00\x10\x00\x02\x04") == 13
    assert rtu_request_length(b"\x01\x2b") == 0  # unknown: ends at silence


def test_wire_seconds() -> None:
    # 8 bytes at 9600 baud, 11 bits a character, plus the 3.5-character gap
    assert wire_seconds(8, 9600) == pytest.approx((8 + 3.5) * 11 / 9600)
    assert wire_seconds(8, 115200) == pytest.approx(8 * 11 / 115200 + 0.00175)


def test_mbap_frame() -> None:
    assert mbap_frame(0xBEEF, 3, b"\x04\x02\x00\x01") == bytes.fromhex("beef00000005030402 0001")


@pytest.fixture
def pile() -> PileModel:
    return PileModel(4)


def test_read_reply(pile: PileModel) -> None:
    assert handle_pdu(pile, b"\x04\x00\x00\x00\x03") == b"\x04\x06\x43\x50\x00\x01\x00\x04"
    assert handle_pdu(pile, b"\x03\x00\x04\x00\x01") == b"\x03\x02\x07\xd0"  # 2000 W


def test_write_replies(pile: PileModel) -> None:
    assert handle_pdu(pile, b"\x06\x00\x10\x00\x01") == b"\x06\x00\x10\x00\x01"  # echo
    req = b"\x10\x00\x11\x00\x02\x04\x00\x01\x00\x01"
    assert handle_pdu(pile, req) == b"\x10\x00\x11\x00\x02"
    assert pile.contact_closed().tolist() == [True, True, True, False]


@pytest.mark.parametrize(
    ("pdu", "reply"),
    [
        (b"\x04\x00\x00\x00", b"\x84\x03"),  # short read
        (b"\x04\x00\x00\x00\x00", b"\x84\x03"),  # count 0
        (b"\x03\x00\x00\x00\x7e", b"\x83\x03"),  # count 126
        (b"\x06\x00\x10\x00", b"\x86\x03"),
        (b"\x10\x00\x10\x00\x02\x02\x00\x01", b"\x90\x03"),  # byte count mismatch
        (b"\x10\x00\x10\x00\x01\x02\x00\x01\x00", b"\x90\x03"),  # trailing byte
        (b"\x10\x00", b"\x90\x03"),
        (b"\x01\x00\x00\x00\x01", b"\x81\x01"),  # read coils: not served
        (b"\x2b\x0e\x01\x00", b"\xab\x01"),
        (b"\x04\x00\x50\x00\x01", b"\x84\x02"),
    ],
)
def test_malformed_and_unknown_requests(pile: PileModel, pdu: bytes, reply: bytes) -> None:
    assert handle_pdu(pile, pdu) == reply
    assert not pile.contact_closed().any()


def test_garbage_replaces_input_values_only(pile: PileModel) -> None:
    reply = handle_pdu(pile, b"\x04\x00\x00\x00\x03", {1: 0x1234, 500: 1})
    assert struct.unpack(">3H", reply[2:]) == (0x4350, 0x1234, 4)
    reply = handle_pdu(pile, b"\x03\x00\x00\x00\x02", {1: 0x1234})
    assert struct.unpack(">2H", reply[2:]) == (0, 0)


def test_empty_pdu_is_refused(pile: PileModel) -> None:
    with pytest.raises(ValueError, match="empty"):
        handle_pdu(pile, b"")
