"""A serial line without hardware: a pty pair whose client end is symlinked at a path, as
`socat pty,raw,echo=0,link=PATH ...` does. The simulator reads and writes the master side.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from pathlib import Path


class PtyLink:
    def __init__(self, link_path: str | Path) -> None:
        self.link = Path(link_path)
        if self.link.exists() and not self.link.is_symlink():
            raise FileExistsError(f"serial link path {self.link} exists and is not a symlink")
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line editing: bytes pass as they are
        os.set_blocking(master, False)
        self.master = master
        # Held open for the life of the link: when the last slave fd closes (a client
        # disconnecting), reads on the master fail with EIO until someone reopens it.
        self._slave = slave
        self.device = os.ttyname(slave)
        if self.link.is_symlink():
            self.link.unlink()
        self.link.parent.mkdir(parents=True, exist_ok=True)
        self.link.symlink_to(self.device)
        self._chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(master, self._on_readable)
        self._closed = False

    def _on_readable(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # EIO while no client holds the line: nothing to read
        if data:
            self._chunks.put_nowait(data)

    async def read(self) -> bytes:
        return await self._chunks.get()

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.master, view)
            except BlockingIOError:
                await asyncio.sleep(0.001)  # the client is not draining: wait, do not spin
                continue
            view = view[n:]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self.master)
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            if self.link.is_symlink() and os.readlink(self.link) == self.device:
                self.link.unlink()
