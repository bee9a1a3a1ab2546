"""Cars following the pilot, unmanaged load, socket temperature."""

from __future__ import annotations

import numpy as np
import pytest

from chargectl.sim.physics.cars import Car
from chargectl.sim.physics.load import UnmanagedLoad
from chargectl.sim.physics.thermal import SocketThermal


def follow(car: Car, offered: float, seconds: float, dt: float = 0.1) -> float:
    a = 0.0
    for _ in range(round(seconds / dt)):
        a = car.step(dt, offered, 220.0)
    return a


def test_car_follows_offer_within_seconds_and_never_above_its_max() -> None:
    car = Car(max_a=16.0, phases=3, soc=0.3)
    assert follow(car, 16.0, 10.0) == pytest.approx(16.0, abs=0.1)
    assert follow(car, 10.0, 12.0) == pytest.approx(10.0, abs=0.02)  # down: 2 s time constant
    assert follow(car, 32.0, 10.0) <= 16.0
    small = Car(max_a=10.0, phases=1)
    assert follow(small, 16.0, 10.0) == pytest.approx(10.0, abs=0.1)


def test_car_pauses_below_6a() -> None:
    car = Car()
    follow(car, 16.0, 10.0)
    assert follow(car, 5.9, 15.0) == 0.0  # 16 A x exp(-t / 2 s) under 0.05 A after 11.5 s
    assert follow(car, 6.0, 10.0) == pytest.approx(6.0, abs=0.1)


def test_car_tapers_near_full_and_stops_when_full() -> None:
    car = Car(max_a=16.0, soc=0.95, capacity_kwh=1.0)
    a = follow(car, 16.0, 5.0)
    assert 0.0 < a < 16.0
    follow(car, 16.0, 3600.0, dt=1.0)
    assert car.soc == 1.0 and car.amps == 0.0


def test_car_energy_moves_soc() -> None:
    car = Car(max_a=16.0, phases=3, soc=0.0, capacity_kwh=10.0)
    follow(car, 16.0, 3600.0, dt=1.0)
    # about 16 A x 3 x 220 V = 10.56 kW for an hour, less the first seconds of the ramp
    assert car.soc == pytest.approx(0.8, abs=0.01) or car.soc > 0.8


def test_car_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="phases"):
        Car(phases=2)


def test_unmanaged_load_is_seeded_and_wanders_around_base() -> None:
    base = np.array([[2.0, 1.0, 1.5]])
    a = UnmanagedLoad(base, np.array([0.3]), seed=7)
    b = UnmanagedLoad(base, np.array([0.3]), seed=7)
    xs = np.array([a.amps(0.1) for _ in range(20000)])
    ys = np.array([b.amps(0.1) for _ in range(20000)])
    assert np.array_equal(xs, ys)
    assert np.allclose(xs.mean(axis=0), base, atol=0.15)
    assert 0.15 < xs[:, 0, 0].std() < 0.45
    assert (xs >= 0).all()
    a.set_step(0, np.array([5.0, 0.0, 0.0]))
    assert a.amps(0.1)[0, 0] > 5.0


def test_unmanaged_load_without_noise_is_exact() -> None:
    load = UnmanagedLoad(np.array([[1.0, 0.0, 0.0]]), np.array([0.0]), seed=1)
    assert load.amps(0.1).tolist() == [[1.0, 0.0, 0.0]]


@pytest.mark.parametrize("rating", [10.0, 16.0])
def test_a_socket_rises_45k_at_its_rated_current(rating: float) -> None:
    """IEC 60884-1: at most 45 K above ambient at rated current, so k = 45 / rating^2."""
    th = SocketThermal(3, ambient_c=25.0, rating_a=rating)
    th.step(1e6, np.array([rating, rating / 2.0, 0.0]))  # long enough to settle
    assert th.temp_c.tolist() == pytest.approx([70.0, 25.0 + 45.0 / 4.0, 25.0])


def test_a_heater_alone_stays_under_65c_a_worn_contact_does_not() -> None:
    """A 2 kW heater (9.09 A at 220 V) on a healthy 10 A socket settles at 25 + 0.45 x 9.09^2
    = 62.2 C, under the pile's 65 C cut; a contact running 20 K hotter crosses it after
    300 s x ln(57.2 / 17.2) = 360 s."""
    th = SocketThermal(3, ambient_c=25.0)
    heater = 2000.0 / 220.0
    amps = np.array([heater, heater, 2.3])
    th.extra_c[1] = 20.0
    t = 0.0
    while th.temp_c[1] < 65.0:
        th.step(1.0, amps)
        t += 1.0
    settled = 25.0 + 0.45 * heater**2
    target = settled + 20.0
    assert t == pytest.approx(300.0 * np.log((target - 25.0) / (target - 65.0)), abs=1.0)
    th.step(1e6, amps)
    assert th.temp_c[0] == pytest.approx(settled) and settled < 65.0
    assert th.temp_c[2] == pytest.approx(25.0 + 0.45 * 2.3**2)  # a charger: 2.4 K


def test_hot_contact_fault() -> None:
    th = SocketThermal(1)
    th.extra_c[0] = 60.0
    th.step(3000.0, np.zeros(1))
    assert th.temp_c[0] > 65.0
