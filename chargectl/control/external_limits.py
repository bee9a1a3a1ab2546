"""Temporary caps on circuits set from above (MQTT `circuits/limit`): their bookkeeping, pure.

A central energy manager (a grid operator's demand response, the building's own peak
shaving) may lower a circuit's limit for a while: `set(circuit, limit_a, ttl_s, now)`. A cap
only ever lowers: a value above the circuit's configured `limit_a` is refused, one equal to
it clears the cap. It holds on every phase of the circuit, and ends by itself `ttl_s` after it
was set (on the injected monotonic clock, so a replay's virtual time works the same); a new
cap on the same circuit replaces the old one, whether lower or higher. A cap is kept in
memory only: a restart forgets it (the sender is expected to repeat it before it runs out).

The core applies the caps where it builds the limits it hands the kernel (`apply`), after
the breakers' thermal derating: the plan then keeps every phase of the circuit under the
cap. The configured limit stays the one overloads are judged by.

Every refusal (`LimitRefused`, `UnknownCircuit`) says what is wrong and changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from chargectl.control.layout import FloatArray

MAX_TTL_S = 24 * 3600.0  # a cap lasts at most a day: a forgotten one must not outlive the week


class LimitRefused(ValueError):
    """A cap that cannot be set as sent; the message says why, for the sender."""


class UnknownCircuit(LimitRefused):
    """No circuit of this shed has that id."""


@dataclass(frozen=True, slots=True)
class Cap:
    circuit: str
    limit_a: float  # on every phase of the circuit
    until: float  # monotonic seconds: the cap ends when `now` reaches it

    def left_s(self, now: float) -> float:
        return max(0.0, self.until - now)


class ExternalLimits:
    """Per circuit at most one cap, with its end on the monotonic clock."""

    def __init__(self, circuit_ids: Sequence[str], config_limit_a: Sequence[float]) -> None:
        if len(circuit_ids) != len(config_limit_a):
            raise ValueError("one configured limit per circuit")
        self.circuit_ids = tuple(circuit_ids)
        self.config_limit_a = tuple(float(v) for v in config_limit_a)
        self._index = {cid: c for c, cid in enumerate(self.circuit_ids)}
        self._caps: dict[int, Cap] = {}

    def set(self, circuit: object, limit_a: object, ttl_s: object, now: float) -> Cap | None:
        """Cap `circuit` at `limit_a` amperes per phase for `ttl_s` seconds from `now`; the
        cap now in force, or None when `limit_a` equals the configured limit (cleared).
        Raises `UnknownCircuit` or `LimitRefused`, having changed nothing."""
        if not isinstance(circuit, str) or circuit not in self._index:
            known = ", ".join(self.circuit_ids)
            raise UnknownCircuit(f"unknown circuit {str(circuit)[:120]!r}; known: {known}")
        c = self._index[circuit]
        config = self.config_limit_a[c]
        amps = _number(limit_a, "limit_a")
        if amps < 0:
            raise LimitRefused(f"limit_a must be at least 0 A, got {amps:g}")
        if amps > config:
            raise LimitRefused(
                f"limit_a {amps:g} A is above {circuit}'s configured limit of {config:g} A: "
                "a cap may only lower it"
            )
        ttl = _number(ttl_s, "ttl_s")
        if not 0 < ttl <= MAX_TTL_S:
            raise LimitRefused(f"ttl_s must be above 0 and at most {MAX_TTL_S:g} s, got {ttl:g}")
        if amps == config:
            self._caps.pop(c, None)
            return None
        cap = Cap(circuit, amps, now + ttl)
        self._caps[c] = cap
        return cap

    def in_force(self, now: float) -> dict[str, Cap]:
        """The caps still in force at `now`, by circuit id; those run out are forgotten."""
        for c in [c for c, cap in self._caps.items() if now >= cap.until]:
            del self._caps[c]
        return {cap.circuit: cap for cap in self._caps.values()}

    def apply(self, now: float, limit_a: FloatArray) -> FloatArray:
        """`limit_a` [C, 3] with every circuit's phases lowered to its cap in force at `now`."""
        caps = self.in_force(now)
        if not caps:
            return limit_a
        cap_a = np.full(len(self.circuit_ids), np.inf)
        for cid, cap in caps.items():
            cap_a[self._index[cid]] = cap.limit_a
        return np.minimum(limit_a, cap_a[:, None])


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        shown = "null" if value is None else type(value).__name__
        raise LimitRefused(f"{name} must be a number, got {shown}")
    if isinstance(value, int) and abs(value) > 10**9:
        raise LimitRefused(f"{name} {str(value)[:20]} is out of range")
    out = float(value)
    if not math.isfinite(out):
        raise LimitRefused(f"{name} must be a finite number, got {out}")
    return out
