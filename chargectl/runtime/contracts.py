"""The contracts between the tick loop and its edges, in the loop's terms.

`ShedIO` (the Modbus adapter) hands the loop a `Poll` and takes a `Decision`; a
`SessionsAdapter` (the session link) turns taps and polls into `Demand` and says what
happened to sessions; every `Reporter` (metrics, MQTT, the API snapshot, the event log) gets
one `TickOutcome` per tick and reads only it: its `events` carry every change of the tick.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from chargectl.control.core import ControlCore
from chargectl.control.layout import FloatArray, IntArray
from chargectl.control.observe import Decision, Demand, Observation
from chargectl.firewatch.detectors import Finding
from chargectl.firewatch.watch import Running
from chargectl.runtime.events import SessionNews, TickEvents


@dataclass(frozen=True)
class Tap:
    bay: str
    uid_hex: str


@dataclass
class Poll:
    observation: Observation
    taps: list[Tap] = field(default_factory=list)
    counters_wh: dict[str, int | None] = field(default_factory=dict)  # bay -> energy counter
    # bay -> the device's own active power (W): a pile's slow block if read lately, a
    # wallbox's hot block; None where it has none or it was bad
    power_w: dict[str, float | None] = field(default_factory=dict)
    va: dict[str, float | None] = field(default_factory=dict)  # bay -> current x voltage now
    # pile socket bay -> its temperature (C) from the pile's slow block while recent; None where
    # it was bad or is stale; absent for a wallbox
    temp_c: dict[str, float | None] = field(default_factory=dict)
    relay_closed: dict[str, bool] = field(default_factory=dict)  # bay -> contact feedback
    plugged: dict[str, bool] = field(default_factory=dict)  # wallbox bay -> vehicle connected
    errors: list[tuple[str, str]] = field(default_factory=list)  # (device, error class name)


@dataclass(frozen=True)
class WatchInputs:
    """Per bay, in layout order: what the fire-risk watch reads each tick."""

    running: list[Running | None]  # the session running there
    power_w: FloatArray  # the power the session rules judged (W), NaN without a reading
    temp_c: FloatArray  # the socket's temperature (C), NaN where none
    # the device's fault code (Observation.bay_fault; a pile's own cuts latch 1 over-power, 2
    # over-temperature), -1 where the bay was not read this tick; None: not known
    fault: IntArray | None = None
    va: FloatArray | None = None  # the tick's current x voltage (VA), NaN without a reading


class ShedIO(Protocol):
    async def connect(self) -> None: ...
    async def setup(self) -> None: ...
    async def poll(self, now: float, slow: bool) -> Poll: ...
    async def apply(
        self, decision: Decision, lamps: Mapping[str, int], *, shed_only: bool = False
    ) -> None: ...
    async def poll_meters(self) -> FloatArray | None: ...
    async def poll_taps(self) -> None: ...
    async def failsafe(self) -> None: ...
    async def reset_fault(self, bay: str) -> None: ...
    def device_up(self) -> dict[str, bool]: ...
    async def close(self) -> None: ...


class SessionsAdapter(Protocol):
    """The boundary between the loop and the session layer."""

    def restore(self, counters: Mapping[str, int | None], wall: float, now: float) -> None: ...
    def on_tap(self, tap: Tap, now: float, wall: float) -> None: ...
    def update(self, now: float, wall: float, poll: Poll, core: ControlCore) -> None: ...
    def demand(self) -> Demand: ...
    def lamps(self, decision: Decision) -> Mapping[str, int]: ...
    def staff_stop(self, bay: str, now: float, wall: float) -> bool: ...
    def watch_inputs(self) -> WatchInputs: ...
    def flag_card(self, finding: Finding, wall: float) -> None:
        """Mark the card of a critical finding that cut its bay (the ledger keeps it)."""
        ...

    def drain(self) -> SessionNews:
        """What happened to taps and sessions since the last call."""
        ...


@dataclass
class TickOutcome:
    now: float
    wall: float
    duration_s: float
    poll: Poll
    decision: Decision
    demand: Demand
    lamps: Mapping[str, int]
    events: TickEvents


class Reporter(Protocol):
    """Metrics, MQTT, the API snapshot, the event log: each reads one tick's outcome."""

    def report(self, tick: TickOutcome) -> None: ...
