"""Chargers' inrush: a peak of tens of amps for a few ms per charger; pulses that start at the
same instant add up toward a breaker's magnetic band, pulses further apart do not; the RMS
meters and the breakers' thermal part see only the pulses' honest i^2 dt."""

from __future__ import annotations

import math

import numpy as np
import pytest

from chargectl.config.schema import Breaker
from chargectl.sim.devices.meter import MeterModel
from chargectl.sim.devices.pile import PileModel
from chargectl.sim.physics.breakers import BreakerBank
from chargectl.sim.physics.chargers import INRUSH_TAU_S, PROFILES
from chargectl.sim.world import World
from tests.sim_physics.sheds import f32, small_shed

SQRT2 = math.sqrt(2.0)


def pile(w: World) -> PileModel:
    m = w.models["pile"]
    assert isinstance(m, PileModel)
    return m


def world_with(
    n: int, profile: str, *, rating_a: float, curve: str = "C", ports: int = 12, base_a: float = 0.0
) -> World:
    w = World(small_shed(rating_a=rating_a, curve=curve, ports=ports, base_a=base_a))
    for p in range(1, n + 1):
        w.plug_charger(f"pile/{p}", profile, 0.3)
    return w


def closes_to_trip(peak_a: float, rating_a: float, curve_low: float, steady_a: float) -> int:
    """Simultaneous closes whose summed peak, on the steady current's peak, exceeds the
    instantaneous value of the magnetic band's low end."""
    return math.floor((SQRT2 * (curve_low * rating_a - steady_a)) / peak_a) + 1


def test_pulse_numbers_are_tens_of_amps_for_under_10_ms() -> None:
    for p in PROFILES.values():
        assert 20.0 <= p.inrush_a <= 40.0
    assert math.exp(-0.010 / INRUSH_TAU_S) < 0.002  # gone within 10 ms
    assert 3 * INRUSH_TAU_S <= 0.005  # 95 % of it over within 4.5 ms


@pytest.mark.parametrize(
    ("rating_a", "ports", "profile"),
    [(32.0, 12, "li60"), (32.0, 12, "li60-cheap"), (63.0, 20, "li60"), (63.0, 20, "li72")],
)
def test_how_many_simultaneous_closes_trip_a_c_curve_breaker(
    rating_a: float, ports: int, profile: str
) -> None:
    """One Modbus write closing n ports: n peaks at the same instant. A C breaker opens when
    their sum passes sqrt(2) x 5 x In (226 A for 32 A, 445 A for 63 A)."""
    peak = PROFILES[profile].inrush_a
    n = closes_to_trip(peak, rating_a, 5.0, 0.0)
    assert n <= ports
    expected = {(32.0, 30.0): 8, (32.0, 40.0): 6, (63.0, 30.0): 15, (63.0, 35.0): 13}
    assert n == expected[(rating_a, peak)]  # what docs/simulator.md states

    w = world_with(ports, profile, rating_a=rating_a, ports=ports)
    assert pile(w).write_holding(16, [1] * (n - 1)) is None
    assert w.advance(1.0) == []
    assert w.truth(bays=False)["circuits"]["main"]["max_inrush_a"] == [
        pytest.approx(peak * (n - 1), abs=0.1)
    ]

    w = world_with(ports, profile, rating_a=rating_a, ports=ports)
    assert pile(w).write_holding(16, [1] * n) is None
    trips = w.advance(0.1)
    assert [(t.circuit, t.cause) for t in trips] == [("main", "magnetic")]
    assert trips[0].peak_a == pytest.approx(n * peak + SQRT2 * trips[0].current_a)
    assert trips[0].current_a < 5.0  # the RMS current was nowhere near the band


def test_a_loaded_breaker_trips_on_fewer_closes() -> None:
    """20 A of other load on a C32: its peak (28.3 A) leaves room for 6 pulses of 30 A, not 7."""
    n = closes_to_trip(30.0, 32.0, 5.0, 20.0)
    assert n == 7
    for closes, tripped in ((n - 1, False), (n, True)):
        w = world_with(12, "li60", rating_a=32.0, base_a=20.0)
        w.advance(2.0)
        assert pile(w).write_holding(16, [1] * closes) is None
        trips = w.advance(0.1)
        assert bool(trips) is tripped


def test_pulses_add_only_when_they_start_together() -> None:
    """A B10 opens at 42.4 A instantaneous: one 30 A pulse holds, two at the same instant
    (60 A) trip it; 1 ms apart the second rides on 30 x exp(-1 / 1.5) = 15.4 A of the first
    (45.4 A, trips); 10 ms apart on 0.04 A of it (holds)."""

    def two_closes(gap_s: float) -> bool:
        w = world_with(2, "li60", rating_a=10.0, curve="B")
        t = [w.now]
        w.instant = lambda: t[0]
        pile(w).write_holding(16, [1])
        t[0] += gap_s
        pile(w).write_holding(17, [1])
        return bool(w.advance(0.1))

    assert two_closes(0.0)
    assert two_closes(0.001)
    assert not two_closes(0.010)
    w = world_with(1, "li60", rating_a=10.0, curve="B")
    pile(w).write_holding(16, [1])
    assert w.advance(1.0) == []


def test_closes_in_different_steps_never_add() -> None:
    w = world_with(12, "li60", rating_a=32.0)
    for p in range(12):  # one close per step: each pulse alone
        pile(w).write_holding(16 + p, [1])
        assert w.step(0.1) == []
    assert w.truth(bays=False)["circuits"]["main"]["max_inrush_a"] == [30.0]


def test_the_failsafe_closes_every_masked_port_at_one_instant() -> None:
    w = world_with(12, "li60", rating_a=32.0)
    pm = pile(w)
    assert pm.write_holding(2, [0, 0xFF]) is None  # failsafe mask: ports 1..8
    assert pm.write_holding(0, [5]) is None  # watchdog 5 s, no heartbeat follows
    trips = w.advance(6.0)
    assert [t.cause for t in trips] == ["magnetic"]
    assert trips[0].peak_a == pytest.approx(8 * 30.0 + SQRT2 * trips[0].current_a)


def test_power_returning_after_an_outage_is_one_instant_for_every_charger() -> None:
    w = world_with(12, "li60", rating_a=32.0)
    pile(w).write_holding(16, [1] * 4)
    w.advance(2.0)
    w.set_supply_voltage(0.0)
    w.advance(1.0)
    pile(w).write_holding(16 + 4, [1] * 4)  # closed during the outage: no power yet
    w.advance(1.0)
    assert w.truth(bays=False)["circuits"]["main"]["max_inrush_a"] == [120.0]
    w.set_supply_voltage(220.0)
    trips = w.advance(0.1)
    assert [t.cause for t in trips] == ["magnetic"]  # 8 x 30 A at once on a C32


def test_the_meters_rms_and_the_breaker_see_only_the_pulses_i2t() -> None:
    """A 30 A pulse decaying with tau = 1.5 ms carries 30^2 x tau / 2 = 0.675 A^2 s. In the
    meter's 0.2 s window it adds 0.675 / 0.2 = 3.4 A^2 to the mean square: a 20 A reading
    becomes 20.08 A."""
    i2t = 30.0**2 * INRUSH_TAU_S / 2.0
    w = world_with(1, "li60", rating_a=32.0, base_a=20.0)
    w.advance(3.0)
    while w._meter_s < 1.0 - 0.1 - 1e-9:  # to the last step before a refresh
        w.step(0.1)
    m = w.models["m"]
    assert isinstance(m, MeterModel)
    pile(w).write_holding(16, [1])  # the pulse lands in the window's last step
    w.step(0.1)
    charger = w.bay_truth("pile/1")["amps"]
    expected = math.sqrt((20.0**2 + (20.0 + charger) ** 2) / 2.0 + i2t / 0.2)
    assert f32(m.read_input(6, 2)) == pytest.approx(expected, rel=1e-4)
    assert f32(m.read_input(6, 2)) - math.sqrt((20.0**2 + (20.0 + charger) ** 2) / 2.0) < 0.1


def test_the_breakers_thermal_state_takes_the_pulse_as_i2t() -> None:
    b = BreakerBank(["main"], [Breaker(32.0, "C")])  # type: ignore[arg-type]
    plain = BreakerBank(["main"], [Breaker(32.0, "C")])  # type: ignore[arg-type]
    amps = np.array([[20.0, 0.0, 0.0]])
    peak = np.array([[60.0, 0.0, 0.0]])
    i2t = np.array([[2.0 * 30.0**2 * INRUSH_TAU_S, 0.0, 0.0]])  # two pulses at one instant
    assert b.step(0.1, 0.1, amps, peak, i2t) == []
    plain.step(0.1, 0.1, amps)
    extra = (i2t[0, 0] / 0.1) / 32.0**2 * (1.0 - math.exp(-0.1 / 120.0))
    assert b.theta[0, 0] - plain.theta[0, 0] == pytest.approx(extra)
    assert extra < 1e-4  # nothing a breaker notices
