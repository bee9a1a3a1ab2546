"""The control tick's pure core: observation + demand + time -> decision.

No I/O and no clock: `now` is passed in. The order within one step:
1. estimate each circuit's current (its meter, or the bays plus a worst case) and advance the
   breaker thermal model; derate limits of hot breakers;
2. latch alarms (smoke, e-stop: everything off until staff clear), faults and welded relays;
3. estimate unmanaged load (meter minus the bays under it, never negative, held at its recent
   maximum so a meter lagging a shed cannot make the plan flap), plus the fixed load of bays
   the controller cannot switch (welded, device not answering);
4. turn sessions into kernel inputs: who may run (min on / min off), at what current, in which
   order (a socket inside its min_on is pinned unless its circuit is over its limit right now);
5. allocate (the numba kernel), and derive relay commands, wallbox setpoints, bay states and
   the fail-safe masks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np

from chargectl.config import ControlSettings, Shed
from chargectl.control.failsafe import failsafe_masks
from chargectl.control.layout import BoolArray, FloatArray, IntArray, Layout, circuit_load
from chargectl.control.observe import (
    FAULT_NONE,
    FAULT_WELDED,
    Decision,
    Demand,
    Observation,
)
from chargectl.control.thermal import BreakerThermal, Derate

# (limit_a[C,3], unmanaged_a[C,3], min_a[B], max_a[B], priority[B], credit[B], on[B])
#   -> (setpoints[B], planned_a[C,3], binding[C,3], infeasible[C,3])
Allocate = Callable[
    [FloatArray, FloatArray, FloatArray, FloatArray, IntArray, FloatArray, BoolArray],
    tuple[FloatArray, FloatArray, BoolArray, BoolArray],
]

PIN_PRIORITY = 1_000_000  # above any staff priority: a pinned socket is admitted first
WALLBOX_MIN_A = 6.0
RAMP_S = 5.0  # a socket closed this recently counts at least its nominal current
WELD_TICKS = 2  # ticks of current through an open relay before it is called welded
WELD_CURRENT_A = 0.1
UNMANAGED_HOLD_S = 5.0
# A meter that shows the very same nonzero value this long, while the load it measures moves,
# is frozen: it counts as lost (the worst case), not as the truth.
METER_STALE_S = 5.0
OVERLOAD_TOLERANCE_A = 0.05


class ControlCore:
    def __init__(self, shed: Shed, layout: Layout, allocate: Allocate) -> None:
        self.layout = layout
        self.settings: ControlSettings = shed.control
        self.allocate = allocate
        self.voltage_v = shed.shed.voltage_v
        self.port_limit_a = np.zeros(layout.n_bays)
        for bay_index, bay in enumerate(layout.bays):
            if bay.is_socket:
                dev = shed.device(bay.device)
                self.port_limit_a[bay_index] = dev.port_power_limit_w / self.voltage_v
        b, c = layout.n_bays, layout.n_circuits
        self.on = np.zeros(b, dtype=np.bool_)
        self.setpoint = np.zeros(b)
        self.changed_at = np.full(b, -np.inf)  # when the relay last changed
        self.weld_count = np.zeros(b, dtype=np.int64)
        self.welded = np.zeros(b, dtype=np.bool_)
        self.alarm: str | None = None  # the kind, "smoke" or "estop" (a metrics label)
        self.alarm_at: str | None = None
        self.thermal = BreakerThermal(layout.breaker_a)
        self.derate = Derate(above=self.settings.thermal_derate_ratio)
        self.overloaded = np.zeros(c, dtype=np.bool_)
        self._unmanaged_hist: deque[tuple[float, FloatArray]] = deque()
        # Per circuit and phase: the meter's last value, when it last changed, the bays' load
        # at the previous tick, and the last unmanaged estimate a fresh sample gave.
        c3 = (layout.n_circuits, 3)
        self._meter_last = np.full(c3, np.nan)
        self._meter_changed_at = np.full(c3, -np.inf)
        self._bays_prev = np.zeros(c3)
        self._raw_unmanaged = np.full(c3, -np.inf)
        self._frozen_noted = np.zeros(layout.n_circuits, dtype=np.bool_)
        self._meter_fresh = np.zeros(c3, dtype=np.bool_)
        self._last_now: float | None = None
        self.failsafe_mask: dict[str, int] = {pile: 0 for pile in layout.pile_slices}

    # -- staff actions -------------------------------------------------------------------
    def clear_alarm(self) -> None:
        self.alarm = None
        self.alarm_at = None

    def clear_welded(self, bay: int) -> None:
        self.welded[bay] = False
        self.weld_count[bay] = 0

    # -- the step ------------------------------------------------------------------------
    def step(self, now: float, obs: Observation, demand: Demand) -> Decision:
        lay = self.layout
        notes: list[str] = []
        dt = 0.0 if self._last_now is None else max(0.0, now - self._last_now)
        self._last_now = now

        # Bays whose current we cannot see count at their worst case: per circuit, the larger of
        # the last plan (until the watchdog fires) and what the fail-safe mask allows after.
        down = ~obs.bay_up
        last_plan = np.where(down & self.on, self.setpoint, 0.0)
        after = np.where(down, self.port_limit_a * self._failsafe_bits(), 0.0)
        down_worst = np.maximum(circuit_load(lay, last_plan), circuit_load(lay, after))
        bay_amps = np.where(obs.bay_up, obs.bay_current_a, 0.0)

        # 1. circuit currents, thermal model, derated limits
        bays_load = circuit_load(lay, bay_amps)
        metered = self._meters_in_service(now, obs.meter_a, bays_load, notes)
        # A meter also sees the unanswering bays: they end up in unmanaged and again in
        # down_worst. Counted twice, on purpose: a device that went silent may draw anything
        # up to its worst case from the next second on.
        unmanaged = self._unmanaged(now, obs, bays_load, metered)
        estimated = bays_load + unmanaged + down_worst
        current = np.where(metered, obs.meter_a, estimated) * lay.circuit_phases
        self.thermal.step(dt, current)
        ratio = self.thermal.ratio()
        limit = self.derate.apply(ratio, lay.limit_a)
        over = np.asarray(
            ((current > lay.limit_a + OVERLOAD_TOLERANCE_A) & lay.circuit_phases).any(axis=1),
            dtype=np.bool_,
        )
        new_overloads = over & ~self.overloaded
        self.overloaded = over
        for c in np.flatnonzero(new_overloads):
            notes.append(f"overload on {lay.circuit_ids[c]}: shedding")

        # 2. alarms, faults, welded relays
        if obs.alarm and self.alarm is None:
            self.alarm, self.alarm_at = obs.alarm, obs.alarm_at
            notes.append(
                f"ALARM {obs.alarm} at {obs.alarm_at}: every relay opens, every wallbox pauses"
            )
        open_but_flowing = lay.socket & obs.bay_up & ~self.on & (obs.bay_current_a > WELD_CURRENT_A)
        self.weld_count = np.where(open_but_flowing, self.weld_count + 1, 0)
        newly_welded = ~self.welded & (
            (self.weld_count >= WELD_TICKS) | (obs.bay_fault == FAULT_WELDED)
        )
        for j in np.flatnonzero(newly_welded):
            notes.append(f"bay {lay.bays[j].id}: relay welded (current through an open relay)")
        self.welded |= newly_welded
        faulted = (obs.bay_fault != FAULT_NONE) | self.welded

        # 3. load the controller cannot switch: welded relays and unanswering devices
        welded_amps = np.where(self.welded, bay_amps, 0.0)
        unmanaged_total = unmanaged + circuit_load(lay, welded_amps) + down_worst

        # 4. kernel inputs
        eligible = demand.wants & obs.bay_up & ~faulted & (self.alarm is None)
        since = now - self.changed_at
        min_a, max_a = self._bounds(now, obs, eligible, since)
        pinned = self.on & lay.socket & (since < self.settings.min_on_s)
        over_bays = (lay.under[over].any(axis=0)) if over.any() else np.zeros_like(pinned)
        priority = demand.priority + np.where(pinned & ~over_bays, PIN_PRIORITY, 0)

        # 5. allocate
        setpoints, planned, binding, infeasible = self.allocate(
            limit, unmanaged_total, min_a, max_a, priority, demand.credit, self.on
        )
        relay_on = setpoints > 0
        closing = np.flatnonzero(relay_on & ~self.on & lay.socket)
        if len(closing) > self.settings.max_closes_per_tick:
            # Stagger: the least served close now, the rest wait a tick (planned, not drawn).
            order = closing[np.argsort(demand.credit[closing], kind="stable")]
            deferred = order[self.settings.max_closes_per_tick :]
            relay_on[deferred] = False
            setpoints = np.where(relay_on | ~lay.socket, setpoints, 0.0)
        # Nothing reaches a device that does not answer: it keeps what it was last told, and so
        # do our books. Its bays' last plan and its pile's fail-safe mask therefore stay its
        # worst case for as long as it is silent, not just on the first tick.
        relay_on = np.where(down, self.on, relay_on)
        setpoints = np.where(down, self.setpoint, setpoints)
        changed = relay_on != self.on
        self.changed_at = np.where(changed, now, self.changed_at)
        self.on = relay_on
        self.setpoint = setpoints.copy()
        held = {
            pile: self.failsafe_mask.get(pile, 0)
            for pile, sl in lay.pile_slices.items()
            if down[sl].all()
        }
        masks = failsafe_masks(lay, self.port_limit_a, relay_on & ~down, held)
        self.failsafe_mask = masks

        state = self._states(obs, demand, faulted, relay_on)
        return Decision(
            relay_on=relay_on,
            setpoint_a=setpoints,
            circuit_current_a=current,
            limit_a=limit,
            planned_a=planned,
            binding=binding,
            infeasible=infeasible,
            overloaded=over,
            new_overloads=new_overloads,
            thermal_ratio=ratio,
            unmanaged_a=unmanaged_total,
            bay_state=state,
            failsafe_mask=masks,
            welded=self.welded.copy(),
            alarm=self.alarm,
            notes=notes,
            alarm_at=self.alarm_at,
        )

    # -- parts ---------------------------------------------------------------------------
    def _failsafe_bits(self) -> BoolArray:
        bits = np.zeros(self.layout.n_bays, dtype=np.bool_)
        for pile, sl in self.layout.pile_slices.items():
            mask = self.failsafe_mask.get(pile, 0)
            n = sl.stop - sl.start
            bits[sl] = [(mask >> k) & 1 == 1 for k in range(n)]
        return bits

    def _meters_in_service(
        self, now: float, meter_a: FloatArray, bays_load: FloatArray, notes: list[str]
    ) -> BoolArray:
        """Where a meter answers and is not frozen (a value unchanged for METER_STALE_S that is
        nonzero, or zero while the bays under it draw)."""
        answered = ~np.isnan(meter_a)
        changed = answered & (meter_a != self._meter_last)
        self._meter_fresh = changed
        self._meter_last = np.where(answered, meter_a, np.nan)
        self._meter_changed_at = np.where(changed, now, self._meter_changed_at)
        frozen = (
            answered
            & (now - self._meter_changed_at > METER_STALE_S)
            & ((meter_a > 0.0) | (bays_load > 0.0))
        )
        newly = frozen.any(axis=1) & ~self._frozen_noted
        for c in np.flatnonzero(newly):
            notes.append(
                f"meter of {self.layout.circuit_ids[c]} frozen on a stale value: worst case"
            )
        self._frozen_noted = np.asarray(frozen.any(axis=1), dtype=np.bool_)
        return np.asarray(answered & ~frozen)

    def _unmanaged(
        self, now: float, obs: Observation, bays_load: FloatArray, metered: BoolArray
    ) -> FloatArray:
        """Unmanaged current per circuit and phase, including its sub-circuits'."""
        lay = self.layout
        # A meter value that changed is a sample taken since the previous tick: the bays' load
        # it contains is this tick's or the previous one's, and the larger is subtracted (a
        # socket just shed is still in a sample taken before its relay opened, and must not
        # turn into unmanaged load). An unchanged value is the old sample: its estimate stands.
        fresh = metered & self._meter_fresh
        sample = np.maximum(obs.meter_a - np.maximum(bays_load, self._bays_prev), 0.0)
        self._raw_unmanaged = np.where(
            fresh, sample, np.where(metered, self._raw_unmanaged, -np.inf)
        )
        self._bays_prev = bays_load
        raw = self._raw_unmanaged
        # Hold the recent maximum of what meters showed: a load that steps up is believed at
        # once, one that goes away only after UNMANAGED_HOLD_S.
        held = np.maximum(_window_max(self._unmanaged_hist, now, UNMANAGED_HOLD_S, raw), 0.0)
        out = np.zeros_like(lay.limit_a)
        # Children before parents: walk the topological order backwards.
        for c in range(lay.n_circuits - 1, -1, -1):
            children = lay.parent == c
            from_children = out[children].sum(axis=0) if children.any() else np.zeros(3)
            out[c] = np.where(
                metered[c],
                np.maximum(held[c], from_children),
                lay.unmanaged_worst_a[c] + from_children,
            )
        return out * lay.circuit_phases

    def _bounds(
        self, now: float, obs: Observation, eligible: BoolArray, since: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        s = self.settings
        lay = self.layout
        sock = lay.socket
        measured = obs.bay_current_a + s.ramp_margin_a
        ramping = since < RAMP_S
        on_amps = np.where(ramping, np.maximum(measured, s.socket_nominal_a), measured)
        sock_amps = np.where(self.on, on_amps, s.socket_nominal_a)
        may_close = self.on | (since >= s.min_off_s)
        sock_ok = eligible & sock & may_close
        # A wallbox counts at what its car draws plus room to probe upward.
        wb_ok = eligible & ~sock & obs.wallbox_plugged
        wb_max = np.minimum(
            obs.wallbox_hw_max_a,
            np.maximum(WALLBOX_MIN_A, obs.bay_current_a + s.wallbox_probe_a),
        )
        min_a = np.where(sock, sock_amps, WALLBOX_MIN_A)
        max_a = np.where(sock, np.where(sock_ok, sock_amps, 0.0), np.where(wb_ok, wb_max, 0.0))
        return min_a, max_a

    def _states(
        self, obs: Observation, demand: Demand, faulted: BoolArray, relay_on: BoolArray
    ) -> tuple[str, ...]:
        out = []
        for j in range(self.layout.n_bays):
            if not obs.bay_up[j] or self.alarm is not None:
                out.append("disabled")
            elif faulted[j]:
                out.append("fault")
            elif relay_on[j]:
                out.append("charging")
            elif demand.wants[j]:
                out.append("waiting" if self.layout.socket[j] else "paused")
            else:
                out.append("idle")
        return tuple(out)


def _window_max(
    hist: deque[tuple[float, FloatArray]], now: float, window_s: float, value: FloatArray
) -> FloatArray:
    """Append `value` at `now` and return the elementwise maximum over the last `window_s`."""
    hist.append((now, value))
    while hist[0][0] < now - window_s:
        hist.popleft()
    return np.asarray(np.max(np.stack([v for _, v in hist]), axis=0))
