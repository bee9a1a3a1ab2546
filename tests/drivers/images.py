"""Register images built straight from ../shared/hardware/*.md (not from the decoders), with
keyword overrides to break one thing at a time."""

from __future__ import annotations

from collections.abc import Sequence

from tests.drivers.fakes import f32_words


def uid_words(uid: bytes) -> list[int]:
    raw = uid.rjust(8, b"\0")
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, 8, 2)]


def pile_hot(
    ports: int = 4,
    *,
    currents_ma: Sequence[int] | None = None,
    states: Sequence[int] | None = None,
    **regs: int,
) -> list[int]:
    """The 80-register hot block. `regs` overrides by name: model, version, port_count,
    status, temp, voltage, tap_seq, tap_info, watchdog, pile_current."""
    image = [0] * 80
    names = {
        "model": 0, "version": 1, "port_count": 2, "status": 3, "temp": 4, "voltage": 5,
        "tap_seq": 6, "tap_info": 7, "watchdog": 12, "pile_current": 13,
    }  # fmt: skip
    image[0], image[1], image[2] = 0x4350, 1, ports
    image[4], image[5] = 253, 2201  # 25.3 C, 220.1 V
    ma = list(currents_ma) if currents_ma is not None else [1000 * (p + 1) for p in range(ports)]
    image[16 : 16 + len(ma)] = ma
    image[13] = sum(ma) // 10
    st = list(states) if states is not None else [0b11 if m else 0 for m in ma]
    image[48 : 48 + len(st)] = st
    for name, value in regs.items():
        image[names[name]] = value
    return image


def with_tap(image: list[int], seq: int, port: int, uid: bytes) -> list[int]:
    image = list(image)
    image[6], image[7] = seq, (len(uid) << 8) | port
    image[8:12] = uid_words(uid)
    return image


def evse_hot(**regs: int) -> list[int]:
    """The 21-register hot block of a 3-phase 16 A box charging at about 10 A."""
    image = [0] * 21
    image[0], image[1], image[2] = 0x4556, 1, 3  # charging (C)
    image[4:7] = [1000, 1010, 990]  # 10.00 A ...
    image[7:9] = [0, 6600]  # 6600 W
    image[9:11] = [1, 0x2345]  # 65536 + 0x2345 Wh
    image[11], image[12], image[13] = 312, 3, 160  # 31.2 C, 3 phases, 16.0 A
    names = {"model": 0, "version": 1, "cp_state": 2, "status": 3, "l1": 4, "l2": 5, "l3": 6,
             "power_hi": 7, "power_lo": 8, "energy_hi": 9, "energy_lo": 10, "temp": 11,
             "phases": 12, "hw_max": 13, "tap_seq": 14, "tap_info": 15, "watchdog": 20}  # fmt: skip
    for name, value in regs.items():
        image[names[name]] = value
    return image


def sdm_image(
    volts: Sequence[float],
    amps: Sequence[float],
    watts: Sequence[float],
    *,
    hz: float = 50.0,
    kwh: float = 1234.5,
    total: float | None = None,
) -> dict[int, int]:
    """Input registers of an SDM630 (3 channels) or SDM120 (1), float32 high word first."""
    image: dict[int, int] = {}

    def put(addr: int, value: float) -> None:
        image[addr], image[addr + 1] = f32_words(value)

    for ch in range(len(volts)):
        put(0 + 2 * ch, volts[ch])
        put(6 + 2 * ch, amps[ch])
        put(12 + 2 * ch, watts[ch])
    if len(volts) == 3:
        put(52, sum(watts) if total is None else total)
    put(70, hz)
    put(72, kwh)
    return image
