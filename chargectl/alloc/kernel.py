"""The allocation kernel: numba over flat arrays, nothing else in the hot loop.

`allocate_kernel` fills setpoints[B], planned[C,3], binding[C,3] and infeasible[C,3] from the
topology arrays (see `Topology`) and the tick's values. The rules are in docs/alloc.md; the
algorithm, with N bays, C circuits, depth D (circuits on a root-to-leaf path):

1. Infeasible circuits and the circuits below them: one pass in preorder, O(C).
2. Admission: a merge sort of the bays by (priority desc, credit asc, on first, id), then
   each bay walks its D ancestors and checks (then adds) its minimum on its phases:
   O(N log N + N D).
3. Max-min fair extra current, event-driven water filling per priority class. A bay's
   setpoint is clamp(level, min, max), so each circuit-phase's load is piecewise linear in
   the level, with slope = the number of bays on it that are rising. Three event streams
   are merged in level order: a bay starts rising (at its min), a bay reaches its max, and a
   circuit-phase fills. The first two are the class's bays sorted by min and by max
   (O(N log N)); fills come from an indexed binary heap over the 3C circuit-phases, keyed by
   the level at which each fills at its current slope. A bay starting, stopping or freezing
   changes the slope of its <= 3D circuit-phases (O(D log C) each). When a circuit-phase
   fills it is marked full for good and every rising or waiting bay in its subtree on that
   phase freezes: the subtree's bays are one slice, scanned once per circuit-phase, so all
   scans together cost O(N D). A bay's final setpoint is clamp(level it froze at, min, max).
4. Planned load per circuit: per-circuit sums accumulated children-to-parents, O(N + C).

Total O(N log N + N D log C + C): the sorts dominate; the depth of a real shed is small.
Lower classes wait at their minimum (already counted by admission) while a higher class
fills; a circuit-phase that is full stays full, so later classes freeze on it at once.

Workspace arrays are passed in (allocated once per topology) so a tick allocates nothing.
Iteration order matches the reference's definitions, not its code: see reference.py.
"""

# numba functions take their arrays positionally (no keyword-only arguments in nopython code).
# ruff: noqa: PLR0917

from __future__ import annotations

import numpy as np
from numba import njit

FIT_EPS_A = 1e-9  # keep equal to problem.FIT_EPS_A (numba reads module globals as constants)
BIND_TOL_A = 1e-6  # keep equal to problem.BIND_TOL_A

# Bay states during water filling.
IDLE = 0  # not admitted
WAITING = 1  # admitted, level below its min (or a class not yet filled)
RISING = 2
DONE = 3  # reached its max
FROZEN = 4  # a circuit-phase it draws on is full

# Error codes of `check_values` (what, index).
ERR_NONE = 0
ERR_LIMIT = 1
ERR_UNMANAGED = 2
ERR_MIN = 3
ERR_MAX = 4
ERR_CREDIT = 5
ERR_PRIORITY = 6

# Layout of the integer and float workspaces (offsets in units of B or C).
INT_WORK_B = 6  # order, tmp, starts, stops, state, (spare)
INT_WORK_C = 3 * 2 + 1  # heap items, heap positions (3C each), blocked (C)
FLOAT_WORK_B = 1  # level
FLOAT_WORK_C = 3 * 5  # used, val, lref, slope, heap keys (3C each)


@njit(cache=True)
def check_values(has_phase, limit, unmanaged, min_a, max_a, priority, credit, err):
    """Finite, non-negative values everywhere they matter; err = (code, index)."""
    err[0] = ERR_NONE
    err[1] = -1
    for c in range(has_phase.shape[0]):
        for p in range(3):
            if has_phase[c, p]:
                if not (limit[c, p] >= 0.0 and limit[c, p] < np.inf):
                    err[0] = ERR_LIMIT
                    err[1] = c
                    return
                if not (unmanaged[c, p] >= 0.0 and unmanaged[c, p] < np.inf):
                    err[0] = ERR_UNMANAGED
                    err[1] = c
                    return
    for j in range(min_a.shape[0]):
        if not (min_a[j] >= 0.0 and min_a[j] < np.inf):
            err[0] = ERR_MIN
        elif not (max_a[j] >= 0.0 and max_a[j] < np.inf):
            err[0] = ERR_MAX
        elif not (credit[j] >= 0.0 and credit[j] < np.inf):
            err[0] = ERR_CREDIT
        elif priority[j] < 0:
            err[0] = ERR_PRIORITY
        if err[0] != ERR_NONE:
            err[1] = j
            return


@njit(cache=True, inline="always")
def _admits_before(a, b, priority, credit, on, id_rank):
    """Admission order: priority desc, credit asc, on first, id asc."""
    if priority[a] != priority[b]:
        return priority[a] > priority[b]
    if credit[a] != credit[b]:
        return credit[a] < credit[b]
    if on[a] != on[b]:
        return on[a]
    return id_rank[a] < id_rank[b]


@njit(cache=True, inline="always")
def _event_before(a, b, priority, key):
    """Water-filling events: class (priority desc), then level asc, then index."""
    if priority[a] != priority[b]:
        return priority[a] > priority[b]
    if key[a] != key[b]:
        return key[a] < key[b]
    return a < b


@njit(cache=True)
def _sort_admission(idx, n, tmp, priority, credit, on, id_rank):
    """Bottom-up merge sort of idx[:n] (insertion-sorted runs of 16 first)."""
    run = 16
    for lo in range(0, n, run):
        hi = min(lo + run, n)
        for i in range(lo + 1, hi):
            x = idx[i]
            k = i - 1
            while k >= lo and _admits_before(x, idx[k], priority, credit, on, id_rank):
                idx[k + 1] = idx[k]
                k -= 1
            idx[k + 1] = x
    src = idx
    dst = tmp
    width = run
    swapped = False
    while width < n:
        for lo in range(0, n, 2 * width):
            mid = min(lo + width, n)
            hi = min(lo + 2 * width, n)
            i = lo
            k = mid
            o = lo
            while i < mid and k < hi:
                if _admits_before(src[k], src[i], priority, credit, on, id_rank):
                    dst[o] = src[k]
                    k += 1
                else:
                    dst[o] = src[i]
                    i += 1
                o += 1
            while i < mid:
                dst[o] = src[i]
                i += 1
                o += 1
            while k < hi:
                dst[o] = src[k]
                k += 1
                o += 1
        src, dst = dst, src
        swapped = not swapped
        width *= 2
    if swapped:
        idx[:n] = tmp[:n]


@njit(cache=True)
def _sort_events(idx, n, tmp, priority, key):
    """Bottom-up merge sort of idx[:n] by _event_before (insertion-sorted runs of 16 first)."""
    run = 16
    for lo in range(0, n, run):
        hi = min(lo + run, n)
        for i in range(lo + 1, hi):
            x = idx[i]
            k = i - 1
            while k >= lo and _event_before(x, idx[k], priority, key):
                idx[k + 1] = idx[k]
                k -= 1
            idx[k + 1] = x
    src = idx
    dst = tmp
    width = run
    swapped = False
    while width < n:
        for lo in range(0, n, 2 * width):
            mid = min(lo + width, n)
            hi = min(lo + 2 * width, n)
            i = lo
            k = mid
            o = lo
            while i < mid and k < hi:
                if _event_before(src[k], src[i], priority, key):
                    dst[o] = src[k]
                    k += 1
                else:
                    dst[o] = src[i]
                    i += 1
                o += 1
            while i < mid:
                dst[o] = src[i]
                i += 1
                o += 1
            while k < hi:
                dst[o] = src[k]
                k += 1
                o += 1
        src, dst = dst, src
        swapped = not swapped
        width *= 2
    if swapped:
        idx[:n] = tmp[:n]


# -- an indexed binary min-heap over circuit-phases: items[:size], pos[item] (-1: absent) ----


@njit(cache=True, inline="always")
def _heap_swap(items, pos, i, k):
    a = items[i]
    b = items[k]
    items[i] = b
    items[k] = a
    pos[b] = i
    pos[a] = k


@njit(cache=True)
def _heap_up(items, pos, keys, i):
    while i > 0:
        up = (i - 1) >> 1
        if keys[items[i]] < keys[items[up]]:
            _heap_swap(items, pos, i, up)
            i = up
        else:
            return


@njit(cache=True)
def _heap_down(items, pos, keys, size, i):
    while True:
        left = 2 * i + 1
        if left >= size:
            return
        best = left
        right = left + 1
        if right < size and keys[items[right]] < keys[items[left]]:
            best = right
        if keys[items[best]] < keys[items[i]]:
            _heap_swap(items, pos, i, best)
            i = best
        else:
            return


@njit(cache=True)
def _heap_set(items, pos, keys, size, item, key):
    """Insert item or change its key; returns the new size."""
    i = pos[item]
    if i < 0:
        keys[item] = key
        items[size] = item
        pos[item] = size
        _heap_up(items, pos, keys, size)
        return size + 1
    old = keys[item]
    keys[item] = key
    if key < old:
        _heap_up(items, pos, keys, i)
    else:
        _heap_down(items, pos, keys, size, i)
    return size


@njit(cache=True)
def _heap_remove(items, pos, keys, size, item):
    """Remove item if present; returns the new size."""
    i = pos[item]
    if i < 0:
        return size
    last = size - 1
    pos[item] = -1
    if i != last:
        moved = items[last]
        items[i] = moved
        pos[moved] = i
        _heap_down(items, pos, keys, last, i)
        _heap_up(items, pos, keys, pos[moved])
    return last


# -- water filling ---------------------------------------------------------------------


@njit(cache=True)
def _touch(
    j,
    level,
    dk,
    bay_circuit,
    bay_phase,
    parent,
    limit,
    full,
    val,
    lref,
    slope,
    items,
    pos,
    keys,
    size,
):
    """Bay j starts (+1) or stops rising (-1) at `level`: update its circuit-phases' slopes
    and fill levels. Returns the heap size."""
    c = bay_circuit[j]
    while c >= 0:
        for p in range(3):
            if not bay_phase[j, p]:
                continue
            cp = 3 * c + p
            val[cp] += slope[cp] * (level - lref[cp])
            lref[cp] = level
            slope[cp] += dk
            if full[cp]:
                continue
            if slope[cp] > 0:
                room = max(0.0, limit[c, p] - val[cp])
                size = _heap_set(items, pos, keys, size, cp, level + room / slope[cp])
            else:
                size = _heap_remove(items, pos, keys, size, cp)
        c = parent[c]
    return size


@njit(cache=True)
def _water_fill(
    parent,
    bay_circuit,
    bay_phase,
    subtree_bays,
    sub_lo,
    sub_hi,
    limit,
    min_a,
    max_a,
    priority,
    used,
    state,
    level,
    starts,
    stops,
    n_risers,
    tmp,
    items,
    pos,
    keys,
    val,
    lref,
    slope,
    full,
):
    """Fill `level` (the level each admitted bay froze at; inf: never) class by class."""
    for cp in range(val.shape[0]):
        val[cp] = used[cp // 3, cp % 3]
        lref[cp] = 0.0
        slope[cp] = 0.0
        pos[cp] = -1
        full[cp] = False
    _sort_events(starts, n_risers, tmp, priority, min_a)
    _sort_events(stops, n_risers, tmp, priority, max_a)
    size = 0
    first = 0
    while first < n_risers:
        cls = priority[starts[first]]
        end = first
        while end < n_risers and priority[starts[end]] == cls:
            end += 1
        si = first
        ti = first
        while True:
            next_start = min_a[starts[si]] if si < end else np.inf
            next_stop = max_a[stops[ti]] if ti < end else np.inf
            next_fill = keys[items[0]] if size > 0 else np.inf
            if next_start == np.inf and next_stop == np.inf and next_fill == np.inf:
                break
            if next_fill <= next_start and next_fill <= next_stop:
                at = next_fill
                cp = items[0]
                size = _heap_remove(items, pos, keys, size, cp)
                full[cp] = True
                c = cp // 3
                p = cp % 3
                for k in range(sub_lo[c], sub_hi[c]):
                    j = subtree_bays[k]
                    if not bay_phase[j, p]:
                        continue
                    if state[j] == RISING:
                        state[j] = FROZEN
                        level[j] = at
                        size = _touch(
                            j,
                            at,
                            -1.0,
                            bay_circuit,
                            bay_phase,
                            parent,
                            limit,
                            full,
                            val,
                            lref,
                            slope,
                            items,
                            pos,
                            keys,
                            size,
                        )
                    elif state[j] == WAITING:
                        # Below its min (this class) or a lower class: it stays at its min.
                        state[j] = FROZEN
                        level[j] = 0.0
            elif next_start <= next_stop:
                j = starts[si]
                si += 1
                # A bay on a full circuit-phase was frozen when it filled, so a bay still
                # waiting here has room on every circuit-phase it draws on.
                if state[j] != WAITING:
                    continue
                state[j] = RISING
                size = _touch(
                    j,
                    next_start,
                    1.0,
                    bay_circuit,
                    bay_phase,
                    parent,
                    limit,
                    full,
                    val,
                    lref,
                    slope,
                    items,
                    pos,
                    keys,
                    size,
                )
            else:
                j = stops[ti]
                ti += 1
                if state[j] != RISING:
                    continue
                state[j] = DONE
                size = _touch(
                    j,
                    next_stop,
                    -1.0,
                    bay_circuit,
                    bay_phase,
                    parent,
                    limit,
                    full,
                    val,
                    lref,
                    slope,
                    items,
                    pos,
                    keys,
                    size,
                )
        first = end


@njit(cache=True)
def allocate_kernel(
    parent,
    has_phase,
    preorder,
    sub_lo,
    sub_hi,
    bay_circuit,
    bay_phase,
    id_rank,
    subtree_bays,
    limit,
    unmanaged,
    min_a,
    max_a,
    priority,
    credit,
    on,
    setpoints,
    planned,
    binding,
    infeasible,
    iwork,
    fwork,
    full,
):
    """One tick. Values must have passed `check_values`. Fills the four outputs."""
    n_c = parent.shape[0]
    n_b = min_a.shape[0]
    order = iwork[0:n_b]
    tmp = iwork[n_b : 2 * n_b]
    starts = iwork[2 * n_b : 3 * n_b]
    stops = iwork[3 * n_b : 4 * n_b]
    state = iwork[4 * n_b : 5 * n_b]
    o = INT_WORK_B * n_b
    items = iwork[o : o + 3 * n_c]
    pos = iwork[o + 3 * n_c : o + 6 * n_c]
    blocked = iwork[o + 6 * n_c : o + 7 * n_c]
    level = fwork[0:n_b]
    o = FLOAT_WORK_B * n_b
    used = fwork[o : o + 3 * n_c].reshape((n_c, 3))
    val = fwork[o + 3 * n_c : o + 6 * n_c]
    lref = fwork[o + 6 * n_c : o + 9 * n_c]
    slope = fwork[o + 9 * n_c : o + 12 * n_c]
    keys = fwork[o + 12 * n_c : o + 15 * n_c]

    # Rule 4: infeasible circuit-phases block their whole subtree.
    for k in range(n_c):
        c = preorder[k]
        blk = parent[c] >= 0 and blocked[parent[c]] != 0
        for p in range(3):
            bad = has_phase[c, p] and unmanaged[c, p] > limit[c, p] + FIT_EPS_A
            infeasible[c, p] = bad
            blk = blk or bad
            used[c, p] = unmanaged[c, p] if has_phase[c, p] else 0.0
        blocked[c] = 1 if blk else 0

    # Rule 2: admission at the minimum, in order.
    for j in range(n_b):
        order[j] = j
    _sort_admission(order, n_b, tmp, priority, credit, on, id_rank)
    n_risers = 0
    for k in range(n_b):
        j = order[k]
        state[j] = IDLE
        setpoints[j] = 0.0
        level[j] = np.inf
        m = min_a[j]
        if max_a[j] <= 0.0 or max_a[j] < m or blocked[bay_circuit[j]] != 0:
            continue
        fits = True
        c = bay_circuit[j]
        while c >= 0 and fits:
            for p in range(3):
                if bay_phase[j, p] and used[c, p] + m > limit[c, p] + FIT_EPS_A:
                    fits = False
            c = parent[c]
        if not fits:
            continue
        c = bay_circuit[j]
        while c >= 0:
            for p in range(3):
                if bay_phase[j, p]:
                    used[c, p] += m
            c = parent[c]
        state[j] = WAITING
        if m < max_a[j]:
            starts[n_risers] = j
            stops[n_risers] = j
            n_risers += 1

    # Rule 3: max-min fair extra current.
    _water_fill(
        parent,
        bay_circuit,
        bay_phase,
        subtree_bays,
        sub_lo,
        sub_hi,
        limit,
        min_a,
        max_a,
        priority,
        used,
        state,
        level,
        starts,
        stops,
        n_risers,
        tmp,
        items,
        pos,
        keys,
        val,
        lref,
        slope,
        full,
    )

    for c in range(n_c):
        for p in range(3):
            planned[c, p] = 0.0
    for j in range(n_b):
        if state[j] != IDLE:
            x = min(max(level[j], min_a[j]), max_a[j])
            setpoints[j] = x
            c = bay_circuit[j]
            for p in range(3):
                if bay_phase[j, p]:
                    planned[c, p] += x
    # Children after parents in preorder: walking it backwards sums each subtree.
    for k in range(n_c - 1, -1, -1):
        c = preorder[k]
        if parent[c] >= 0:
            for p in range(3):
                planned[parent[c], p] += planned[c, p]
    for c in range(n_c):
        for p in range(3):
            if has_phase[c, p]:
                # The bays' own sums first, then the unmanaged load (it already includes the
                # sub-circuits', so it must not be summed up the tree).
                planned_bays = planned[c, p]
                planned[c, p] = planned_bays + unmanaged[c, p]
                binding[c, p] = planned[c, p] >= limit[c, p] - BIND_TOL_A
            else:
                planned[c, p] = 0.0
                binding[c, p] = False
