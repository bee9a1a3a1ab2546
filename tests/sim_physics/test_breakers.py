"""The breaker model against the IEC 60898-1 table (simulated time; no sleeping)."""

from __future__ import annotations

import numpy as np
import pytest

from chargectl.config.schema import Breaker
from chargectl.sim.physics.breakers import BreakerBank


def hold(bank: BreakerBank, amps: float, seconds: float, dt: float = 0.1) -> float | None:
    """Hold `amps` on phase 1 of circuit 0; the simulated time of the first trip, or None."""
    a = np.zeros((1, 3))
    a[0, 0] = amps
    t = 0.0
    for _ in range(round(seconds / dt)):
        t += dt
        if bank.step(t, dt, a):
            return t
    return None


def bank(rating: float = 32.0, curve: str = "C") -> BreakerBank:
    return BreakerBank(["main"], [Breaker(rating, curve)])  # type: ignore[arg-type]


@pytest.mark.parametrize("rating", [16.0, 32.0, 63.0])
def test_255_in_trips_within_1_to_60_s(rating: float) -> None:
    b = bank(rating)
    t = hold(b, 2.55 * rating, 120.0)
    assert t is not None and 1.0 <= t <= 60.0
    assert b.trips[0].cause == "thermal" and b.trips[0].phase == 1
    assert b.trips[0].current_a == pytest.approx(2.55 * rating)


def test_113_in_never_trips_within_the_hour() -> None:
    b = bank()
    # 1 s steps: the integration is exact for a held current, so the step size does not matter.
    assert hold(b, 1.13 * 32.0, 3600.0, dt=1.0) is None
    assert not b.trips and b.closed[0]
    assert b.ratio()[0, 0] < 1.0


def test_145_in_trips_within_the_hour() -> None:
    t = hold(bank(), 1.45 * 32.0, 3600.0, dt=1.0)
    assert t is not None and t < 3600.0


def test_step_size_does_not_move_the_trip() -> None:
    fine = hold(bank(), 2.55 * 32, 120.0, dt=0.01)
    coarse = hold(bank(), 2.55 * 32, 120.0, dt=0.1)
    assert fine is not None and coarse is not None
    assert abs(fine - coarse) <= 0.1


@pytest.mark.parametrize(("curve", "low"), [("B", 3.0), ("C", 5.0), ("D", 10.0)])
def test_magnetic_trip_at_the_low_end_of_the_curve(curve: str, low: float) -> None:
    b = bank(32.0, curve)
    assert hold(b, low * 32.0 * 0.98, 0.1) is None  # just under: not instantaneous
    b2 = bank(32.0, curve)
    t = hold(b2, low * 32.0 * 1.02, 0.1)
    assert t == pytest.approx(0.1)
    assert b2.trips[0].cause == "magnetic"


def test_trip_opens_all_poles_and_stays_open_until_reset() -> None:
    b = BreakerBank(["main", "sub"], [Breaker(63.0), Breaker(40.0)])
    a = np.array([[10.0, 10.0, 10.0], [0.0, 0.0, 300.0]])  # phase 3 of "sub" far over
    trips = b.step(0.1, 0.1, a)
    assert [(t.circuit, t.phase, t.cause) for t in trips] == [("sub", 3, "magnetic")]
    assert list(b.closed) == [True, False]
    assert b.step(0.2, 0.1, np.zeros((2, 3))) == []
    assert not b.closed[1]
    b.reset(1)
    assert b.closed[1]


def test_seconds_to_trip_predicts_the_trip() -> None:
    b = bank()
    a = np.zeros((1, 3))
    a[0, 0] = 2.0 * 32
    predicted = float(b.seconds_to_trip(a)[0, 0])
    t = hold(b, 2.0 * 32, 600.0, dt=0.1)
    assert t is not None and abs(t - predicted) <= 0.1
    assert np.isinf(bank().seconds_to_trip(np.full((1, 3), 32.0))).all()


def test_bad_parameters_are_named() -> None:
    with pytest.raises(ValueError, match="k must be between"):
        BreakerBank(["m"], [Breaker(32.0)], k=1.5)
    with pytest.raises(ValueError, match=r"circuit 'm'.*rating_a"):
        BreakerBank(["m"], [Breaker(0.0)])
