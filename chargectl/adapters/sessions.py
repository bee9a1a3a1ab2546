"""The loop's side of the session layer: `Poll` and `Decision` in, `Demand` and lamps out.

The session manager (chargectl.sessions) knows cards and bays, not arrays or Modbus; the
core knows arrays, not cards. This is the one place that translates between them, and the one
that turns the config's device limits into the session layer's only device knowledge: the most
power a bay can plausibly draw (`max_power_w`), which bounds the energy counter steps a session
believes.

Power: `Poll.power_w[bay]` is the device's own active power (W) and `Poll.va[bay]` current x
voltage; the session rules use the first and fall back to the second (docs/sessions.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from chargectl.config.schema import Shed
from chargectl.control.core import ControlCore
from chargectl.control.layout import Layout
from chargectl.control.observe import (
    FAULT_NONE,
    FAULT_OVER_POWER,
    FAULT_OVER_TEMP,
    Decision,
    Demand,
)
from chargectl.firewatch.detectors import Finding
from chargectl.firewatch.watch import Running
from chargectl.runtime.contracts import Poll, Tap, WatchInputs
from chargectl.runtime.events import SessionNews
from chargectl.sessions.machine import BayObservation, Lamp
from chargectl.sessions.manager import SessionManager, TapResult
from chargectl.sessions.records import CardFlag

_FAULT_NAMES = {FAULT_OVER_POWER: "over_power", FAULT_OVER_TEMP: "over_temp"}


def max_power_w(shed: Shed, layout: Layout) -> dict[str, float]:
    """The most power each bay can plausibly draw (W), from the config: a pile socket its
    pile's `port_power_limit_w`, a wallbox `max_current_a` x phases x the supply voltage, each
    times `sessions.counter_power_margin` (a pile cuts after 2 s over its limit, and a meter's
    power reads high at times)."""
    out: dict[str, float] = {}
    high_v = shed.shed.voltage_v * 1.1  # the supply may sit 7-10 % above nominal
    for bay in layout.bays:
        dev = shed.device(bay.device)
        if bay.is_socket:
            watts = float(dev.port_power_limit_w)
        else:
            watts = float(dev.max_current_a) * max(1, len(bay.phases)) * high_v
        out[bay.id] = watts * shed.sessions.counter_power_margin
    return out


class SessionLink:
    def __init__(
        self,
        manager: SessionManager,
        layout: Layout,
        *,
        wall_synced: Callable[[], bool | None] | None = None,
    ) -> None:
        """`wall_synced`: asked every tick whether the wall clock is synchronized (the
        injected clock's `clock_synced`); None or an unknown answer counts as synchronized."""
        self.manager = manager
        self.layout = layout
        self.taps: list[TapResult] = []  # this tick's, for the log and metrics
        self._wall_synced = wall_synced
        n = len(layout.bays)
        self._watch = WatchInputs([None] * n, np.full(n, np.nan), np.full(n, np.nan))

    def restore(self, counters: Mapping[str, int | None], wall: float, now: float) -> None:
        self.manager.restore(counters, wall, now)
        self._sync(now, wall)

    def on_tap(self, tap: Tap, now: float, wall: float) -> None:
        self.tap(tap.bay, tap.uid_hex, now, wall)

    def tap(self, bay: str, uid_hex: str, now: float, wall: float) -> TapResult | None:
        """A card at a bay: a reader's tap, or an app's start (MQTT `bays/start`), judged alike
        by the manager and reported alike (this tick's taps). None for a repeat of the same
        tap, which is only counted (readout)."""
        self._sync(now, wall)
        result = self.manager.on_tap(bay, uid_hex, now, wall)
        if result is not None:
            self.taps.append(result)
        return result

    def _sync(self, now: float, wall: float) -> None:
        if self._wall_synced is not None:
            self.manager.set_wall_synced(self._wall_synced() is not False, now, wall)

    def update(self, now: float, wall: float, poll: Poll, core: ControlCore) -> None:
        self._sync(now, wall)
        # Current x voltage where the adapter hands it apart from the device's own power.
        va: Mapping[str, float | None] = getattr(poll, "va", None) or {}
        # Socket temperatures from the pile's slow block (none for a wallbox, None when stale).
        temp: Mapping[str, float | None] = poll.temp_c
        obs = poll.observation
        emergency = core.alarm is not None or obs.alarm is not None
        seen: dict[str, BayObservation] = {}
        for j, bay in enumerate(self.layout.bays):
            up = bool(obs.bay_up[j])
            code = int(obs.bay_fault[j])
            fault = None
            if core.welded[j]:
                fault = "fault"
            elif core.held_out[j]:  # a critical fire-risk finding: over_power, over_temp, fault
                fault = core.held_why.get(j, "fault")
            elif code != FAULT_NONE:
                fault = _FAULT_NAMES.get(code, "fault")
            seen[bay.id] = BayObservation(
                relay_closed=up and poll.relay_closed.get(bay.id, False),
                power_w=poll.power_w.get(bay.id) if up else None,
                va=va.get(bay.id) if up else None,
                energy_wh=poll.counters_wh.get(bay.id),
                fault=fault,
                emergency=emergency,
                plugged=None if bay.is_socket else (poll.plugged.get(bay.id) if up else None),
                temp_c=temp.get(bay.id) if up else None,
            )
        self.manager.update(now, wall, seen)
        running: list[Running | None] = []
        for bay in self.layout.bays:
            s = self.manager.session_at(bay.id)
            running.append(None if s is None else Running(str(s.id), s.card, s.start_now))
        nan = float("nan")
        power = [o.power for o in seen.values()]
        temps = [o.temp_c for o in seen.values()]
        self._watch = WatchInputs(
            running,
            np.array([nan if w is None else w for w in power]),
            np.array([nan if c is None else c for c in temps]),
            np.where(obs.bay_up, obs.bay_fault, -1).astype(np.int64),
            np.array([nan if o.va is None else o.va for o in seen.values()]),
        )

    def watch_inputs(self) -> WatchInputs:
        """The fire-risk watch's inputs from the last `update`: the running sessions (as they
        stand after the rules) and the power and temperature the rules saw."""
        return self._watch

    def demand(self) -> Demand:
        d = Demand.none(self.layout)
        for bay, want in self.manager.demand().items():
            j = self.layout.bay_index[bay]
            d.wants[j] = want.wants_current
            d.credit[j] = float(want.credit_wh)
        return d

    def lamps(self, decision: Decision) -> Mapping[str, int]:
        out: dict[str, int] = {}
        for j, bay in enumerate(self.layout.bays):
            lamp = self.manager.lamp(bay.id)
            # A faulted bay is red at once, whatever the session layer shows (an "accepted"
            # blink included); only the answer to a tap there (rejected) shows first.
            if decision.bay_state[j] == "fault" and lamp != Lamp.REJECTED:
                lamp = Lamp.FAULT
            out[bay.id] = int(lamp)
        return out

    def staff_stop(self, bay: str, now: float, wall: float) -> bool:
        return self.manager.staff_stop(bay, now, wall)

    def flag_card(self, finding: Finding, wall: float) -> None:
        """Mark the finding's card in the ledger (staff speak to its resident)."""
        sid = finding.session_id
        reason = (
            f"{finding.kind} ({finding.severity}) at {finding.bay}, session {sid}: {finding.seen}"
        )
        session = int(sid) if sid.isdigit() else None
        self.manager.flag_card(CardFlag(finding.card, reason, wall, session, finding.bay))

    def drain(self) -> SessionNews:
        """The taps judged and the sessions ended and settled since the last call, with the
        session counts now: the sessions' part of the tick's event stream."""
        taps, self.taps = self.taps, []
        ev = self.manager.drain_events()
        return SessionNews(tuple(taps), ev.ended, ev.settled, self.manager.readout())
