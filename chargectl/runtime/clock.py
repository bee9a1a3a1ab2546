"""Clocks: one is injected everywhere time matters.

`now()` is monotonic seconds (for intervals, timeouts, physics); `wall()` is Unix time (for
records people read: session start and end, tap times). Control maths never reads a clock:
it is handed `now`.

`RealClock` is the edge box. `VirtualClock` is for replays and tests: time only moves when
`advance()` (or `run_until`) is called, and `sleep()` wakes exactly when virtual time reaches
its deadline, so an asyncio program runs unchanged, as fast as the CPU allows.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...
    def wall(self) -> float: ...
    async def sleep(self, seconds: float) -> None: ...
    def clock_synced(self) -> bool | None: ...  # is wall() synchronized? None: cannot tell


class RealClock:
    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def clock_synced(self) -> bool | None:
        from chargectl.sessions.wallclock import system_clock_synced

        return system_clock_synced()


class VirtualClock:
    """Time moves only when told. `wall()` is `epoch + now()`."""

    def __init__(self, start: float = 0.0, epoch: float = 1_767_225_600.0) -> None:
        self.synced: bool | None = True  # what clock_synced() says; tests set it
        self._now = start
        self._epoch = epoch
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def clock_synced(self) -> bool | None:
        return self.synced

    def wall(self) -> float:
        return self._epoch + self._now

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + max(0.0, seconds), next(self._seq), fut))
        await fut

    def advance(self, seconds: float) -> None:
        """Move time forward, waking (in deadline order) every sleeper that is due."""
        target = self._now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            if not fut.done():
                fut.set_result(None)
        self._now = target

    async def run_until(self, t: float, step: float) -> None:
        """Advance to `t` in steps of `step`, letting woken tasks run between steps."""
        while self._now < t:
            self.advance(min(step, t - self._now))
            # Several loop turns so a woken task can finish its work and sleep again.
            for _ in range(5):
                await asyncio.sleep(0)

    def next_deadline(self) -> float | None:
        return self._sleepers[0][0] if self._sleepers else None
