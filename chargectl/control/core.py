"""The control tick's pure core: observation + demand + time -> decision.

No I/O and no clock: `now` is passed in. The order within one step:
1. estimate each circuit's current (its meter, or the bays plus a worst case) and advance the
   breaker thermal model; derate limits of hot breakers;
2. latch alarms (smoke, e-stop: everything off until staff clear), faults, welded relays and
   bays held out by a critical fire-risk finding (never eligible, relay open, until cleared);
3. estimate unmanaged load (meter minus the bays under it, never negative, held at its recent
   maximum so a meter lagging a shed cannot make the plan flap; a lost or frozen meter keeps
   the larger of the configured worst case and what it last measured), plus the fixed load of
   bays the controller cannot switch: welded relays, silent devices (once, at their worst
   case), and any bay drawing more than it was told (a relay whose open did not reach it, a
   car still following a lower offer);
4. turn sessions into kernel inputs: who may run (min on / min off), at what current, in which
   order (`Turns`: credits, least first; a socket inside its min_on, or whose session has had
   its `max_pauses`, is pinned unless its circuit is over its limit right now);
5. allocate (the numba kernel); a wallbox offered less than its car draws is counted at its
   draw and the plan is made again, so the freed current is not given away before the car
   has let go of it; derive relay commands, wallbox offers, bay states and the fail-safe masks.

`step(..., shed_only=True)` is the same plan for a meter sample that shows an overload
between ticks: it may only open relays, lower offers and shrink masks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping

import numpy as np

from chargectl.config.schema import ControlSettings, Shed
from chargectl.control.external_limits import ExternalLimits
from chargectl.control.failsafe import failsafe_cost_a, failsafe_masks, mask_bits
from chargectl.control.layout import BoolArray, FloatArray, IntArray, Layout, circuit_load
from chargectl.control.observe import (
    FAULT_NONE,
    FAULT_WELDED,
    Decision,
    Demand,
    Observation,
)
from chargectl.control.thermal import BreakerThermal, Derate
from chargectl.control.turns import Turns

# (limit_a[C,3], unmanaged_a[C,3], min_a[B], max_a[B], priority[B], credit[B], on[B])
#   -> (setpoints[B], planned_a[C,3], binding[C,3], infeasible[C,3])
Allocate = Callable[
    [FloatArray, FloatArray, FloatArray, FloatArray, IntArray, FloatArray, BoolArray],
    tuple[FloatArray, FloatArray, BoolArray, BoolArray],
]

PIN_PRIORITY = 1_000_000  # above any staff priority: a pinned socket is admitted first
RAMP_S = 5.0  # a socket closed this recently counts at least its nominal current
WELD_TICKS = 2  # ticks of current through an open relay before it is called welded
WELD_CURRENT_A = 0.1
UNMANAGED_HOLD_S = 5.0
# A meter that shows the very same nonzero value this long, while the load it measures moves,
# is frozen: it counts as lost (the worst case), not as the truth.
METER_STALE_S = 5.0
OVERLOAD_TOLERANCE_A = 0.05
# A car may draw a little above its offer (hardware/evse.md); beyond this it is still following.
WALLBOX_TOLERANCE_A = 0.5
PILE_CUT = "supply_fault"  # a pile alarm that cuts every socket of the pile
PILE_HOLD = "pile_overtemp"  # a pile alarm that lets no more current onto the pile


class ControlCore:
    def __init__(self, shed: Shed, layout: Layout, allocate: Allocate) -> None:
        self.layout = layout
        self.settings: ControlSettings = shed.control
        self.allocate = allocate
        # What each bay may draw in fail-safe if on there (sockets: the pile's cut-off at the
        # lowest voltage and worst power factor; wallboxes: their maximum, while unconfirmed).
        self.failsafe_cost_a = failsafe_cost_a(shed, layout)
        self.wallbox_max_a = np.array(
            [0.0 if b.is_socket else shed.device(b.device).max_current_a for b in layout.bays]
        )
        b, c = layout.n_bays, layout.n_circuits
        self.on = np.zeros(b, dtype=np.bool_)
        self.setpoint = np.zeros(b)
        self.changed_at = np.full(b, -np.inf)  # when the relay last changed
        self.weld_count = np.zeros(b, dtype=np.int64)
        self.welded = np.zeros(b, dtype=np.bool_)
        # Held out of service by a critical fire-risk finding (firewatch) until staff clear it:
        # never eligible, its relay opens and stays open, never a fail-safe bit.
        self.held_out = np.zeros(b, dtype=np.bool_)
        self.held_why: dict[int, str] = {}  # bay -> "over_power", "over_temp" or "fault"
        self.alarm: str | None = None  # the kind, "smoke" or "estop" (a metrics label)
        self.alarm_at: str | None = None
        self.thermal = BreakerThermal(layout.breaker_a)
        self.derate = Derate(above=self.settings.thermal_derate_ratio)
        # Caps set from above (MQTT circuits/limit): they only lower the planned limits.
        self.external = ExternalLimits(layout.circuit_ids, layout.limit_a.max(axis=1).tolist())
        # Each bay's circuit-phase (its first phase), the group whose ramp margin it shares.
        self._margin_group = layout.bay_circuit * 3 + np.argmax(layout.bay_phases, axis=1)
        self.turns = Turns(shed, layout, self.wallbox_max_a)
        self.overloaded = np.zeros(c, dtype=np.bool_)
        self._overloads_since_tick = np.zeros(c, dtype=np.bool_)
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
        # The last unmanaged estimate of each circuit-phase while its meter was live: a meter
        # that goes away keeps at least this (it had just measured it).
        self._live_unmanaged = np.zeros(c3)
        self._steady = np.full(c3, -np.inf)  # the lower of a meter's last two samples
        self._prev_sample = np.full(c3, np.inf)
        self._steady_hist: deque[tuple[float, FloatArray]] = deque()
        self.last_amps = np.zeros(b)  # each bay's last measured current while it answered
        # The highest setpoint a device may still hold: what was decided, and while a command
        # is unconfirmed, every earlier decision since the last confirmed one.
        self._command_worst = np.zeros(b)
        self.pile_alarms: dict[str, str] = {}

    # -- staff actions -------------------------------------------------------------------
    def clear_alarm(self) -> None:
        self.alarm = None
        self.alarm_at = None

    def hold_out(self, bay: int, why: str = "fault") -> None:
        """Take the bay out of service until staff clear it (a critical fire-risk finding). It
        only ever removes: the next step opens its relay and never closes it. `why` is the
        session layer's fault name (its session's end reason)."""
        if not self.held_out[bay]:
            self.held_why[bay] = why
        self.held_out[bay] = True

    def clear_fault(self, bay: int) -> None:
        """Staff cleared the bay: a welded relay (replaced) and a hold (the resident spoken to)."""
        self.welded[bay] = False
        self.weld_count[bay] = 0
        self.held_out[bay] = False
        self.held_why.pop(bay, None)

    clear_welded = clear_fault

    def restore_latches(
        self, alarm: str | None, alarm_at: str | None, held: Mapping[int, str]
    ) -> None:
        """A restart's latches, as the ledger kept them (staff had not cleared them): the shed
        alarm and the bays held out (bay -> why). Before the first step: nothing closes."""
        if alarm is not None:
            self.alarm, self.alarm_at = alarm, alarm_at
        for bay, why in held.items():
            self.hold_out(bay, why)

    # -- the step ------------------------------------------------------------------------
    def step(
        self, now: float, obs: Observation, demand: Demand, *, shed_only: bool = False
    ) -> Decision:
        lay = self.layout
        notes: list[str] = []
        dt = 0.0 if self._last_now is None else max(0.0, now - self._last_now)
        self._last_now = now
        up = obs.bay_up
        down = ~up
        unsure = (
            np.zeros(lay.n_bays, dtype=np.bool_)
            if obs.command_unsure is None
            else obs.command_unsure
        )
        self._command_worst = np.where(
            unsure, np.maximum(self._command_worst, self.setpoint), self.setpoint
        )
        fs_on = mask_bits(lay, self.failsafe_mask)
        if obs.failsafe_on is not None:
            fs_on = fs_on | obs.failsafe_on

        # Bays we cannot see count at their worst case, per circuit: the larger of what they may
        # still be drawing until the watchdog fires (what they were last told or last drew)
        # and what their fail-safe lets through after.
        bay_amps = np.where(up, obs.bay_current_a, 0.0)
        self.last_amps = np.where(up, obs.bay_current_a, self.last_amps)
        before = np.where(down, np.maximum(self._command_worst, self.last_amps), 0.0)
        after = np.where(down, self.failsafe_cost_a * fs_on, 0.0)
        down_worst = np.maximum(circuit_load(lay, before), circuit_load(lay, after))

        # 1. circuit currents, thermal model, derated limits
        bays_load = circuit_load(lay, bay_amps)
        metered = self._meters_in_service(now, obs.meter_a, bays_load, notes)
        # A meter also sees the silent bays. They are counted once, at their worst case
        # (down_worst): what they last drew is taken out of the meter's residual.
        seen = circuit_load(lay, np.where(up, bay_amps, self.last_amps))
        unmanaged = self._unmanaged(now, obs, seen, metered)
        estimated = bays_load + unmanaged + down_worst
        current = np.where(metered, obs.meter_a, estimated) * lay.circuit_phases
        self.thermal.step(dt, current)
        ratio = self.thermal.ratio()
        limit = self.external.apply(now, self.derate.apply(ratio, lay.limit_a))
        over = np.asarray(
            ((current > lay.limit_a + OVERLOAD_TOLERANCE_A) & lay.circuit_phases).any(axis=1),
            dtype=np.bool_,
        )
        new_overloads = over & ~self.overloaded
        self.overloaded = over
        # An overload first seen by a shed between ticks is reported with the next tick.
        if shed_only:
            self._overloads_since_tick |= new_overloads
        else:
            new_overloads = new_overloads | self._overloads_since_tick
            self._overloads_since_tick[:] = False
        for c in np.flatnonzero(new_overloads):
            notes.append(f"overload on {lay.circuit_ids[c]}: shedding")

        # 2. alarms, faults, welded relays
        if obs.alarm and self.alarm is None:
            self.alarm, self.alarm_at = obs.alarm, obs.alarm_at
            notes.append(
                f"ALARM {obs.alarm} at {obs.alarm_at}: every relay opens, every wallbox pauses"
            )
        cut, hold = self._pile_alarms(obs, notes)
        flowing = lay.socket & up & ~self.on & (obs.bay_current_a > WELD_CURRENT_A)
        if not shed_only:  # a tick's count: a shed between ticks sees the same readings
            # A relay whose open command is not confirmed may simply still be closed.
            self.weld_count = np.where(flowing & ~unsure, self.weld_count + 1, 0)
        newly_welded = ~self.welded & (
            (self.weld_count >= WELD_TICKS) | (obs.bay_fault == FAULT_WELDED)
        )
        for j in np.flatnonzero(newly_welded):
            notes.append(f"bay {lay.bays[j].id}: relay welded (current through an open relay)")
        self.welded |= newly_welded
        faulted = (obs.bay_fault != FAULT_NONE) | self.welded | self.held_out

        # 3. load the controller does not plan: welded relays, silent devices, and bays that
        # draw more than they were told (an open that did not reach the relay, a car still
        # following a lower offer), counted at what they draw until it has come down.
        welded_amps = np.where(self.welded, bay_amps, 0.0)
        excess = self._excess(obs, flowing & ~self.welded)
        fixed = unmanaged + circuit_load(lay, welded_amps + excess) + down_worst

        # 4. kernel inputs
        eligible = demand.wants & up & ~faulted & (self.alarm is None) & ~cut
        since = now - self.changed_at
        min_a, max_a = self._bounds(obs, eligible, since, hold, excess)
        self.turns.update(demand.credit, demand.wants, bay_amps)
        credit = self.turns.credit(demand.credit, self.on)
        # Pinned: a socket within `min_on_s`, or whose session has had its `max_pauses`.
        spent = self.turns.spent()
        pinned = self.on & lay.socket & ((since < self.settings.min_on_s) | spent)
        pinned &= ~cut & ~self.held_out
        over_bays = (lay.under[over].any(axis=0)) if over.any() else np.zeros_like(pinned)
        priority = demand.priority + np.where(pinned & ~over_bays, PIN_PRIORITY, 0)

        # 5. allocate; a wallbox now offered less than its car draws is counted at its draw
        # and the plan is made again without the current it has not let go of yet.
        setpoints, planned, binding, infeasible = self.allocate(
            limit, fixed, min_a, max_a, priority, credit, self.on
        )
        setpoints = self._offers(setpoints)
        following = ~lay.socket & up & (obs.bay_current_a > setpoints + WALLBOX_TOLERANCE_A)
        still = obs.bay_current_a - setpoints
        if (following & (still > excess + 1e-9)).any():
            excess2 = np.where(following, still, np.where(lay.socket, excess, 0.0))
            fixed = unmanaged + circuit_load(lay, welded_amps + excess2) + down_worst
            min_a = np.where(following, setpoints, min_a)
            max_a = np.where(following, setpoints, max_a)
            priority = priority + np.where(following, PIN_PRIORITY, 0)
            setpoints, planned, binding, infeasible = self.allocate(
                limit, fixed, min_a, max_a, priority, credit, self.on
            )
            setpoints = self._offers(setpoints)
        setpoints = np.where(self.held_out, 0.0, setpoints)
        relay_on = setpoints > 0
        closing = np.flatnonzero(relay_on & ~self.on & lay.socket)
        if len(closing) > self.settings.max_closes_per_tick:
            # Stagger: the least served close now, the rest wait a tick (planned, not drawn).
            order = closing[np.argsort(credit[closing], kind="stable")]
            deferred = order[self.settings.max_closes_per_tick :]
            relay_on[deferred] = False
            setpoints = np.where(relay_on | ~lay.socket, setpoints, 0.0)
        if shed_only:  # between ticks: only ever less
            relay_on &= self.on
            setpoints = np.where(
                lay.socket,
                np.where(relay_on, setpoints, 0.0),
                np.minimum(setpoints, self.setpoint),
            )
        # Nothing reaches a device that does not answer: it keeps what it was last told, and so
        # do our books. Its bays' last plan and its pile's fail-safe mask therefore stay its
        # worst case for as long as it is silent, not just on the first tick.
        relay_on = np.where(down, self.on, relay_on)
        setpoints = np.where(down, self.setpoint, setpoints)
        changed = relay_on != self.on
        self.turns.count_pauses(self.on & ~relay_on & demand.wants)
        self.changed_at = np.where(changed, now, self.changed_at)
        self.on = relay_on
        self.setpoint = setpoints.copy()
        masks = self._masks(up, fs_on, relay_on & ~cut & ~hold, unmanaged, welded_amps)
        if shed_only:
            masks = {p: m & self.failsafe_mask.get(p, 0) for p, m in masks.items()}
        self.failsafe_mask = masks

        state = self._states(obs, demand, faulted, relay_on, cut)
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
            unmanaged_a=fixed,
            bay_state=state,
            failsafe_mask=masks,
            welded=self.welded.copy(),
            alarm=self.alarm,
            notes=notes,
            alarm_at=self.alarm_at,
            pile_alarms=dict(self.pile_alarms),
            external_caps=self.external.in_force(now),
        )

    # -- parts ---------------------------------------------------------------------------
    def _pile_alarms(self, obs: Observation, notes: list[str]) -> tuple[BoolArray, BoolArray]:
        """[B] masks: bays cut (their pile reports a supply fault) and bays that may take no
        more current (their pile's cabinet is over-temperature). Not latched: they follow the
        pile's status bits, and each change is noted once."""
        lay = self.layout
        cut = np.zeros(lay.n_bays, dtype=np.bool_)
        hold = np.zeros(lay.n_bays, dtype=np.bool_)
        for pile, kind in obs.pile_alarms.items():
            (cut if kind == PILE_CUT else hold)[lay.pile_slices[pile]] = True
        for pile in sorted(set(obs.pile_alarms) | set(self.pile_alarms)):
            was, now = self.pile_alarms.get(pile), obs.pile_alarms.get(pile)
            if was == now:
                continue
            if now == PILE_CUT:
                notes.append(f"ALARM supply_fault at {pile}: its sockets are cut")
            elif now == PILE_HOLD:
                notes.append(f"ALARM pile_overtemp at {pile}: no more current on this pile")
            else:
                notes.append(f"{was} at {pile} cleared")
        self.pile_alarms = dict(obs.pile_alarms)
        return cut, hold

    def _excess(self, obs: Observation, flowing_open: BoolArray) -> FloatArray:
        """[B]: current a bay draws beyond what it was told. A socket planned off that still
        draws (its open was not confirmed, or it is about to be called welded) counts all of
        it; a wallbox counts what its car draws above its offer."""
        lay = self.layout
        socket = np.where(flowing_open, obs.bay_current_a + self.settings.ramp_margin_a, 0.0)
        above = obs.bay_current_a - self.setpoint
        car = np.where(obs.bay_up & (above > WALLBOX_TOLERANCE_A), above, 0.0)
        return np.where(lay.socket, socket, car)

    def _offers(self, setpoints: FloatArray) -> FloatArray:
        """Wallbox setpoints as the box takes them (its template says how): 0 below its least
        offer (6 A), else rounded down to its setpoint's resolution, at most its maximum.
        Sockets are left as planned."""
        lay = self.layout
        wb = ~lay.socket
        per_a = 1.0 / np.where(wb, lay.wallbox_step_a, 1.0)  # steps per amp: 10 for 0.1 A
        offer = np.floor(np.minimum(setpoints, self.wallbox_max_a) * per_a + 1e-9) / per_a
        offer = np.where(offer < lay.wallbox_min_a, 0.0, offer)
        return np.where(wb, offer, setpoints)

    def _masks(
        self,
        up: BoolArray,
        fs_on: BoolArray,
        charging: BoolArray,
        unmanaged: FloatArray,
        welded_amps: FloatArray,
    ) -> dict[str, int]:
        """The fail-safe masks: a silent pile keeps every bit it may hold; a pile whose mask is
        not confirmed may only shrink; the budget counts the unmanaged load at the larger of
        its worst case and what the meters show, and welded relays (they stay on)."""
        lay = self.layout
        possible = {
            pile: sum(1 << k for k, on in enumerate(fs_on[sl]) if on)
            for pile, sl in lay.pile_slices.items()
        }
        held = {p: possible[p] for p, sl in lay.pile_slices.items() if not up[sl].any()}
        unsure = {p: m for p, m in possible.items() if p not in held and m != self.failsafe_mask[p]}
        budget_load = np.maximum(lay.unmanaged_worst_a, unmanaged) + circuit_load(lay, welded_amps)
        return failsafe_masks(
            lay,
            self.failsafe_cost_a,
            charging & up,
            held,
            unmanaged_a=budget_load,
            shrink_only=unsure,
        )

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
        # What a lost meter leaves behind must have shown in two samples running: one sample
        # alone may be a spike (the inrush of relays just closed, inside the meter's RMS
        # window) that a live estimate rides out but a lost meter's would keep for good.
        self._steady = np.where(
            fresh,
            np.minimum(sample, self._prev_sample),
            np.where(metered, self._steady, -np.inf),
        )
        self._prev_sample = np.where(fresh, sample, self._prev_sample)
        self._bays_prev = bays_load
        raw = self._raw_unmanaged
        # Hold the recent maximum of what meters showed: a load that steps up is believed at
        # once, one that goes away only after UNMANAGED_HOLD_S.
        held = np.maximum(_window_max(self._unmanaged_hist, now, UNMANAGED_HOLD_S, raw), 0.0)
        steady = np.maximum(
            _window_max(self._steady_hist, now, UNMANAGED_HOLD_S, self._steady), 0.0
        )
        out = np.zeros_like(lay.limit_a)
        live = np.zeros_like(lay.limit_a)
        # Children before parents: walk the topological order backwards. A circuit whose
        # meter is lost or frozen counts the larger of its worst case and what it last
        # measured (steadily): a meter that dies says nothing about the load going away.
        for c in range(lay.n_circuits - 1, -1, -1):
            children = lay.parent == c
            none = np.zeros(3)
            from_children = out[children].sum(axis=0) if children.any() else none
            live_children = live[children].sum(axis=0) if children.any() else none
            lost = np.maximum(lay.unmanaged_worst_a[c] + from_children, self._live_unmanaged[c])
            out[c] = np.where(metered[c], np.maximum(held[c], from_children), lost)
            live[c] = np.where(metered[c], np.maximum(steady[c], live_children), lost)
        self._live_unmanaged = np.where(metered, live, self._live_unmanaged)
        return out * lay.circuit_phases

    def _bounds(
        self,
        obs: Observation,
        eligible: BoolArray,
        since: FloatArray,
        hold: BoolArray,
        excess: FloatArray,
    ) -> tuple[FloatArray, FloatArray]:
        s = self.settings
        lay = self.layout
        sock = lay.socket
        measured = obs.bay_current_a + self._margin_shares(self.on & sock)
        ramping = since < RAMP_S
        on_amps = np.where(ramping, np.maximum(measured, s.socket_nominal_a), measured)
        sock_amps = np.where(self.on, on_amps, s.socket_nominal_a)
        # min_off keeps a socket off; so does a pile that may take no more current.
        may_close = self.on | ((since >= s.min_off_s) & ~hold)
        sock_ok = eligible & sock & may_close
        # A wallbox counts at what its car draws plus room to probe upward; one whose car is
        # still coming down to its offer is not raised again until it has.
        wb_ok = eligible & ~sock & obs.wallbox_plugged
        wb_max = np.minimum(
            obs.wallbox_hw_max_a,
            np.maximum(self.layout.wallbox_min_a, obs.bay_current_a + s.wallbox_probe_a),
        )
        wb_max = np.where(excess > 0, np.minimum(wb_max, self.setpoint), wb_max)
        min_a = np.where(sock, sock_amps, self.layout.wallbox_min_a)
        max_a = np.where(sock, np.where(sock_ok, sock_amps, 0.0), np.where(wb_ok, wb_max, 0.0))
        return min_a, max_a

    def _margin_shares(self, on: BoolArray) -> FloatArray:
        """[B]: each switched-on socket's share of the ramp margin of its circuit and phase.
        Chargers wander independently of each other, so n of them on one circuit-phase need
        `ramp_margin_a` x sqrt(n) together, not x n: with 34 sockets on a phase, 1.7 A held
        back rather than 10 A (measured on the evening-peak replay: the plan stood 10.8 A
        above the true current of the campus main while residents waited). What moves them
        all at once (a sag, a load step) the meters show between ticks, and that sheds."""
        lay, group = self.layout, self._margin_group
        n = np.bincount(group[on], minlength=lay.n_circuits * 3)
        share = self.settings.ramp_margin_a / np.sqrt(np.maximum(n[group], 1))
        return np.where(lay.socket, share, self.settings.ramp_margin_a)

    def _states(
        self,
        obs: Observation,
        demand: Demand,
        faulted: BoolArray,
        relay_on: BoolArray,
        cut: BoolArray,
    ) -> tuple[str, ...]:
        out = []
        for j in range(self.layout.n_bays):
            if not obs.bay_up[j] or self.alarm is not None or cut[j]:
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
