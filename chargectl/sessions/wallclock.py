"""Is the wall clock synchronized? The kernel knows: an NTP client (systemd-timesyncd, chrony,
ntpd) clears STA_UNSYNC once it has set the clock, and `adjtimex` answers TIME_ERROR until then.

`adjtimex` with no mode bits only reads; under systemd's `ProtectClock=yes` it is refused all
the same (the filter cannot tell a read from a write), so a refused call falls back to the file
systemd-timesyncd touches once it has synchronized. With neither, the answer is None: unknown
(the unit orders the daemon after `time-sync.target`, so the caller may take it as synced).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

TIME_ERROR = 5  # adjtimex's answer while the clock is not synchronized
STA_UNSYNC = 0x0040
TIMESYNCD_FLAG = "/run/systemd/timesync/synchronized"


class _Timex(ctypes.Structure):
    # struct timex (linux/timex.h) up to `status`, then room for the rest: adjtimex writes the
    # whole struct (208 bytes on 64-bit Linux, less on 32-bit).
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("_rest", ctypes.c_byte * 256),
    ]


def _adjtimex() -> tuple[int, int] | None:
    """(return value, status) of a read-only adjtimex, or None where it cannot be asked."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        fn = libc.adjtimex
    except (OSError, AttributeError, TypeError):
        return None
    tx = _Timex()
    rc = int(fn(ctypes.byref(tx)))
    if rc < 0:
        return None
    return rc, int(tx.status)


def system_clock_synced(flag_file: str = TIMESYNCD_FLAG) -> bool | None:
    """True when the kernel (or systemd-timesyncd) says the wall clock is synchronized, False
    when the kernel says it is not, None when neither can be asked."""
    answer = _adjtimex()
    if answer is not None:
        rc, status = answer
        return rc != TIME_ERROR and not status & STA_UNSYNC
    return True if os.path.exists(flag_file) else None
