"""Turns: who goes first among the bays that want current, and how often a session is paused.

Pure state kept from tick to tick by the control core (`ControlCore.turns`): each session's
admission credit (the kernel admits the least first) and its pause budget (`max_pauses`).
A session is told apart from the next on the same bay by its demand: it ends when the bay no
longer wants current or its energy so far goes down (a new session started within one tick).
"""

from __future__ import annotations

import numpy as np

from chargectl.config.schema import Shed
from chargectl.control.layout import BoolArray, FloatArray, Layout


class Turns:
    def __init__(self, shed: Shed, layout: Layout, wallbox_max_a: FloatArray) -> None:
        self.settings = shed.control
        self.socket = layout.socket
        b = layout.n_bays
        # [B] a bay's full draw, amps on all its phases, until measured (`credit`)
        wallbox_a = np.maximum(wallbox_max_a, layout.wallbox_min_a)
        full_a = np.where(layout.socket, self.settings.socket_nominal_a, wallbox_a)
        self._n_phases = layout.bay_phases.sum(axis=1)
        self._full_a = np.maximum(full_a * self._n_phases, 1e-9)
        # [B] the highest current each socket's session has drawn so far: its full draw once
        # measured; 0 while none, and again when its session ends.
        self._peak_a = np.zeros(b)
        self._served_prev = np.zeros(b)
        # [B] how often each socket's session has been paused while it wanted current
        self.pauses = np.zeros(b, dtype=np.int64)
        # Wh per amp a bay earns in `rotation_margin_s` at full draw.
        self._turn_credit = self.settings.rotation_margin_s / 3600.0 * float(shed.shed.voltage_v)

    def update(self, served_wh: FloatArray, wants: BoolArray, amps: FloatArray) -> None:
        """Once a step, before `credit` and `spent`: each session's energy so far, whether it
        wants current and what its bay draws. A new session starts with no measured draw
        and no pauses."""
        new_session = ~wants | (served_wh < self._served_prev)
        self._served_prev = served_wh.copy()
        self.pauses[new_session] = 0
        peak = np.where(new_session, 0.0, self._peak_a)
        self._peak_a = np.where(self.socket & wants, np.fmax(peak, amps), 0.0)

    def credit(self, served_wh: FloatArray, on: BoolArray) -> FloatArray:
        """[B]: each session's admission credit, its energy over its bay's full draw (amps
        on all its phases): the time it has charged at its full power, times the voltage,
        in Wh per A. So turns are shared by time, whatever each charger's power. In plain Wh
        a car at 16 A on three phases earns in ten minutes what a bike takes all night, and
        then waits behind every bike until its owner leaves (measured on the evening-peak
        replay: two cars got 3 and 17 of the 28 kWh they wanted in four to five hours).
        A socket's full draw is the most its session has drawn so far (`socket_nominal_a`
        until it has drawn any): a pile cannot lower a charger, so what it drew is its
        power. With `socket_nominal_a` for every socket, a 0.8 A charger earned a third of
        a car's credit an hour at full power, and a car that had had 1.5 h was never let on
        again (the bikes finished with less credit than it: evening-peak, 20:30-23:30, both
        cars paused while L2 and L3 had 5-15 A spare). A wallbox's full draw is its hardware
        maximum (at least its least offer) on each of its phases: the controller lowers a
        car, so what it drew says nothing. A bay that is off counts `rotation_margin_s` of
        full power more (the kernel takes no negative credit), and one that is on counts
        what it has beyond that margin at 1/`rotation_ratio`. So one waiting takes the turn
        of one that is on when it has charged less than 1/ratio of what the other has beyond
        the margin: not a relay change whenever two credits cross, and each turn of a
        session about `rotation_ratio` times as long as its last, so a session that charges
        for hours in a shortage has a few turns, not one per margin (evening-peak: with the
        margin alone, the sessions of the L1 piles had 10-16 relay changes each). A new
        arrival (nothing charged) still takes the turn of one that has had the margin:
        with the whole credit divided, arrivals on the oversubscribed replay waited 795 s
        at p95 for their first current, 8.5 s with the margin alone."""
        measured = self._peak_a * self._n_phases
        full_a = np.where(self.socket & (measured > 0.0), measured, self._full_a)
        charged = served_wh / full_a
        margin = self._turn_credit
        over = np.maximum(charged - margin, 0.0)
        on_key = np.minimum(charged, margin) + over / self.settings.rotation_ratio
        return np.where(on, on_key, charged + margin)

    def spent(self) -> BoolArray:
        """[B]: sockets whose session has had its `max_pauses`: it keeps its turn until it ends
        (the core pins it like a socket within `min_on_s`). Each pause of a session that
        charges re-enters its charger's curve (a charger restarts at constant current when
        power returns), and on evening-peak 70 of 226 pauses lasted two minutes: an arrival's
        nominal 2.5 A displaced a socket that came back once the newcomer drew 1 A."""
        return np.asarray(self.socket & (self.pauses >= self.settings.max_pauses))

    def count_pauses(self, paused: BoolArray) -> None:
        """Bays opened this step while their session still wants current."""
        self.pauses += paused & self.socket
