"""Which sockets may stay on when the controller falls silent (a pile's `failsafe_mask`).

When the watchdog expires the pile drives every relay to its mask bit, and nobody is watching
any more. So the mask must be safe on its own: for every circuit and phase, the unmanaged load
(the configured worst case, or more where the meters have just measured more) plus every
fail-safe-on socket at the most it can draw for long must stay within the limit.

The most a socket can draw for long is the pile's per-port cut-off, which acts on active power
(watts), turned into amps at the lowest supply voltage the config allows and at the worst
charger power factor: cheap e-bike chargers have no power-factor correction, so their current
is up to twice what watts over volts suggests. Wallboxes fall to a fail-safe current of 0
(paused), so they take nothing from this budget once that is confirmed.

Only sockets that are charging now are candidates (there is no point closing an idle socket
when the controller is gone), in bay order: a greedy fill, exact against the constraint.
Piles whose mask is not known (silent, or a mask write not yet confirmed) are charged first
at every bit that may be set, and may only shrink.
"""

from __future__ import annotations

import numpy as np

from chargectl.config.schema import Shed
from chargectl.control.layout import BoolArray, FloatArray, Layout

# The lowest power factor of an e-bike charger we budget for: chargers without power-factor
# correction measure 0.5-0.7 (DOMAIN.md). Not a setting: no value a config could hold may
# defeat the fail-safe budget.
WORST_POWER_FACTOR = 0.5


def failsafe_cost_a(shed: Shed, layout: Layout) -> FloatArray:
    """[B]: what each bay may draw for long once its device is in fail-safe, if on there.

    A socket: its pile's cut-off at the lowest voltage and the worst power factor. A wallbox:
    its hardware maximum (counted only while its fail-safe current of 0 is not confirmed)."""
    volts = shed.shed.lowest_voltage_v
    cost = np.zeros(layout.n_bays)
    for j, bay in enumerate(layout.bays):
        dev = shed.device(bay.device)
        if bay.is_socket:
            cost[j] = dev.port_power_limit_w / (volts * WORST_POWER_FACTOR)
        else:
            cost[j] = dev.max_current_a
    return cost


def failsafe_masks(
    layout: Layout,
    cost_a: FloatArray,
    relay_on: BoolArray,
    held: dict[str, int] | None = None,
    *,
    unmanaged_a: FloatArray | None = None,
    shrink_only: dict[str, int] | None = None,
) -> dict[str, int]:
    """The mask of every pile.

    `held`: masks that cannot change (the pile does not answer, so it keeps the last one
    written); charged to the budget first and returned as they are. `shrink_only`: piles whose
    mask is not confirmed, with every bit that may be set: charged first at those bits, and
    their new mask keeps only bits that are charging. `unmanaged_a` [C, 3]: the unmanaged load
    to budget for (default: the configured worst case)."""
    worst = layout.unmanaged_worst_a if unmanaged_a is None else unmanaged_a
    budget = layout.limit_a - worst  # [C, 3]
    keep = np.zeros(layout.n_bays, dtype=np.bool_)
    held = held or {}
    shrink_only = {p: m for p, m in (shrink_only or {}).items() if p not in held}
    for pile, mask in (held | shrink_only).items():
        for j in _bits(layout, pile, mask):
            budget[layout.under[:, j]] -= cost_a[j] * layout.bay_phases[j]
    for j in map(int, np.flatnonzero(relay_on & layout.socket)):
        if layout.bays[j].device in held or layout.bays[j].device in shrink_only:
            continue
        cost = cost_a[j] * layout.bay_phases[j]  # [3]
        rows = layout.under[:, j]
        if ((budget[rows] - cost >= -1e-9) | (cost == 0)).all():
            budget[rows] -= cost
            keep[j] = True
    for pile, mask in shrink_only.items():
        for j in _bits(layout, pile, mask):
            keep[j] = bool(relay_on[j])
    masks: dict[str, int] = {}
    for pile, sl in layout.pile_slices.items():
        if pile in held:
            masks[pile] = held[pile]
            continue
        bits = 0
        for k, on in enumerate(keep[sl]):
            if on:
                bits |= 1 << k
        masks[pile] = bits
    return masks


def mask_bits(layout: Layout, masks: dict[str, int]) -> BoolArray:
    """[B]: the bays whose bit is set in their pile's mask."""
    on = np.zeros(layout.n_bays, dtype=np.bool_)
    for pile, mask in masks.items():
        on[_bits(layout, pile, mask)] = True
    return on


def worst_case_failsafe_a(layout: Layout, cost_a: FloatArray, masks: dict[str, int]) -> FloatArray:
    """[C, 3]: what the masks allow in failsafe, plus the worst unmanaged load (for tests)."""
    on = np.where(mask_bits(layout, masks), cost_a, 0.0)
    per_bay = on[:, None] * layout.bay_phases
    return np.asarray(layout.under.astype(np.float64) @ per_bay + layout.unmanaged_worst_a)


def _bits(layout: Layout, pile: str, mask: int) -> list[int]:
    sl = layout.pile_slices[pile]
    return [sl.start + k for k in range(sl.stop - sl.start) if (mask >> k) & 1]
