"""Lifetime energy counters must never go backwards; a driver remembers the last one it saw.

A u32 counter wraps at 2**32: the step from 2**32 - 5 to 3 is 8 Wh forward, not 4 billion
back. A step counts as forward when it is less than half the counter's range, so any real
backward step (a glitch, a reset, garbage) is caught.

After reporting a backward step the memory follows the new value: a counter that was really
reset (a replaced pile) is reported once and then followed, instead of failing forever; a
one-off glitch is reported once, and the next good value is a forward step again.

This only keeps a reading's health honest. Whether a step is billed is not decided here: a
forward jump passes this check, so the session layer judges every reading against the bay's
power and the time since its last believed one (chargectl/sessions/counterguard.py).
"""

from __future__ import annotations

from collections.abc import Mapping

from chargectl.drivers.errors import BadValue


class CounterMemory:
    def __init__(self, device: str, bits: int = 32) -> None:
        self._device = device
        self._mod = 1 << bits
        self._last: dict[int, float] = {}

    def check(self, counters: Mapping[int, int]) -> None:
        """`counters`: register -> value of unsigned wrapping counters."""
        bad: BadValue | None = None
        for reg, value in counters.items():
            last = self._last.get(reg)
            if last is not None and (value - int(last)) % self._mod >= self._mod // 2:
                bad = bad or BadValue(
                    self._device, reg, value, f"energy counter went backwards from {int(last)}"
                )
            self._last[reg] = value
        if bad is not None:
            raise bad

    def check_float(self, reg: int, value: float) -> None:
        """A counter that does not wrap (a meter's float kWh)."""
        last = self._last.get(reg)
        self._last[reg] = value
        if last is not None and value < last:
            raise BadValue(self._device, reg, value, f"energy counter went backwards from {last}")
