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
    assert follow(car, 10.0, 3.0) == pytest.approx(10.0, abs=0.1)
    assert follow(car, 32.0, 10.0) <= 16.0
    small = Car(max_a=10.0, phases=1)
    assert follow(small, 16.0, 10.0) == pytest.approx(10.0, abs=0.1)


def test_car_pauses_below_6a() -> None:
    car = Car()
    follow(car, 16.0, 10.0)
    assert follow(car, 5.9, 3.0) == 0.0
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


def test_heater_drives_socket_past_65c_over_minutes() -> None:
    th = SocketThermal(2, ambient_c=25.0)
    amps = np.array([2000.0 / 220.0, 2.3])
    t = 0.0
    while th.temp_c[0] < 65.0 and t < 3600:
        th.step(1.0, amps)
        t += 1.0
    assert 60.0 <= t <= 900.0  # minutes, not seconds and not hours
    th.step(3600.0, amps)
    assert th.temp_c[1] < 35.0  # a charger barely warms its socket


def test_hot_contact_fault() -> None:
    th = SocketThermal(1)
    th.extra_c[0] = 60.0
    th.step(3000.0, np.zeros(1))
    assert th.temp_c[0] > 65.0
