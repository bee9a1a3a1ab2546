"""The world: devices and physics stepped together; observed through the device registers."""

from __future__ import annotations

import numpy as np
import pytest

from chargectl.config.load import load_shed
from chargectl.sim.devices.evse import EvseModel
from chargectl.sim.devices.meter import MeterModel
from chargectl.sim.devices.pile import PileModel
from chargectl.sim.physics.chargers import PROFILES
from chargectl.sim.world import World, WorldError
from tests.sim_physics.sheds import CAMPUS, SMALL, f32, small_shed, tree_shed, u32


def pile(w: World, dev: str = "pile") -> PileModel:
    m = w.models[dev]
    assert isinstance(m, PileModel)
    return m


def close(w: World, dev: str, ports: list[int]) -> None:
    pm = pile(w, dev)
    for p in ports:
        assert pm.write_holding(16 + p - 1, [1]) is None


def test_campus_world_steps_and_charges() -> None:
    w = World(load_shed(CAMPUS))
    assert w.topo.sockets == 200 and len(w.wallboxes) == 2 and len(w.meters) == 3
    close(w, "pile-a1", [1, 2])
    close(w, "pile-b3", [7])
    evse = w.models["wb-1"]
    assert isinstance(evse, EvseModel)
    assert evse.write_holding(2, [160]) is None
    w.advance(30.0)
    t = w.truth()
    assert t["bays_charging"] == 3
    assert t["bays"]["pile-a1/1"]["stage"] == "cc" and t["bays"]["pile-a1/1"]["watts"] > 100
    assert t["bays"]["pile-a1/3"]["watts"] == 0.0  # nothing plugged
    assert t["wallboxes"]["wb-1"]["amps"] == pytest.approx([16.0] * 3, abs=0.05)
    assert not t["trips"]
    assert w.now == pytest.approx(30.0)


def test_meters_sum_their_subtree() -> None:
    w = World(tree_shed())
    close(w, "p-sub", [1, 2, 3])
    close(w, "p-main", [1])
    for bay, prof in (("p-sub/1", "li72"), ("p-sub/2", "lead48"), ("p-main/1", "li48")):
        w.plug_charger(bay, prof, 0.3)
    w.set_appliance("p-sub/3", 1000.0)
    evse = w.models["wb"]
    assert isinstance(evse, EvseModel) and evse.write_holding(2, [100]) is None
    w.advance(20.0)
    sub = w.bay_truth("p-sub/1")["amps"] + w.bay_truth("p-sub/2")["amps"]
    sub += w.bay_truth("p-sub/3")["amps"]
    main_own = w.bay_truth("p-main/1")["amps"]
    car = w.truth()["wallboxes"]["wb"]["amps"][0]
    assert car == pytest.approx(10.0, abs=0.05)
    m_sub, m_main = w.models["m-sub"], w.models["m-main"]
    assert isinstance(m_sub, MeterModel) and isinstance(m_main, MeterModel)
    w.advance(1.0)  # a meter refresh lands with these currents
    sub_regs = m_sub.read_input(0, 18)
    main_regs = m_main.read_input(0, 18)
    # Sub: L2 carries the pile, L1 and L3 only the base load.
    assert f32(sub_regs, 6) == pytest.approx(0.5, abs=1e-3)
    assert f32(sub_regs, 8) == pytest.approx(0.5 + sub, rel=1e-3)
    assert f32(sub_regs, 10) == pytest.approx(0.5, abs=1e-3)
    # Main: everything below it plus its own pile (L1), wallbox (3 phases) and base load.
    assert f32(main_regs, 6) == pytest.approx(1.0 + 0.5 + main_own + car, rel=1e-3)
    assert f32(main_regs, 8) == pytest.approx(2.0 + 0.5 + sub + car, rel=1e-3)
    assert f32(main_regs, 10) == pytest.approx(3.0 + 0.5 + car, rel=1e-3)
    assert f32(main_regs, 0) == pytest.approx(230.0)
    truth = w.truth(bays=False)["circuits"]
    assert truth["main"]["amps"][1] == pytest.approx(f32(main_regs, 8), rel=1e-4)


def test_a_meter_reports_rms_over_its_window_not_a_sample() -> None:
    """A meter reads the RMS of the last sim.meter_window_s (0.2 s) before each refresh: a
    0.1 s burst inside that window counts by its share, one earlier in the second not at all."""
    w = World(tree_shed())
    close(w, "p-sub", [1])  # on L2 of the sub-circuit
    w.advance(2.0)
    m_sub = w.models["m-sub"]
    assert isinstance(m_sub, MeterModel)

    def l2() -> float:
        return f32(m_sub.read_input(0, 18), 8)

    assert l2() == pytest.approx(0.5, abs=1e-3)  # the base load
    while w._meter_s > 1e-9:  # step to the start of a refresh period
        w.step(0.1)

    def burst_at(step: int) -> float:
        """A 0.1 s heater burst in step `step` (0..9) of the refresh period; the true amps."""
        w.advance(0.1 * step)
        w.set_appliance("p-sub/1", 2300.0)
        w.step(0.1)
        amps = float(w.truth(bays=False)["circuits"]["sub"]["amps"][1])
        w.set_appliance("p-sub/1", 0.0)
        w.advance(0.1 * (9 - step))
        return amps

    early = burst_at(3)  # outside the window: the meter never sees it
    assert early > 9.0 and l2() == pytest.approx(0.5, abs=1e-3)
    late = burst_at(9)  # the last step: half the window
    assert l2() == pytest.approx(np.sqrt(0.5 * 0.5**2 + 0.5 * late**2), rel=1e-3)
    assert l2() < late  # a sample would have caught the whole burst
    w.advance(1.0)
    assert l2() == pytest.approx(0.5, abs=1e-3)


def test_energy_counters_equal_the_integral_of_power() -> None:
    w = World(small_shed(base_a=1.0))
    close(w, "pile", [1, 2])
    w.plug_charger("pile/1", "li72", 0.1)
    w.plug_charger("pile/2", "lead48", 0.1)
    m = w.models["m"]
    assert isinstance(m, MeterModel)
    integral = np.zeros(2)
    circuit_ws = published_ws = 0.0
    dt = 0.1
    for _ in range(36000):  # one simulated hour
        before = m.updates
        w.step(dt)
        integral += w.chargers.watts[:2] * dt
        circuit_ws += float(w.circuit_watts[0, 0]) * dt
        if m.updates != before:
            published_ws = circuit_ws  # what the meter's counter must show now
    regs = pile(w).read_input(100, 4)
    # The register holds whole Wh (truncated); the truth integral is exact.
    assert u32(regs, 0) == int(integral[0] / 3600.0)
    assert u32(regs, 2) == int(integral[1] / 3600.0)
    assert integral[0] / 3600.0 > 400.0  # li72: about 490 W for the hour
    kwh = f32(m.read_input(72, 2))
    assert kwh == pytest.approx(published_ws / 3.6e6, rel=1e-6)
    assert kwh == pytest.approx((integral.sum() + 220.0 * 3600.0) / 3.6e6, rel=1e-3)


def test_plugged_while_open_starts_when_the_relay_closes() -> None:
    w = World(small_shed())
    w.plug_charger("pile/4", "li48", 0.2)
    w.advance(10.0)
    assert w.bay_truth("pile/4")["amps"] == 0.0
    close(w, "pile", [4])
    w.step(0.1)
    first = w.bay_truth("pile/4")["amps"]
    w.advance(3.0)
    steady = w.bay_truth("pile/4")["amps"]
    # The inrush is a 25 A peak of a few ms, seen by the breaker, not in the socket's RMS;
    # then the charger ramps to its full current over 1.5 s.
    assert w.truth(bays=False)["circuits"]["main"]["max_inrush_a"] == [25.0]
    assert first == pytest.approx(steady * 0.1 / 1.5, abs=1e-4)
    assert steady == pytest.approx(PROFILES["li48"].full_w / 0.95 / 220.0, abs=1e-4)
    assert pile(w).read_input(16 + 3, 1) == [round(steady * 1000)]


def test_overload_trips_the_breaker_and_everything_below_loses_power() -> None:
    w = World(small_shed(rating_a=32.0))
    close(w, "pile", list(range(1, 13)))
    for p in range(1, 13):
        w.set_appliance(f"pile/{p}", 1500.0)  # 12 x 6.8 A = 82 A = 2.56 In
    trips = w.advance(120.0)
    assert len(trips) == 1
    trip = trips[0]
    assert trip.circuit == "main" and trip.cause == "thermal" and trip.phase == 1
    assert 1.0 <= trip.time <= 60.0
    assert trip.current_a == pytest.approx(12 * 1500.0 / 220.0, rel=1e-6)
    t = w.truth()
    assert t["trips"] == [trip.as_dict()]
    assert not t["circuits"]["main"]["powered"] and t["circuits"]["main"]["amps"] == [0.0]
    assert not w.device_powered("pile")
    assert w.device_powered("m")  # on the line side of the breaker it measures
    w.advance(10.0)
    assert len(w.breakers.trips) == 1  # stays open, nothing new to record
    pile(w).write_holding(0, [10])  # a watchdog the controller had set before the trip
    w.reset_breaker("main")
    w.step(0.1)
    # Power back: the pile reboots with every relay open and its holding registers at their
    # defaults, so nothing comes back on until a controller closes it again.
    assert w.device_powered("pile")
    assert pile(w).read_holding(0, 1) == [0]
    assert pile(w).read_holding(16, 12) == [0] * 12
    assert w.truth(bays=False)["circuits"]["main"]["amps"][0] < 1.0
    close(w, "pile", [1])
    w.advance(3.0)
    assert w.truth(bays=False)["circuits"]["main"]["amps"][0] > 5.0  # the heater on port 1


def test_magnetic_trip_on_a_short_burst() -> None:
    w = World(small_shed(rating_a=16.0, curve="B"))
    w.set_load_step("main", [60.0])  # 3.75 In on a B curve: instantaneous
    trips = w.advance(2.0)
    assert [(t.cause, t.circuit) for t in trips] == [("magnetic", "main")]
    assert trips[0].time <= 1.0 + 1e-9  # the unmanaged load moves on the slow tick


def test_heater_overheats_the_socket_and_the_pile_cuts_it() -> None:
    """A 2 kW heater alone settles at 62 C on a 10 A socket; on a contact running 20 K hotter
    it crosses 65 C after about 6 minutes."""
    w = World(small_shed())
    close(w, "pile", [5])
    w.set_appliance("pile/5", 2000.0)
    w.advance(1800.0)
    state = pile(w).read_input(48 + 4, 1)
    assert isinstance(state, list) and state[0] >> 8 == 0
    settled = 25.0 + 0.45 * (2000.0 / 220.0) ** 2
    expected = settled - (settled - 25.0) * np.exp(-1800.0 / 300.0)
    assert w.bay_truth("pile/5")["temp_c"] == pytest.approx(expected, abs=0.01)
    w.set_socket_hot("pile/5", 20.0)
    w.advance(600.0, step_s=0.1)
    state = pile(w).read_input(48 + 4, 1)
    assert isinstance(state, list) and state[0] >> 8 == 2  # fault 2: over-temperature
    assert w.bay_truth("pile/5")["amps"] == 0.0


def test_welded_relay_keeps_drawing() -> None:
    w = World(small_shed())
    close(w, "pile", [1])
    w.plug_charger("pile/1", "li48", 0.2)
    w.set_welded("pile/1", True)
    assert pile(w).write_holding(16, [0]) is None
    w.advance(5.0)
    assert w.bay_truth("pile/1")["amps"] > 0.5
    state = pile(w).read_input(48, 1)
    assert isinstance(state, list) and state[0] >> 8 == 3


def test_car_pauses_below_6a_and_follows_the_wallbox() -> None:
    w = World(tree_shed())
    evse = w.models["wb"]
    assert isinstance(evse, EvseModel)
    w.advance(5.0)
    assert w.truth()["wallboxes"]["wb"]["amps"] == [0.0, 0.0, 0.0]  # current_limit 0: paused
    evse.write_holding(2, [160])
    w.advance(5.0)
    assert w.truth()["wallboxes"]["wb"]["amps"][0] == pytest.approx(16.0, abs=0.2)
    evse.write_holding(2, [80])
    w.advance(15.0)  # down with a 2 s time constant
    assert w.truth()["wallboxes"]["wb"]["amps"][0] == pytest.approx(8.0, abs=0.05)
    regs = evse.read_input(2, 3)
    assert isinstance(regs, list) and regs[0] == 3 and regs[2] == 800  # state C, 8.00 A


def test_unknown_names_are_errors_that_say_what() -> None:
    w = World(small_shed())
    with pytest.raises(WorldError, match="unknown socket bay 'pile/13'"):
        w.plug_charger("pile/13", "li48")
    with pytest.raises(WorldError, match="unknown charger profile"):
        w.plug_charger("pile/1", "nope")
    with pytest.raises(WorldError, match="circuit 'x'"):
        w.reset_breaker("x")
    with pytest.raises(WorldError, match="dt must be"):
        w.step(0.5)
    with pytest.raises(WorldError, match="one value per phase"):
        w.set_load_step("main", [1.0, 2.0])


def test_small_example_loads_its_chargers() -> None:
    w = World(load_shed(SMALL))
    t = w.truth()
    assert t["bays"]["pile-a/1"]["profile"] == "li48" and t["bays"]["pile-a/1"]["plugged"]
    assert t["bays"]["pile-a/2"]["profile"] == "lead48"
