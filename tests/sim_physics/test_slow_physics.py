"""What takes hours or seconds in a real shed, replayed by the world without a network:
lead-acid from empty to float, cars slow to follow a lower offer, the pile's watt cut-off on
a charger without power-factor correction."""

from __future__ import annotations

import dataclasses
import math

import pytest

from chargectl.config.schema import PluggedCar, PluggedCharger
from chargectl.sim.devices.evse import EvseModel
from chargectl.sim.devices.pile import PileModel
from chargectl.sim.physics.chargers import PROFILES
from chargectl.sim.runner import Simulator
from chargectl.sim.world import World
from tests.sim_physics.sheds import small_shed, tree_shed

LEAD = sorted(p.name for p in PROFILES.values() if p.chemistry == "lead")


def test_lead_acid_reaches_float_in_6_to_8_hours_from_empty() -> None:
    """DOMAIN.md: lead-acid reaches float in 6..8 h. Every lead profile, on one pile, from a
    state of charge of 0."""
    assert len(LEAD) >= 3
    w = World(small_shed())
    pile = w.models["pile"]
    assert isinstance(pile, PileModel)
    for port, name in enumerate(LEAD, 1):
        w.plug_charger(f"pile/{port}", name, 0.0)
    pile.write_holding(16, [1] * len(LEAD))
    floated: dict[str, float] = {}
    while len(floated) < len(LEAD) and w.now < 9 * 3600:
        w.advance(60.0)
        for port, name in enumerate(LEAD, 1):
            if name not in floated and w.bay_truth(f"pile/{port}")["stage"] == "float":
                floated[name] = w.now / 3600.0
    assert w.breakers.trips == []
    for name in LEAD:
        assert 6.0 <= floated[name] <= 8.0, (name, floated)
        # The profile's own arithmetic agrees to the minute (plus the 1.5 s ramp).
        assert floated[name] == pytest.approx(PROFILES[name].hours_to_float, abs=2 / 60)


def car_world(drop_s: float) -> tuple[World, EvseModel]:
    shed = tree_shed()
    shed = dataclasses.replace(
        shed, sim=dataclasses.replace(shed.sim, cars=(PluggedCar("wb", drop_s=drop_s),))
    )
    w = World(shed)
    evse = w.models["wb"]
    assert isinstance(evse, EvseModel)
    evse.write_holding(2, [160])
    w.advance(20.0)
    return w, evse


@pytest.mark.parametrize("drop_s", [2.0, 5.0])
def test_a_car_follows_a_lower_offer_with_its_time_constant(drop_s: float) -> None:
    w, evse = car_world(drop_s)
    assert w.truth()["wallboxes"]["wb"]["amps"][0] == pytest.approx(16.0, abs=0.01)
    evse.write_holding(2, [80])
    w.advance(5.0)
    expected = 8.0 + 8.0 * math.exp(-5.0 / drop_s)
    assert w.wallboxes["wb"].car.amps == pytest.approx(expected, rel=1e-3)  # type: ignore[union-attr]


async def test_the_plug_action_takes_drop_s_and_power_factor() -> None:
    from chargectl.sim.actions import apply

    sim = Simulator(tree_shed(), virtual=True)
    apply(sim, {"do": "plug", "bay": "wb", "drop_s": 4.0})
    apply(sim, {"do": "plug", "bay": "p-sub/1", "profile": "li48", "power_factor": 0.6})
    assert sim.world.wallboxes["wb"].car.drop_s == 4.0  # type: ignore[union-attr]
    assert sim.world.bay_truth("p-sub/1")["power_factor"] == 0.6


def test_the_piles_cut_acts_on_active_power_not_on_amps() -> None:
    """A modified charger without PFC at pf 0.55: 1900 W is 15.7 A at 220 V, far more than
    1900 / 220 = 8.6 A, and under the 2000 W cut it runs on; at 2100 W the pile cuts it after
    2 s. port_power reads watts, port_current the true RMS amps."""
    shed = small_shed()
    chargers = (PluggedCharger("pile/1", "li48", 0.3, power_factor=0.55),)
    w = World(dataclasses.replace(shed, sim=dataclasses.replace(shed.sim, chargers=chargers)))
    pile = w.models["pile"]
    assert isinstance(pile, PileModel)
    w.chargers.full_w[0] = 1900.0  # the modification: it asks for 1900 W in CC
    pile.write_holding(16, [1])
    w.advance(10.0)
    amps = 1900.0 / (220.0 * 0.55)
    assert pile.read_input(200, 1) == [1900]
    assert pile.read_input(16, 1) == [round(amps * 1000)]
    assert pile.read_input(48, 1) == [0b11]  # closed, load present, no fault
    w.chargers.full_w[0] = w.chargers.stage_w[0] = 2100.0
    w.advance(2.0)
    assert pile.read_input(48, 1) == [0b11]  # over the limit for 2 s: not yet
    w.advance(0.2)
    state = pile.read_input(48, 1)
    assert isinstance(state, list) and state[0] >> 8 == 1  # fault 1: over-power
    assert w.bay_truth("pile/1")["amps"] == 0.0
