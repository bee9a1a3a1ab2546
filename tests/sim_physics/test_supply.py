"""The supply voltage: a seeded wander within 198..242 V, sags, and what it does to the
chargers' current, the unmanaged load, the meters and the piles' supply_voltage register."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from chargectl.config.check import check_shed
from chargectl.config.schema import PluggedCar, PluggedCharger
from chargectl.sim.devices.meter import MeterModel
from chargectl.sim.devices.pile import PileModel
from chargectl.sim.physics.chargers import PROFILES
from chargectl.sim.physics.supply import HIGH_V, LOW_V, Supply
from chargectl.sim.world import World, WorldError
from tests.sim_physics.sheds import f32, small_shed, tree_shed


def test_the_wander_is_seeded_slow_and_kept_within_198_242() -> None:
    a, b = Supply(220.0, 6.0, 300.0, seed=3), Supply(220.0, 6.0, 300.0, seed=3)
    xs, ys = [], []
    for t in range(200_000):
        a.wander(1.0)
        b.wander(1.0)
        xs.append(a.volts(float(t)))
        ys.append(b.volts(float(t)))
    v = np.array(xs)
    assert xs == ys
    assert v.min() >= LOW_V and v.max() <= HIGH_V
    assert v.min() == LOW_V  # 6 V around 220 reaches the low end now and then
    assert v.mean() == pytest.approx(220.0, abs=1.0)
    assert 5.0 < v.std() < 7.0
    # Slow: one second moves it by sqrt(2 / 300) x 6 V = 0.5 V (standard deviation).
    assert np.diff(v).std() == pytest.approx(6.0 * math.sqrt(1 - math.exp(-2 / 300)), rel=0.05)
    assert Supply(220.0, 6.0, seed=4).volts(0.0) == 220.0  # starts on its level


def test_a_sag_ramps_holds_and_returns() -> None:
    s = Supply(220.0)
    s.start_sag(100.0, 200.0, 60.0, ramp_s=10.0)
    assert s.volts(99.0) == 220.0
    assert s.volts(105.0) == pytest.approx(210.0)
    assert s.volts(110.0) == pytest.approx(200.0)
    assert s.volts(169.9) == pytest.approx(200.0)
    assert s.volts(175.0) == pytest.approx(210.0)
    assert s.volts(180.0) == 220.0 and not s.changing
    s.set_level(170.0)  # an explicit fault level is served exactly, outside the band
    assert s.volts(200.0) == 170.0
    with pytest.raises(ValueError, match="seconds"):
        s.start_sag(0.0, 200.0, 0.0)


def test_chargers_draw_more_current_as_the_supply_sags() -> None:
    w = World(small_shed(base_a=2.0))
    pile = w.models["pile"]
    assert isinstance(pile, PileModel)
    w.plug_charger("pile/1", "li72", 0.3)
    w.set_appliance("pile/2", 1000.0)
    pile.write_holding(16, [1, 1])
    w.advance(5.0)
    p = PROFILES["li72"]
    at_220 = w.bay_truth("pile/1")["amps"]
    assert at_220 == pytest.approx(p.full_w / (220.0 * 0.95), abs=1e-4)
    w.sag(198.0, 60.0)
    w.advance(2.0)
    truth = w.truth()
    assert truth["supply_v"] == 198.0
    charger = truth["bays"]["pile/1"]
    assert charger["watts"] == pytest.approx(p.full_w, abs=0.01)  # constant power
    assert charger["amps"] == pytest.approx(p.full_w / (198.0 * 0.95), abs=1e-4)  # +11 %
    heater = truth["bays"]["pile/2"]  # resistive: P = 1000 W x (198 / 220)^2
    assert heater["watts"] == pytest.approx(1000.0 * 0.81, abs=0.01)
    assert heater["amps"] == pytest.approx(1000.0 / 220.0 * 0.9, abs=1e-4)
    assert truth["circuits"]["main"]["unmanaged_a"] == [pytest.approx(2.0 * 0.9)]
    # The pile's supply_voltage register (0.1 V) and the meter report the true voltage.
    assert pile.read_input(5, 1) == [1980]
    m = w.models["m"]
    assert isinstance(m, MeterModel)
    assert f32(m.read_input(0, 2)) == pytest.approx(198.0)
    assert pile.read_input(16, 1) == [round(p.full_w / (198.0 * 0.95) * 1000)]
    w.advance(60.0)
    assert w.truth(bays=False)["supply_v"] == 220.0  # the sag is over


def test_a_configured_wander_reaches_the_registers() -> None:
    shed = small_shed()
    shed = dataclasses.replace(shed, sim=dataclasses.replace(shed.sim, voltage_noise_v=5.0))
    w = World(shed)
    pile = w.models["pile"]
    assert isinstance(pile, PileModel)
    seen = set()
    for _ in range(120):
        w.advance(10.0)
        v = w.truth(bays=False)["supply_v"]
        assert LOW_V <= v <= HIGH_V
        assert pile.read_input(5, 1) == [round(v * 10)]
        seen.add(round(v, 1))
    assert len(seen) > 50  # it moves


def test_bad_supply_actions_are_named() -> None:
    w = World(small_shed())
    with pytest.raises(WorldError, match=r"0\.\.300"):
        w.set_supply_voltage(400.0)
    with pytest.raises(WorldError, match="sag"):
        w.sag(200.0, -1.0)


def test_config_checks_the_new_sim_fields() -> None:
    shed = tree_shed()
    bad = dataclasses.replace(
        shed,
        sim=dataclasses.replace(
            shed.sim,
            voltage_noise_v=-1.0,
            socket_rating_a=0.0,
            chargers=(PluggedCharger("p-sub/1", "li48", 0.2, power_factor=0.3),),
            cars=(PluggedCar("wb", drop_s=6.0),),
        ),
    )
    problems = {p.path: p.message for p in check_shed(bad)}
    assert "0..20" in problems["sim.voltage_noise_v"]
    assert "> 0" in problems["sim.socket_rating_a"]
    assert "0.5..0.99" in problems["sim.chargers[0].power_factor"]
    assert "<= 5" in problems["sim.cars[0].drop_s"]
