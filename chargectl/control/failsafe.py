"""Which sockets may stay on when the controller falls silent (a pile's `failsafe_mask`).

When the watchdog expires the pile drives every relay to its mask bit, and nobody is watching
any more. So the mask must be safe on its own: for every circuit and phase, the configured
worst-case unmanaged load plus every failsafe-on socket at the pile's own per-port power cut-off
(the most a socket can draw for more than 2 s) must stay within the limit. Wallboxes fall to
a failsafe current of 0 (paused), so they take nothing from this budget.

Only sockets that are charging now are candidates (there is no point closing an idle socket
when the controller is gone), in bay order: a greedy fill, exact against the constraint.
"""

from __future__ import annotations

import numpy as np

from chargectl.control.layout import BoolArray, FloatArray, Layout


def failsafe_masks(
    layout: Layout,
    port_limit_a: FloatArray,
    relay_on: BoolArray,
    held: dict[str, int] | None = None,
) -> dict[str, int]:
    """The mask of every pile. `held`: masks that cannot change (the pile does not answer, so
    it keeps the last one written); they are charged to the budget first, returned as they are."""
    budget = layout.limit_a - layout.unmanaged_worst_a  # [C, 3]
    keep = np.zeros(layout.n_bays, dtype=np.bool_)
    held = held or {}
    for pile, mask in held.items():
        sl = layout.pile_slices[pile]
        for k in range(sl.stop - sl.start):
            if (mask >> k) & 1:
                j = sl.start + k
                budget[layout.under[:, j]] -= port_limit_a[j] * layout.bay_phases[j]
    for j in np.flatnonzero(relay_on & layout.socket):
        cost = port_limit_a[j] * layout.bay_phases[j]  # [3]
        rows = layout.under[:, j]
        if ((budget[rows] - cost >= -1e-9) | (cost == 0)).all():
            budget[rows] -= cost
            keep[j] = True
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


def worst_case_failsafe_a(
    layout: Layout, port_limit_a: FloatArray, masks: dict[str, int]
) -> FloatArray:
    """[C, 3]: what the masks allow in failsafe, plus the worst unmanaged load (for tests)."""
    on = np.zeros(layout.n_bays)
    for pile, sl in layout.pile_slices.items():
        for k in range(sl.stop - sl.start):
            if (masks.get(pile, 0) >> k) & 1:
                on[sl.start + k] = port_limit_a[sl.start + k]
    per_bay = on[:, None] * layout.bay_phases
    return np.asarray(layout.under.astype(np.float64) @ per_bay + layout.unmanaged_worst_a)
