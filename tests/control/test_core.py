"""The pure tick core with the real kernel: every decision checked against the rules."""

from __future__ import annotations

import numpy as np
import pytest

from chargectl.config.schema import ControlSettings
from chargectl.control.allocation import make_allocator
from chargectl.control.core import ControlCore
from chargectl.control.failsafe import worst_case_failsafe_a
from chargectl.control.layout import build_layout, circuit_load
from chargectl.control.observe import FAULT_OVER_POWER, FAULT_WELDED, Demand, Observation
from tests.control.sheds import two_row_shed

TICK = 1.0


def make(**kw):  # type: ignore[no-untyped-def]
    shed = two_row_shed(**kw)
    lay = build_layout(shed)
    core = ControlCore(shed, lay, make_allocator(lay))
    obs = Observation.empty(lay)
    obs.bay_up[:] = True
    obs.meter_a[0] = [0.0, np.nan, np.nan] if shed.shed.phases == 1 else 0.0
    return shed, lay, core, obs


def want(lay, bays):  # type: ignore[no-untyped-def]
    d = Demand.none(lay)
    for b in bays:
        d.wants[lay.bay_index[b]] = True
    return d


def physical(lay, core, obs, amps_each: float, unmanaged: float = 0.0) -> None:  # type: ignore[no-untyped-def]
    """Sockets that are on draw `amps_each`; the meter sees bays plus unmanaged."""
    obs.bay_current_a[:] = np.where(core.on & lay.socket, amps_each, 0.0)
    load = circuit_load(lay, obs.bay_current_a)
    obs.meter_a[0, 0] = load[0, 0] + unmanaged


def test_plan_stays_under_every_limit_and_fills_rows() -> None:
    _shed, lay, core, obs = make(ports=8, row_limit=16.0, main_limit=30.0)
    demand = want(lay, [f"pa/{i}" for i in range(1, 9)] + [f"pb/{i}" for i in range(1, 9)])
    for t in range(5):
        d = core.step(t * TICK, obs, demand)
        assert (d.planned_a <= d.limit_a + 1e-9).all()
        physical(lay, core, obs, 2.0, unmanaged=1.0)
    # row limit 16 A at 2.5 A nominal: 6 sockets per row; main 30 A minus 2 A worst... the meter
    # says 1 A unmanaged, so main admits 11 of 12 row sockets at 2.5 A
    on_a = int(core.on[lay.pile_slices["pa"]].sum())
    on_b = int(core.on[lay.pile_slices["pb"]].sum())
    assert on_a <= 6 and on_b <= 6
    assert on_a + on_b >= 10


def test_unmanaged_step_sheds_in_the_same_tick_even_when_pinned() -> None:
    shed, lay, core, obs = make(ports=8, row_limit=20.0, main_limit=20.0)
    demand = want(lay, [f"pa/{i}" for i in range(1, 9)])
    for t in range(3):
        core.step(t * TICK, obs, demand)
        physical(lay, core, obs, 2.0)
    on_before = int(core.on.sum())
    assert on_before >= 6
    # a 12 A heater appears on main: the meter sees it at once
    physical(lay, core, obs, 2.0, unmanaged=12.0)
    d = core.step(3 * TICK, obs, demand)
    assert d.overloaded[0] and d.new_overloads[0]
    # what remains on fits: 12 A unmanaged + on sockets at their measured 2 A + margin
    assert 12.0 + core.on.sum() * (2.0 + shed.control.ramp_margin_a) <= 20.0 + 1e-9
    assert int(core.on.sum()) < on_before
    # the overload event fires once per episode
    physical(lay, core, obs, 2.0, unmanaged=12.0)
    d2 = core.step(4 * TICK, obs, demand)
    assert not d2.new_overloads[0]


def test_min_off_keeps_a_shed_socket_off_and_min_on_pins() -> None:
    # The pins alone: no rotation margin (its own test below), so a turn passes at min_on.
    settings = ControlSettings(min_on_s=30.0, min_off_s=20.0, rotation_margin_s=0.0)
    _shed, lay, core, obs = make(ports=2, row_limit=2.6, main_limit=30.0, control=settings)
    demand = want(lay, ["pa/1", "pa/2"])
    core.step(0.0, obs, demand)
    first = int(np.flatnonzero(core.on)[0])
    other = lay.bay_index["pa/2"] if first == lay.bay_index["pa/1"] else lay.bay_index["pa/1"]
    # the one that is on has served more: without pinning, the other would take over
    demand.credit[first] = 50.0
    for t in range(1, 30):
        core.step(float(t), obs, demand)
        assert core.on[first], f"pinned socket switched off at t={t}"
    # after min_on the less-served one takes its turn, and the first stays off min_off
    core.step(31.0, obs, demand)
    assert core.on[other] and not core.on[first]
    demand.credit[other] = 100.0
    for t in range(32, 51):
        core.step(float(t), obs, demand)
        assert not core.on[first], f"socket closed again inside min_off at t={t}"


def test_welded_relay_is_detected_and_counted_as_fixed_load() -> None:
    _shed, lay, core, obs = make(ports=4, row_limit=10.0)
    j = lay.bay_index["pa/3"]
    obs.bay_current_a[j] = 3.0  # current through a relay never commanded closed
    demand = want(lay, ["pa/1", "pa/2", "pa/4"])
    core.step(0.0, obs, demand)
    d = core.step(1.0, obs, demand)
    assert d.welded[j] and d.bay_state[j] == "fault"
    # 10 A row - 3 A welded = 7 A: two sockets at 2.5 A, not three
    assert int(d.relay_on[lay.pile_slices["pa"]].sum()) == 2
    obs.bay_fault[lay.bay_index["pa/4"]] = FAULT_WELDED
    d = core.step(2.0, obs, demand)
    assert d.welded[lay.bay_index["pa/4"]]


def test_fault_takes_a_bay_out_and_alarm_stops_everything_until_cleared() -> None:
    shed, lay, core, obs = make(ports=4)
    demand = want(lay, ["pa/1", "pa/2", "wb"])
    obs.wallbox_plugged[lay.evse_index["wb"]] = True
    obs.wallbox_hw_max_a[lay.evse_index["wb"]] = 16.0
    obs.bay_fault[lay.bay_index["pa/2"]] = FAULT_OVER_POWER
    d = core.step(0.0, obs, demand)
    assert d.relay_on[lay.bay_index["pa/1"]] and not d.relay_on[lay.bay_index["pa/2"]]
    assert d.setpoint_a[lay.evse_index["wb"]] >= 6.0
    obs.alarm = "smoke"
    d = core.step(1.0, obs, demand)
    assert not d.relay_on.any() and d.alarm == "smoke"
    obs.alarm = None
    d = core.step(2.0, obs, demand)
    assert not d.relay_on.any(), "an alarm stays latched until staff clear it"
    core.clear_alarm()
    d = core.step(3.0, obs, demand)
    assert not d.relay_on[lay.bay_index["pa/1"]], "a socket opened by the alarm keeps min_off"
    d = core.step(1.0 + shed.control.min_off_s, obs, demand)
    assert d.relay_on[lay.bay_index["pa/1"]]


def test_wallbox_probes_upward_and_pauses_below_six() -> None:
    _shed, lay, core, obs = make(ports=1, main_limit=20.0, worst=0.0)
    w = lay.evse_index["wb"]
    obs.wallbox_plugged[w] = True
    obs.wallbox_hw_max_a[w] = 16.0
    demand = want(lay, ["wb"])
    offered = []
    for t in range(15):
        d = core.step(float(t), obs, demand)
        offered.append(float(d.setpoint_a[w]))
        obs.bay_current_a[w] = d.setpoint_a[w]  # the car takes all it is offered
        obs.meter_a[0, 0] = d.setpoint_a[w]
    assert offered[0] == pytest.approx(6.0)  # nothing drawn yet: the minimum
    assert offered == sorted(offered) and offered[-1] == pytest.approx(16.0)
    # 18 A of unmanaged load leaves 2 A: the wallbox pauses (0), it is not stopped
    obs.meter_a[0, 0] = 18.0 + obs.bay_current_a[w]
    d = core.step(20.0, obs, demand)
    assert d.setpoint_a[w] == 0.0 and d.bay_state[w] == "paused"


def test_device_down_counts_at_worst_case() -> None:
    _shed, lay, core, obs = make(ports=4, row_limit=10.0, main_limit=30.0)
    demand = want(lay, ["pa/1", "pa/2", "pb/1", "pb/2", "pb/3", "pb/4"])
    core.step(0.0, obs, demand)
    physical(lay, core, obs, 2.0)
    d = core.step(1.0, obs, demand)
    # pile b stops answering: its bays count at max(last plan, failsafe cut-off) and none of
    # them is switched by the plan
    obs.bay_up[lay.pile_slices["pb"]] = False
    d = core.step(2.0, obs, demand)
    assert all(s == "disabled" for s in d.bay_state[lay.pile_slices["pb"]])
    assert (d.planned_a <= d.limit_a + 1e-9).all()


def test_failsafe_masks_follow_charging_sockets_and_fit() -> None:
    _shed, lay, core, obs = make(ports=8, row_limit=16.0, port_power_limit_w=1000)
    demand = want(lay, [f"pa/{i}" for i in range(1, 9)])
    d = core.step(0.0, obs, demand)
    mask = d.failsafe_mask["pa"]
    on_bits = sum(1 << k for k, on in enumerate(d.relay_on[lay.pile_slices["pa"]]) if on)
    assert mask & ~on_bits == 0  # only charging sockets stay on in failsafe
    worst = worst_case_failsafe_a(lay, core.failsafe_cost_a, d.failsafe_mask)
    assert (worst <= lay.limit_a + 1e-9).all()


def test_relay_closes_are_staggered_against_inrush() -> None:
    settings = ControlSettings(max_closes_per_tick=3)
    _shed, lay, core, obs = make(ports=8, row_limit=40.0, main_limit=60.0, control=settings)
    demand = want(lay, [f"pa/{i}" for i in range(1, 9)])
    demand.credit[lay.pile_slices["pa"]] = [7, 6, 5, 4, 3, 2, 1, 0]
    d = core.step(0.0, obs, demand)
    on = [b.id for b, o in zip(lay.bays, d.relay_on, strict=True) if o]
    assert on == ["pa/6", "pa/7", "pa/8"]  # the least served first
    d = core.step(1.0, obs, demand)
    assert int(d.relay_on.sum()) == 6
    d = core.step(2.0, obs, demand)
    assert int(d.relay_on.sum()) == 8


def test_a_lagging_meter_does_not_cascade_shedding() -> None:
    """The meter shows the load of a tick ago: sockets shed this tick still appear in it next
    tick. They must not be taken for unmanaged load (which would shed more, tick after tick)."""
    settings = ControlSettings(min_on_s=0.0, min_off_s=600.0)
    _shed, lay, core, obs = make(ports=8, row_limit=20.0, main_limit=20.0, control=settings)
    demand = want(lay, [f"pa/{i}" for i in range(1, 9)])
    unmanaged = 1.0
    physical_before = unmanaged
    counts = []
    for t in range(20):
        if t == 8:
            unmanaged = 6.0  # a load steps up by 5 A
        obs.bay_current_a[:] = np.where(core.on & lay.socket, 2.0, 0.0)
        obs.meter_a[0, 0] = physical_before  # what the meter saw a tick ago
        physical_before = circuit_load(lay, obs.bay_current_a)[0, 0] + unmanaged
        core.step(float(t), obs, demand)
        counts.append(int(core.on.sum()))
    assert counts[7] == 8  # 1 A + 8 x (2.0 + 0.3 margin) fits in 20 A
    # 6 A + n x 2.3 A <= 20 A: n = 6 is the fewest to shed to; a cascade would go further
    assert min(counts[8:]) == 6 and counts[-1] == 6


def test_a_frozen_meter_counts_as_lost_after_five_seconds() -> None:
    """A meter stuck on one value while the load under it moves is not believed: after 5 s the
    circuit falls back to its configured worst-case unmanaged load, said once in the notes."""
    _shed, lay, core, obs = make(ports=4, row_limit=20.0, main_limit=30.0, worst=7.0)
    demand = want(lay, ["pa/1", "pa/2"])
    obs.meter_a[0, 0] = 3.0  # frozen here: the bays below start drawing, the meter never moves
    notes: list[str] = []
    for t in range(8):
        physical(lay, core, obs, 2.0, unmanaged=0.0)
        obs.meter_a[0, 0] = 3.0
        d = core.step(float(t), obs, demand)
        notes += d.notes
        if t <= 5:
            assert d.unmanaged_a[0, 0] < 7.0, f"t={t}: believed while it may still be live"
    assert d.unmanaged_a[0, 0] == 7.0  # the worst case, not 3 A minus the bays
    assert [n for n in notes if "frozen" in n] == [
        "meter of main frozen on a stale value: worst case"
    ]
    obs.meter_a[0, 0] = 4.1  # it moves again: believed again
    d = core.step(9.0, obs, demand)
    assert d.unmanaged_a[0, 0] < 7.0


@pytest.mark.parametrize("n", [1, 4, 16])
def test_sockets_on_one_phase_share_the_ramp_margin_as_its_square_root(n: int) -> None:
    # Chargers wander independently: n of them on one circuit-phase hold back
    # ramp_margin_a x sqrt(n) together (a lone socket its whole margin), not n margins.
    _shed, lay, core, obs = make(ports=16, row_limit=60.0, main_limit=100.0)
    demand = want(lay, [f"pa/{i}" for i in range(1, n + 1)])
    for t in range(12):  # past the staggered closes and the ramp's nominal current
        d = core.step(float(t), obs, demand)
        physical(lay, core, obs, 1.0)
    assert int(core.on.sum()) == n
    row = lay.circuit_ids.index("row-a")
    margin = core.settings.ramp_margin_a
    assert d.planned_a[row, 0] == pytest.approx(n * 1.0 + margin * np.sqrt(n))


@pytest.mark.parametrize(
    ("car_wh", "car_first"),
    [(2000.0, True), (5000.0, False)],
)
def test_a_car_is_ranked_by_its_energy_per_amp_of_full_draw(car_wh: float, car_first: bool) -> None:
    # Main's L1 holds 12 A: a car's 6 A minimum and two sockets at 2.5 A, or three sockets.
    # Each socket took 200 Wh (80 Wh per amp of its 2.5 A); the car 2,000 Wh at 16 A on three
    # phases is 42 Wh per amp and goes first, 5,000 Wh is 104 and waits. In plain Wh the car
    # would wait behind every socket either way.
    _shed, lay, core, obs = make(phases=3, ports=3, main_limit=12.0, worst=0.0)
    wb = lay.evse_index["wb"]
    obs.wallbox_plugged[wb] = True
    obs.wallbox_hw_max_a[wb] = 16.0
    demand = want(lay, ["pa/1", "pa/2", "pa/3", "wb"])
    demand.credit[lay.pile_slices["pa"]] = 200.0
    demand.credit[wb] = car_wh
    d = core.step(0.0, obs, demand)
    assert (d.planned_a <= d.limit_a + 1e-9).all()
    sockets_on = int(d.relay_on[lay.pile_slices["pa"]].sum())
    if car_first:
        assert d.setpoint_a[wb] >= lay.wallbox_min_a[wb] and sockets_on == 2
    else:
        assert d.setpoint_a[wb] == 0.0 and sockets_on == 3


def _one_of_two_on(settings: ControlSettings):  # type: ignore[no-untyped-def]
    """Two sockets wanting current on a row that fits one: pa/1 (less credit) is on."""
    _shed, lay, core, obs = make(ports=2, row_limit=2.6, main_limit=30.0, control=settings)
    demand = want(lay, ["pa/1", "pa/2"])
    first, other = lay.bay_index["pa/1"], lay.bay_index["pa/2"]
    demand.credit[other] = 1.0
    core.step(0.0, obs, demand)
    assert core.on[first] and not core.on[other]
    return core, obs, demand, first, other


def test_rotation_margin_keeps_a_turn_until_one_waiting_has_charged_that_much_less() -> None:
    # One socket fits the row. 1,800 s at full draw on 220 V is 110 Wh per amp, 275 Wh for a
    # socket at its nominal 2.5 A: the one waiting takes the turn only below that.
    settings = ControlSettings(
        min_on_s=0.0, min_off_s=0.0, rotation_margin_s=1800.0, rotation_ratio=1.0
    )
    core, obs, demand, first, other = _one_of_two_on(settings)
    demand.credit[first] = 300.0
    demand.credit[other] = 100.0  # 200 Wh less: not enough
    for t in range(1, 5):
        core.step(float(t), obs, demand)
        assert core.on[first] and not core.on[other], t
    demand.credit[other] = 20.0  # 280 Wh less: its turn
    core.step(5.0, obs, demand)
    assert core.on[other] and not core.on[first]
    # and the new holder keeps it the same way
    demand.credit[first] = 300.0
    demand.credit[other] = 100.0
    core.step(6.0, obs, demand)
    assert core.on[other] and not core.on[first]


def _car_behind_measured_sockets(drawn_a: float):  # type: ignore[no-untyped-def]
    """Three sockets that have each charged 400 Wh drawing `drawn_a` (0: never measured), and a
    car that has had 9,000 Wh at 16 A on three phases (188 Wh per amp); main's L1 holds 8 A."""
    settings = ControlSettings(min_on_s=0.0, min_off_s=0.0, rotation_margin_s=0.0)
    _shed, lay, core, obs = make(phases=3, ports=3, main_limit=8.0, worst=0.0, control=settings)
    wb = lay.evse_index["wb"]
    sockets = lay.pile_slices["pa"]
    demand = want(lay, ["pa/1", "pa/2", "pa/3"])
    core.step(0.0, obs, demand)
    assert core.on[sockets].all()
    obs.bay_current_a[sockets] = drawn_a
    obs.meter_a[0] = circuit_load(lay, obs.bay_current_a)[0]
    demand.credit[sockets] = 400.0
    core.step(1.0, obs, demand)
    obs.wallbox_plugged[wb] = True
    obs.wallbox_hw_max_a[wb] = 16.0
    demand.wants[wb] = True
    demand.credit[wb] = 9000.0
    return lay, core.step(2.0, obs, demand), wb, sockets


def test_a_socket_s_credit_is_per_amp_of_what_it_drew() -> None:
    # Drawing 1 A, the sockets' 400 Wh is 400 Wh per amp: 2.5 h at their full power against
    # the car's 0.7 h, so the car goes first. Counted at the nominal 2.5 A it was 160, and
    # the car waited behind sockets that had charged longer than it.
    lay, d, wb, sockets = _car_behind_measured_sockets(1.0)
    assert d.setpoint_a[wb] >= lay.wallbox_min_a[wb]
    assert int(d.relay_on[sockets].sum()) < 3
    lay, d, wb, sockets = _car_behind_measured_sockets(0.0)
    assert d.setpoint_a[wb] == 0.0
    assert d.relay_on[sockets].all()


def test_a_new_session_starts_with_no_measured_draw() -> None:
    # pa/1 drew 1 A in its first session; its next session, with the same 100 Wh as pa/2
    # (never measured, so 2.5 A), is ranked on 2.5 A too: equal credit, lower id first.
    settings = ControlSettings(min_on_s=0.0, min_off_s=0.0, rotation_margin_s=0.0)
    _shed, lay, core, obs = make(ports=2, row_limit=2.6, main_limit=30.0, control=settings)
    first, other = lay.bay_index["pa/1"], lay.bay_index["pa/2"]
    demand = want(lay, ["pa/1"])
    core.step(0.0, obs, demand)
    obs.bay_current_a[first] = 1.0
    demand.credit[first] = 100.0
    core.step(1.0, obs, demand)
    demand.wants[first] = False  # the session ends
    obs.bay_current_a[first] = 0.0
    core.step(2.0, obs, demand)
    demand = want(lay, ["pa/1", "pa/2"])
    demand.credit[[first, other]] = [100.0, 100.0]
    core.step(3.0, obs, demand)
    # had its 1 A been kept, its 100 Wh would be 100 Wh per amp against pa/2's 40
    assert core.on[first] and not core.on[other]


def test_rotation_ratio_keeps_a_turn_until_one_waiting_has_charged_less_than_its_share() -> None:
    # margin 0, ratio 2: pa/2 waiting takes pa/1's turn only with less than half its credit.
    settings = ControlSettings(
        min_on_s=0.0, min_off_s=0.0, rotation_margin_s=0.0, rotation_ratio=2.0
    )
    core, obs, demand, first, other = _one_of_two_on(settings)
    demand.credit[first] = 300.0
    demand.credit[other] = 160.0  # more than half: pa/1 keeps its turn
    core.step(1.0, obs, demand)
    assert core.on[first] and not core.on[other]
    demand.credit[other] = 140.0  # less than half: its turn
    core.step(2.0, obs, demand)
    assert core.on[other] and not core.on[first]
    # pa/1 now waits until pa/2 has twice its 300 Wh
    demand.credit[other] = 560.0
    core.step(3.0, obs, demand)
    assert core.on[other] and not core.on[first]
    demand.credit[other] = 620.0
    core.step(4.0, obs, demand)
    assert core.on[first] and not core.on[other]


def test_a_new_arrival_takes_a_turn_after_the_margin_whatever_the_ratio() -> None:
    # margin 1,800 s (110 Wh per amp on 220 V: 275 Wh at 2.5 A), ratio 2: the ratio divides
    # only what pa/1 has beyond the margin, so pa/2 with nothing charged gets on as soon as
    # pa/1 has had the margin, not after twice it.
    settings = ControlSettings(
        min_on_s=0.0, min_off_s=0.0, rotation_margin_s=1800.0, rotation_ratio=2.0
    )
    _shed, lay, core, obs = make(ports=2, row_limit=2.6, main_limit=30.0, control=settings)
    first, other = lay.bay_index["pa/1"], lay.bay_index["pa/2"]
    demand = want(lay, ["pa/1"])
    core.step(0.0, obs, demand)
    assert core.on[first]
    demand = want(lay, ["pa/1", "pa/2"])
    demand.credit[first] = 260.0  # less than the margin: pa/1 keeps its turn
    core.step(1.0, obs, demand)
    assert core.on[first] and not core.on[other]
    demand.credit[first] = 300.0  # more: pa/2's turn
    core.step(2.0, obs, demand)
    assert core.on[other] and not core.on[first]


def test_a_session_paused_max_pauses_times_keeps_its_turn_until_an_overload() -> None:
    settings = ControlSettings(
        min_on_s=0.0, min_off_s=0.0, rotation_margin_s=0.0, rotation_ratio=1.0, max_pauses=1
    )
    core, obs, demand, first, other = _one_of_two_on(settings)
    demand.credit[first] = 10.0
    core.step(1.0, obs, demand)  # pa/1 paused: its one pause
    assert core.on[other] and not core.on[first]
    demand.credit[other] = 20.0
    core.step(2.0, obs, demand)  # pa/2 paused: its one pause
    assert core.on[first] and not core.on[other]
    # pa/1 has had its pause: it keeps its turn however far ahead of pa/2 it gets
    demand.credit[first] = 500.0
    for t in range(3, 8):
        core.step(float(t), obs, demand)
        assert core.on[first] and not core.on[other], t
    # an overload still opens it: a 40 A load appears on the 30 A main
    obs.meter_a[0, 0] = 40.0
    d = core.step(8.0, obs, demand)
    assert d.overloaded[0] and not core.on[first]


def test_a_new_session_may_be_paused_again() -> None:
    settings = ControlSettings(
        min_on_s=0.0, min_off_s=0.0, rotation_margin_s=0.0, rotation_ratio=1.0, max_pauses=1
    )
    core, obs, demand, first, other = _one_of_two_on(settings)
    demand.credit[first] = 10.0
    core.step(1.0, obs, demand)  # pa/1's session has its one pause
    assert core.on[other] and not core.on[first]
    demand.wants[other] = False  # pa/2 leaves: pa/1 back on
    core.step(2.0, obs, demand)
    assert core.on[first]
    demand.wants[first] = False  # pa/1's session ends too
    core.step(3.0, obs, demand)
    demand.wants[[first, other]] = True  # two new sessions, nothing charged
    demand.credit[[first, other]] = 0.0
    core.step(4.0, obs, demand)
    assert core.on[first] and not core.on[other]
    demand.credit[first] = 10.0
    demand.credit[other] = 1.0
    core.step(5.0, obs, demand)  # the new session has not had its pause yet
    assert core.on[other] and not core.on[first]
