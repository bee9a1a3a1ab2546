"""What every simulated device shares: the Modbus exception codes, the watchdog, the card-tap
latch and the log of writes received. Register methods answer `list[int]` (the values) or an
`int` (a Modbus exception code), the same shape the server turns into a reply; how a value
becomes registers is its template's (`image.py`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

ILLEGAL_FUNCTION = 1
ILLEGAL_ADDRESS = 2
ILLEGAL_VALUE = 3
DEVICE_FAILURE = 4

MAX_READ = 125  # registers per read (Modbus application protocol, 03/04)
MAX_WRITE = 123  # registers per write (16)

U32_WRAP = 1 << 32

# Time and energy are sums of many 0.1 s steps and drift by far less than this; without it a
# 5 s watchdog fires one step late (50 x 0.1 = 4.9999...) and 1 h at 100 W reads 99 Wh.
TIME_EPS = 1e-6
ENERGY_EPS_WH = 1e-6


def wh_counter(wh: float) -> int:
    """An energy counter register value: whole Wh, wrapping at 2^32."""
    return math.floor(wh + ENERGY_EPS_WH) % U32_WRAP


def u16(value: float) -> int:
    """An unsigned 16-bit register, saturating at 0 and 65535 (a reading never wraps)."""
    return max(0, min(0xFFFF, round(value)))


@dataclass(frozen=True, slots=True)
class WriteRecord:
    """One write as the device received it, and what it answered (None: accepted)."""

    t: float
    addr: int
    values: tuple[int, ...]
    error: int | None
    table: str = "holding"  # or "coil"

    def as_dict(self) -> dict[str, object]:
        return {
            "t": self.t,
            "table": self.table,
            "addr": self.addr,
            "values": list(self.values),
            "error": self.error,
        }


class WriteLog:
    """The latest writes received (bounded: a long run must not grow memory)."""

    def __init__(self, size: int = 1000) -> None:
        if size < 1:
            raise ValueError(f"write log size must be >= 1, got {size}")
        self._records: deque[WriteRecord] = deque(maxlen=size)
        self.total = 0  # every write ever received, including those that fell out of the log

    def add(
        self,
        t: float,
        addr: int,
        values: Sequence[int],
        error: int | None,
        table: str = "holding",
    ) -> None:
        self._records.append(WriteRecord(t, addr, tuple(int(v) for v in values), error, table))
        self.total += 1

    def records(self) -> list[WriteRecord]:
        return list(self._records)


class Watchdog:
    """The device's heartbeat watchdog, on the device's own notion of time (`now` from step).

    Enabled when `timeout_s > 0`. Expiry sets `failsafe`; only a heartbeat clears it. Setting a
    new timeout restarts the countdown from that moment (it does not end failsafe)."""

    def __init__(self) -> None:
        self.timeout_s = 0
        self.failsafe = False
        self._last = 0.0

    def set_timeout(self, now: float, timeout_s: int) -> None:
        self.timeout_s = timeout_s
        self._last = now

    def heartbeat(self, now: float) -> None:
        self.failsafe = False
        self._last = now

    def expired(self, now: float) -> bool:
        """True exactly once: on the step at which the device enters failsafe."""
        due = self._last + self.timeout_s - TIME_EPS
        if self.timeout_s > 0 and not self.failsafe and now >= due:
            self.failsafe = True
            return True
        return False

    def remaining(self, now: float) -> int:
        """Whole seconds left (rounded up): 0 while disabled or in failsafe."""
        if self.timeout_s <= 0 or self.failsafe:
            return 0
        return u16(math.ceil(max(0.0, self._last + self.timeout_s - now - TIME_EPS)))


VALID_UID_LENGTHS = (4, 7, 8)


class TapLatch:
    """The latest card tap: seq (wrapping 65535 -> 1, 0 = none yet), UID length, where."""

    def __init__(self) -> None:
        self.seq = 0
        self.length = 0
        self.where = 0
        self.uid = b""

    def tap(self, uid: bytes, where: int) -> None:
        if len(uid) not in VALID_UID_LENGTHS:
            raise ValueError(f"card UID must be 4, 7 or 8 bytes, got {len(uid)}: {uid.hex()}")
        self.seq = self.seq % 0xFFFF + 1
        self.length = len(uid)
        self.where = where
        self.uid = bytes(uid)

    def words(self) -> list[int]:
        """tap_seq, tap_info, tap_uid[4]: the UID right-aligned in 8 bytes, big-endian."""
        padded = self.uid.rjust(8, b"\x00")
        uid_words = [int.from_bytes(padded[i : i + 2], "big") for i in range(0, 8, 2)]
        return [self.seq, (self.length << 8) | self.where, *uid_words]
