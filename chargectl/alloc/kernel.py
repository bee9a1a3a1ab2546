"""The allocation kernel: numba over flat arrays, nothing else in the hot loop.

`allocate_kernel` fills setpoints[B], planned[C,3], binding[C,3] and infeasible[C,3] from the
topology arrays (see `Topology`) and the tick's values. The rules are in docs/alloc.md. The
algorithm and its cost, with N bays, R of them wallboxes (min < max), C circuits and depth D
(circuits on a root-to-leaf path, 3 or 4 in a real shed):

1. Infeasible circuit-phases, and per circuit the phases on which it or a circuit above it
   is infeasible (a bit mask, inherited down the tree): one pass in preorder, O(C).
2. Admission: sort the bays by (priority desc, credit asc, on first, id), then each bay that
   draws on no blocked phase of its circuit's mask walks its D ancestors and checks (then
   adds) its minimum on its phases, and a fixed bay (min == max) also what the bays before
   it hold (a wallbox as much of its max as had room): O(N log N + N D).
   The sort is a natural merge sort over packed keys, started from the last tick's order:
   from one tick to the next only a few credits cross, so it costs close to O(N); unrelated
   input costs O(N log N).
3. Max-min fair extra current: event-driven water filling, one priority class at a time. A
   bay's setpoint is clamp(level, min, max), so each circuit-phase's load is piecewise linear
   in the level, its slope the number of bays on it that are rising. Three event streams are
   merged in level order: a wallbox starts rising (at its min), reaches its max, or a
   circuit-phase fills. The first two are the class's wallboxes sorted by min and by max
   (O(R log R)); fills come from an indexed binary heap over the 3C circuit-phases keyed by
   the level at which each fills at its current slope. A wallbox starting, stopping or
   freezing changes the slope of its <= 3D circuit-phases; the heap is re-keyed once per
   batch of events at one level (many cars start at 6 A), O(log C) each: O(R D log C).
   A circuit-phase that fills is full for good: every wallbox of its subtree on that phase
   that is still rising or waiting freezes. The wallboxes are listed in subtree order once
   per tick (O(N)), so a subtree is one slice and all scans together cost O(R D).
   A bay's setpoint is clamp(level it froze at, min, max); a socket (min == max) never moves.
4. Planned load per circuit: per-circuit sums accumulated children-to-parents, O(N + C).

Total O(N log N + N D + R D log C + C), and about O(N D + R D log C) from tick to tick.
Lower classes wait at their minimum (already counted by admission) while a higher class
fills; a circuit-phase that is full stays full, so later classes freeze on it at once.

Workspace arrays are passed in (allocated once per topology) so a tick allocates nothing;
iwork[:B] carries the admission order from one tick to the next. The code follows the rules,
not reference.py, which computes the same thing the slow, obvious way.
"""

# numba functions take their arrays positionally (no keyword-only arguments in nopython code).
# ruff: noqa: PLR0917

from __future__ import annotations

import numpy as np
from numba import njit

# numba reads module globals as compile-time constants.
from chargectl.alloc.problem import BIND_TOL_A, FIT_EPS_A, PRIORITY_LIMIT

# Bay states during water filling.
IDLE = 0  # not admitted
WAITING = 1  # admitted with min < max, level below its min (or a class not yet filled)
RISING = 2
DONE = 3  # reached its max
FROZEN = 4  # a circuit-phase it draws on is full
FIXED = 5  # admitted with min == max (a socket): no level moves it

# Error codes of `check_values` (what, index).
ERR_NONE = 0
ERR_LIMIT = 1
ERR_UNMANAGED = 2
ERR_MIN = 3
ERR_MAX = 4
ERR_CREDIT = 5
ERR_PRIORITY = 6

# Layout of the integer and float workspaces (offsets in units of B or C).
# iwork[:B] is the admission order, kept from tick to tick (a permutation; arange at first).
INT_WORK_B = 7  # order, sort keys and their temporary, starts, stops, state, run bounds (+1)
# heap items, heap positions, dirty list, dirty flags (3C each), blocked phase masks, riser
# ranges (C each)
INT_WORK_C = 3 * 4 + 3
INT_WORK_EXTRA = 1
FLOAT_WORK_B = 3  # level, sort values and their temporary
FLOAT_WORK_C = 3 * 6  # used, val, lref, slope, heap keys, held (3C each)


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
        elif priority[j] < 0 or priority[j] >= PRIORITY_LIMIT:
            err[0] = ERR_PRIORITY
        if err[0] != ERR_NONE:
            err[1] = j
            return


# Sort keys: a bay (or event) is (hi, x, lo) compared in that order, with hi and lo packed in
# one int64 `k` as hi << 32 | lo (hi, lo < 2**31), so equal hi means comparing k compares lo.
# The merge sort moves the keys themselves, not indices into per-bay arrays: its memory
# access stays sequential, which at 20,000 bays is several times faster than indirect keys.
LO_BITS = 32


@njit(cache=True, inline="always")
def _key_before(ka, xa, kb, xb):
    ha = ka >> LO_BITS
    hb = kb >> LO_BITS
    if ha != hb:
        return ha < hb
    if xa != xb:
        return xa < xb
    return ka < kb


MIN_RUN = 16  # runs shorter than this are extended by insertion sort


@njit(cache=True)
def _merge(sk, sx, dk, dx, lo, mid, hi):
    """Merge the sorted runs [lo, mid) and [mid, hi) of sk, sx into dk, dx."""
    i = lo
    m = mid
    o = lo
    while i < mid and m < hi:
        if _key_before(sk[m], sx[m], sk[i], sx[i]):
            dk[o] = sk[m]
            dx[o] = sx[m]
            m += 1
        else:
            dk[o] = sk[i]
            dx[o] = sx[i]
            i += 1
        o += 1
    while i < mid:
        dk[o] = sk[i]
        dx[o] = sx[i]
        i += 1
        o += 1
    while m < hi:
        dk[o] = sk[m]
        dx[o] = sx[m]
        m += 1
        o += 1


@njit(cache=True)
def _sort_keys(k, x, n, tk, tx, bounds):
    """Sort k[:n], x[:n] together by _key_before (keys are distinct: lo is unique).

    A natural merge sort: the ascending runs already in the input are kept (short ones are
    extended by insertion sort), then merged pairwise, ping-ponging with tk, tx. Input that
    is nearly sorted, such as the last tick's order with a few credits changed, costs close
    to O(n); random input O(n log n). `bounds` holds run starts (n + 1 entries)."""
    runs = 0
    i = 0
    while i < n:
        bounds[runs] = i
        runs += 1
        end = i + 1
        while end < n and _key_before(k[end - 1], x[end - 1], k[end], x[end]):
            end += 1
        stop = min(i + MIN_RUN, n)
        while end < stop:
            kv = k[end]
            xv = x[end]
            m = end - 1
            while m >= i and _key_before(kv, xv, k[m], x[m]):
                k[m + 1] = k[m]
                x[m + 1] = x[m]
                m -= 1
            k[m + 1] = kv
            x[m + 1] = xv
            end += 1
        while end < n and _key_before(k[end - 1], x[end - 1], k[end], x[end]):
            end += 1
        i = end
    bounds[runs] = n
    sk, sx, dk, dx = k, x, tk, tx
    swapped = False
    while runs > 1:
        merged = 0
        for r in range(0, runs, 2):
            lo = bounds[r]
            if r + 1 < runs:
                _merge(sk, sx, dk, dx, lo, bounds[r + 1], bounds[r + 2])
            else:
                hi = bounds[r + 1]
                dk[lo:hi] = sk[lo:hi]
                dx[lo:hi] = sx[lo:hi]
            bounds[merged] = lo
            merged += 1
        bounds[merged] = n
        runs = merged
        sk, sx, dk, dx = dk, dx, sk, sx
        swapped = not swapped
    if swapped:
        k[:n] = tk[:n]
        x[:n] = tx[:n]


@njit(cache=True)
def _admission_order(order, priority, credit, on, id_rank, by_id, k, x, tk, tx, bounds):
    """Sort order[:] (on entry the last tick's order) by priority desc, credit asc, on first,
    id asc."""
    n = order.shape[0]
    for i in range(n):
        j = order[i]
        tie = id_rank[j] if on[j] else n + id_rank[j]
        k[i] = ((PRIORITY_LIMIT - 1 - priority[j]) << LO_BITS) | tie
        x[i] = credit[j] + 0.0  # -0.0 -> 0.0
    _sort_keys(k, x, n, tk, tx, bounds)
    for i in range(n):
        tie = k[i] & ((1 << LO_BITS) - 1)
        order[i] = by_id[tie - n if tie >= n else tie]


@njit(cache=True)
def _event_order(bays, n, priority, level, k, x, tk, tx, bounds):
    """bays[:n] by class (priority desc), then level asc, then index."""
    for i in range(n):
        j = bays[i]
        k[i] = ((PRIORITY_LIMIT - 1 - priority[j]) << LO_BITS) | j
        x[i] = level[j]
    _sort_keys(k, x, n, tk, tx, bounds)
    for i in range(n):
        bays[i] = k[i] & ((1 << LO_BITS) - 1)


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
def _touch(j, level, dk, bay_circuit, bay_phase, parent, val, lref, slope, dirty, is_dirty, nd):
    """Bay j starts (+1) or stops rising (-1) at `level`: bring its circuit-phases' loads to
    `level`, change their slopes and mark them for `_flush`. Returns the dirty count."""
    c = bay_circuit[j]
    while c >= 0:
        for p in range(3):
            if not bay_phase[j, p]:
                continue
            cp = 3 * c + p
            val[cp] += slope[cp] * (level - lref[cp])
            lref[cp] = level
            slope[cp] += dk
            if is_dirty[cp] == 0:
                is_dirty[cp] = 1
                dirty[nd] = cp
                nd += 1
        c = parent[c]
    return nd


@njit(cache=True)
def _flush(limit, full, val, lref, slope, dirty, is_dirty, nd, items, pos, keys, size):
    """Re-key the dirty circuit-phases in the heap: the level at which each fills at its
    slope. Many bays start at the same level (6 A), so keying once per batch of events at
    one level saves most of the heap work. Returns the heap size."""
    for i in range(nd):
        cp = dirty[i]
        is_dirty[cp] = 0
        if full[cp]:
            continue
        if slope[cp] > 0:
            room = max(0.0, limit[cp // 3, cp % 3] - val[cp])
            size = _heap_set(items, pos, keys, size, cp, lref[cp] + room / slope[cp])
        else:
            size = _heap_remove(items, pos, keys, size, cp)
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
    sk,
    sx,
    tk,
    tx,
    bounds,
    rlo,
    rhi,
    dirty,
    is_dirty,
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
        is_dirty[cp] = 0
    _event_order(starts, n_risers, priority, min_a, sk, sx, tk, tx, bounds)
    _event_order(stops, n_risers, priority, max_a, sk, sx, tk, tx, bounds)
    # Only risers can freeze, so a fill scans the risers of its subtree: list them in subtree
    # order (reusing the sort buffers) with each circuit's range, from a prefix count.
    risers = sk
    count = bounds
    count[0] = 0
    for k in range(subtree_bays.shape[0]):
        j = subtree_bays[k]
        count[k + 1] = count[k]
        if state[j] == WAITING:
            risers[count[k]] = j
            count[k + 1] += 1
    for c in range(sub_lo.shape[0]):
        rlo[c] = count[sub_lo[c]]
        rhi[c] = count[sub_hi[c]]
    size = 0
    first = 0
    while first < n_risers:
        cls = priority[starts[first]]
        end = first
        while end < n_risers and priority[starts[end]] == cls:
            end += 1
        si = first
        ti = first
        at = -1.0  # the level of the events being processed
        nd = 0
        while True:
            next_start = min_a[starts[si]] if si < end else np.inf
            next_stop = max_a[stops[ti]] if ti < end else np.inf
            if nd > 0 and min(next_start, next_stop) != at:
                size = _flush(limit, full, val, lref, slope, dirty, is_dirty, nd, items, pos,
                              keys, size)  # fmt: skip
                nd = 0
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
                for k in range(rlo[c], rhi[c]):
                    j = risers[k]
                    if not bay_phase[j, p]:
                        continue
                    if state[j] == RISING:
                        state[j] = FROZEN
                        level[j] = at
                        nd = _touch(j, at, -1.0, bay_circuit, bay_phase, parent, val, lref,
                                    slope, dirty, is_dirty, nd)  # fmt: skip
                    elif state[j] == WAITING:
                        # Below its min (this class) or a lower class: it stays at its min.
                        state[j] = FROZEN
                        level[j] = 0.0
            elif next_start <= next_stop:
                at = next_start
                j = starts[si]
                si += 1
                # A bay on a full circuit-phase was frozen when it filled, so a bay still
                # waiting here has room on every circuit-phase it draws on.
                if state[j] != WAITING:
                    continue
                state[j] = RISING
                nd = _touch(j, at, 1.0, bay_circuit, bay_phase, parent, val, lref, slope, dirty,
                            is_dirty, nd)  # fmt: skip
            else:
                at = next_stop
                j = stops[ti]
                ti += 1
                if state[j] != RISING:
                    continue
                state[j] = DONE
                nd = _touch(j, at, -1.0, bay_circuit, bay_phase, parent, val, lref, slope, dirty,
                            is_dirty, nd)  # fmt: skip
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
    by_id,
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
    err,
):
    """One tick: fills the four outputs, or, if a value is bad, only err (see check_values)."""
    check_values(has_phase, limit, unmanaged, min_a, max_a, priority, credit, err)
    if err[0] != ERR_NONE:
        return
    n_c = parent.shape[0]
    n_b = min_a.shape[0]
    order = iwork[0:n_b]
    sk = iwork[n_b : 2 * n_b]
    starts = iwork[2 * n_b : 3 * n_b]
    stops = iwork[3 * n_b : 4 * n_b]
    state = iwork[4 * n_b : 5 * n_b]
    tk = iwork[5 * n_b : 6 * n_b]
    bounds = iwork[6 * n_b : 7 * n_b + 1]
    o = INT_WORK_B * n_b + INT_WORK_EXTRA
    items = iwork[o : o + 3 * n_c]
    pos = iwork[o + 3 * n_c : o + 6 * n_c]
    blocked = iwork[o + 6 * n_c : o + 7 * n_c]
    rlo = iwork[o + 7 * n_c : o + 8 * n_c]
    rhi = iwork[o + 8 * n_c : o + 9 * n_c]
    dirty = iwork[o + 9 * n_c : o + 12 * n_c]
    is_dirty = iwork[o + 12 * n_c : o + 15 * n_c]
    level = fwork[0:n_b]
    sx = fwork[n_b : 2 * n_b]
    tx = fwork[2 * n_b : 3 * n_b]
    o = FLOAT_WORK_B * n_b
    used = fwork[o : o + 3 * n_c].reshape((n_c, 3))
    val = fwork[o + 3 * n_c : o + 6 * n_c]
    lref = fwork[o + 6 * n_c : o + 9 * n_c]
    slope = fwork[o + 9 * n_c : o + 12 * n_c]
    keys = fwork[o + 12 * n_c : o + 15 * n_c]
    held = fwork[o + 15 * n_c : o + 18 * n_c].reshape((n_c, 3))

    # Rule 4: an infeasible circuit-phase is over its limit before any bay, so nothing may be
    # added to it: blocked[c] has bit p set when phase p is infeasible at c or at a circuit
    # above it (a bay draws on the same phase all the way up). Preorder: parents first.
    for k in range(n_c):
        c = preorder[k]
        blk = blocked[parent[c]] if parent[c] >= 0 else 0
        for p in range(3):
            bad = has_phase[c, p] and unmanaged[c, p] > limit[c, p] + FIT_EPS_A
            infeasible[c, p] = bad
            if bad:
                blk |= 1 << p
            used[c, p] = unmanaged[c, p] if has_phase[c, p] else 0.0
            held[c, p] = used[c, p]
        blocked[c] = blk

    # Rule 2: admission at the minimum, in order. `used` counts the admitted bays at their
    # minimums, `held` at what each holds against a fixed bay after it (a wallbox as much of
    # its max as had room when its turn came): a fixed bay must fit both.
    _admission_order(order, priority, credit, on, id_rank, by_id, sk, sx, tk, tx, bounds)
    for j in range(n_b):
        state[j] = IDLE
        setpoints[j] = 0.0
        level[j] = np.inf
    # Gather what admission reads into admission order first: independent loads overlap,
    # and the loop below then reads sequentially (the sort's buffers are free again).
    o_min = sx
    o_max = tx
    o_circuit = sk
    o_mask = tk
    for k in range(n_b):
        j = order[k]
        o_min[k] = min_a[j]
        o_max[k] = max_a[j]
        o_circuit[k] = bay_circuit[j]
        o_mask[k] = (1 if bay_phase[j, 0] else 0) | (2 if bay_phase[j, 1] else 0)
        o_mask[k] |= 4 if bay_phase[j, 2] else 0
    n_risers = 0
    for k in range(n_b):
        m = o_min[k]
        c0 = o_circuit[k]
        mask = o_mask[k]
        # A bay on an infeasible circuit-phase is never admitted, so none rises on one either.
        if o_max[k] <= 0.0 or o_max[k] < m or (blocked[c0] & mask) != 0:
            continue
        fixed = m >= o_max[k]
        fits = True
        room = np.inf
        c = c0
        while c >= 0 and fits:
            for p in range(3):
                if (mask >> p) & 1:
                    if used[c, p] + m > limit[c, p] + FIT_EPS_A:
                        fits = False
                    room = min(room, limit[c, p] - held[c, p])
            c = parent[c]
        if not fits or (fixed and m > room + FIT_EPS_A):
            continue
        hold = max(m, min(o_max[k], room))
        c = c0
        while c >= 0:
            for p in range(3):
                if (mask >> p) & 1:
                    used[c, p] += m
                    held[c, p] += hold
            c = parent[c]
        j = order[k]
        state[j] = FIXED
        if m < o_max[k]:
            state[j] = WAITING
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
        sk,
        sx,
        tk,
        tx,
        bounds,
        rlo,
        rhi,
        dirty,
        is_dirty,
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
                # Unmanaged load is added after the bays' sums went up the tree: it already
                # includes the sub-circuits' own.
                planned[c, p] += unmanaged[c, p]
                binding[c, p] = planned[c, p] >= limit[c, p] - BIND_TOL_A
            else:
                planned[c, p] = 0.0
                binding[c, p] = False
