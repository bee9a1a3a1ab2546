"""The outbox between the tick and the MQTT link: the tick puts, the link takes; the tick
never waits.

Events wait in order, at most `size` of them (when full the oldest goes, counted in
`dropped`); the state summary is one slot, each replacing the last. `encode` turns a payload
into the bytes that go on the wire.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Payload = bytes | Mapping[str, Any]


def encode(payload: Payload) -> bytes:
    if isinstance(payload, bytes):
        return payload
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()


@dataclass(frozen=True, slots=True, eq=False)  # identity matters: see Outbox.done
class Outgoing:
    topic: str
    payload: Payload
    qos: int
    retain: bool


class Outbox:
    """Never blocks the producer. Events wait in order, at most `size` of them: when full, the
    oldest goes (counted in `dropped`). The state is one slot: only the newest matters."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"outbox size must be >= 1, got {size}")
        self.size = size
        self.dropped = 0
        self._events: deque[Outgoing] = deque()
        self._state: Outgoing | None = None
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._events) + (self._state is not None)

    def put(self, msg: Outgoing) -> None:
        if len(self._events) >= self.size:
            self._events.popleft()
            self.dropped += 1
        self._events.append(msg)
        self._ready.set()

    def put_state(self, msg: Outgoing) -> None:
        self._state = msg
        self._ready.set()

    def peek(self) -> Outgoing | None:
        if self._events:
            return self._events[0]
        return self._state

    def done(self, msg: Outgoing) -> None:
        """`msg` (from `peek`) is out. It may have been dropped or replaced meanwhile."""
        if self._events and self._events[0] is msg:
            self._events.popleft()
        elif self._state is msg:
            self._state = None

    async def next(self) -> Outgoing:
        while (msg := self.peek()) is None:
            self._ready.clear()
            await self._ready.wait()
        return msg
