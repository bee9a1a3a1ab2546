"""systemd's notify protocol (READY=1, WATCHDOG=1, STOPPING=1, STATUS=...), stdlib only.

Does nothing when the daemon is not started by systemd (no NOTIFY_SOCKET), so the same code
runs under systemd, in the demo and in tests.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self._address: str | bytes | None = None
        if address:
            # An abstract socket is written with a leading '@'.
            self._address = b"\0" + address[1:].encode() if address.startswith("@") else address
        usec = os.environ.get("WATCHDOG_USEC")
        self.watchdog_s: float | None = int(usec) / 1e6 if usec and usec.isdigit() else None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *fields: str) -> None:
        if self._address is None:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(self._address)
            s.sendall("\n".join(fields).encode())

    def ready(self, status: str = "") -> None:
        self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def stopping(self) -> None:
        self.notify("STOPPING=1")
