"""The latches staff must clear, kept in the ledger so that a restarted daemon keeps them.

The shed alarm (smoke, e-stop: every relay open, every wallbox paused) and the bays a critical
fire-risk finding holds out live in the core (`ControlCore.alarm`, `held_out`). A crash, a kill
or systemd's restart would drop them with the process, and the shed would charge again with no
staff member having looked. `LatchKeeper` compares the core's latches with what it last wrote
after every step and after every staff clear, and records each change through the ledger's
writer thread (a `Latch` when one is set, a `LatchClear` when staff clear it): the tick only
enqueues. At start-up, before the first tick, `restore` reads the ledger's latches and hands
them to the core (`ControlCore.restore_latches`), so the first tick opens what they cover.
"""

from __future__ import annotations

import datetime
import logging
from typing import Protocol

import numpy as np

from chargectl.control.core import ControlCore
from chargectl.control.layout import Layout
from chargectl.sessions.records import Latch, LatchClear, LedgerRecord

log = logging.getLogger("chargectl")

ALARM = "alarm"
BAY = "bay"


class LatchStore(Protocol):
    """The ledger as the keeper uses it (`LedgerWriter`)."""

    def load_latches(self) -> tuple[Latch, ...]: ...
    def record(self, rec: LedgerRecord) -> None: ...


def _when(wall: float) -> str:
    return datetime.datetime.fromtimestamp(wall).strftime("%Y-%m-%d %H:%M:%S")


class LatchKeeper:
    def __init__(self, store: LatchStore, layout: Layout) -> None:
        self._store = store
        self._bays = [b.id for b in layout.bays]
        self._index = dict(layout.bay_index)
        self._alarm: tuple[str, str] | None = None  # (reason, subject) as the ledger holds it
        self._held: dict[int, str] = {}  # bay -> why, as the ledger holds them

    def restore(self, core: ControlCore) -> list[str]:
        """Hand the ledger's latches to the core; one line for staff per latch restored. A
        latch for a bay this shed no longer has is reported and left in the ledger."""
        alarm: Latch | None = None
        held: dict[int, str] = {}
        lines: list[str] = []
        for latch in self._store.load_latches():
            if latch.kind == ALARM:
                alarm = latch
                where = f" at {latch.subject}" if latch.subject else ""
                lines.append(
                    f"shed alarm {latch.reason}{where} still latched from {_when(latch.at)}: "
                    "staff must clear it"
                )
            elif latch.kind == BAY and latch.subject in self._index:
                held[self._index[latch.subject]] = latch.reason
                lines.append(
                    f"bay {latch.subject} held out ({latch.reason}) still latched from "
                    f"{_when(latch.at)}: staff must clear it"
                )
            else:
                lines.append(
                    f"ledger latch {latch.kind} {latch.subject!r} ({latch.reason}): no such "
                    "bay in this shed; left in the ledger, not applied"
                )
        core.restore_latches(
            None if alarm is None else alarm.reason,
            None if alarm is None else alarm.subject or None,
            held,
        )
        self._alarm = None if alarm is None else (alarm.reason, alarm.subject)
        self._held = dict(held)
        for line in lines:
            log.warning(line)
        return lines

    def sync(self, core: ControlCore, wall: float) -> None:
        """Record what changed in the core's latches since the last call (only enqueues)."""
        alarm = None if core.alarm is None else (core.alarm, core.alarm_at or "")
        if alarm != self._alarm:
            if alarm is None:
                self._store.record(LatchClear(ALARM))
            else:
                self._store.record(Latch(ALARM, alarm[1], alarm[0], wall))
            self._alarm = alarm
        held = {int(j): core.held_why.get(int(j), "fault") for j in np.flatnonzero(core.held_out)}
        for j in sorted(held.keys() - self._held.keys()):
            self._store.record(Latch(BAY, self._bays[j], held[j], wall))
        for j in sorted(self._held.keys() - held.keys()):
            self._store.record(LatchClear(BAY, self._bays[j]))
        self._held = held
