"""The peer policies on the two-row shed (main 30 A -> row-a, row-b 16 A; a wallbox on main):
what each admits, in which order, and what it does when short. Time is virtual."""

from __future__ import annotations

import numpy as np
import pytest

from chargectl.config.schema import ControlSettings
from chargectl.control.allocation import make_allocator
from chargectl.control.core import ControlCore
from chargectl.control.layout import Layout, build_layout
from chargectl.control.observe import Observation
from chargectl.replay.policies import (
    POLICIES,
    STOP_HOLD_S,
    FirstComeFirstServed,
    Policy,
    StopAll,
    make_policy,
    peer_settings,
    plan_summary,
)
from tests.control.sheds import two_row_shed, want

SOCKET_A = 2.5
Plan = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@pytest.fixture
def lay() -> Layout:
    return build_layout(two_row_shed(ports=8, main_limit=30.0, row_limit=16.0))


def call(
    policy: Policy,
    lay: Layout,
    asking: list[str],
    *,
    unmanaged_main: float = 0.0,
    limit: list[float] | None = None,
    socket_a: float = SOCKET_A,
    wallbox_max: float = 16.0,
) -> Plan:
    """One plan in the core's conventions: a socket's min == max (0 max when not asking), a
    wallbox's min 6 A and max what it may take."""
    b, c = lay.n_bays, lay.n_circuits
    limit_a = lay.limit_a.copy()
    if limit is not None:
        limit_a[:, 0] = limit
    unmanaged = np.zeros((c, 3))
    unmanaged[0, 0] = unmanaged_main
    asks = np.zeros(b, dtype=np.bool_)
    for bay in asking:
        asks[lay.bay_index[bay]] = True
    min_a = np.where(lay.socket, socket_a, lay.wallbox_min_a)
    max_a = np.where(asks, np.where(lay.socket, socket_a, wallbox_max), 0.0)
    return policy(
        limit_a,
        unmanaged,
        min_a,
        max_a,
        np.zeros(b, dtype=np.int64),
        np.zeros(b),
        np.zeros(b, dtype=np.bool_),
    )


def on_bays(lay: Layout, plan: Plan) -> set[str]:
    return {lay.bays[j].id for j in np.flatnonzero(plan[0] > 0)}


def row(prefix: str, ports: range) -> list[str]:
    return [f"{prefix}/{i}" for i in ports]


def test_the_table_names_each_policy_and_an_unknown_one_lists_them(lay: Layout) -> None:
    assert list(POLICIES) == ["uncontrolled", "fcfs", "stop-all", "equal-split"]
    for name in POLICIES:
        assert make_policy(name, lay).name == name
    with pytest.raises(ValueError, match="one of: uncontrolled, fcfs, stop-all, equal-split"):
        make_policy("chargectl-ish", lay)


# -- uncontrolled ------------------------------------------------------------------------------
def test_uncontrolled_puts_everyone_on_over_every_limit(lay: Layout) -> None:
    policy = make_policy("uncontrolled", lay)
    asking = [*row("pa", range(1, 9)), "wb"]
    setpoints, planned, binding, infeasible = call(policy, lay, asking, unmanaged_main=5.0)
    assert on_bays(lay, (setpoints, planned, binding, infeasible)) == set(asking)
    assert setpoints[lay.bay_index["wb"]] == 16.0
    assert planned[1, 0] == pytest.approx(8 * SOCKET_A)  # row-a: 20 A on a 16 A limit
    assert planned[0, 0] == pytest.approx(5.0 + 20.0 + 16.0)  # main: 41 A on 30 A
    assert binding[:, 0].tolist() == [True, True, False]
    assert not infeasible.any()


def test_uncontrolled_through_the_core_is_not_held_back_by_chargectl(lay: Layout) -> None:
    """With peer_settings, the core closes every asked relay in one tick over the row limit;
    the same core with chargectl's kernel and settings would admit 6 and stagger the closes."""
    shed = two_row_shed(ports=8, control=peer_settings(ControlSettings()))
    policy = make_policy("uncontrolled", lay)
    core = ControlCore(shed, lay, policy)
    obs = Observation.empty(lay)
    obs.bay_up[:] = True
    obs.meter_a[0] = [0.0, np.nan, np.nan]
    policy.at(0.0)
    d = core.step(0.0, obs, want(lay, row("pa", range(1, 9))))
    assert int(d.relay_on.sum()) == 8
    assert d.planned_a[1, 0] > d.limit_a[1, 0]

    own = ControlCore(two_row_shed(ports=8), lay, make_allocator(lay))
    d = own.step(0.0, obs, want(lay, row("pa", range(1, 9))))
    assert int(d.relay_on.sum()) == 6


def test_peer_settings_switch_off_the_core_protections_around_the_plan() -> None:
    s = peer_settings(ControlSettings(tick_s=2.0))
    assert (s.min_on_s, s.min_off_s, s.meter_poll_s) == (0.0, 0.0, 0.0)
    assert s.max_closes_per_tick > 10_000 and s.thermal_derate_ratio == float("inf")
    assert s.tick_s == 2.0  # the rest is left as configured


# -- fcfs --------------------------------------------------------------------------------------
def test_fcfs_admits_in_arrival_order_not_bay_order(lay: Layout) -> None:
    policy = make_policy("fcfs", lay)
    asking: list[str] = []
    for bay in ["pa/8", "pa/3", "pa/1"]:  # one tap per tick; row-a limit 5 A: two sockets
        asking.append(bay)
        plan = call(policy, lay, asking, limit=[30.0, 5.0, 16.0])
    assert on_bays(lay, plan) == {"pa/8", "pa/3"}


def test_fcfs_never_rotates_and_the_next_arrival_takes_a_freed_place(lay: Layout) -> None:
    policy = make_policy("fcfs", lay)
    assert isinstance(policy, FirstComeFirstServed)
    first, later = row("pa", range(1, 5)), row("pa", range(5, 9))
    call(policy, lay, first)
    for _ in range(50):  # row-a 16 A: 6 sockets; 7 and 8 wait however long it takes
        plan = call(policy, lay, first + later)
        assert on_bays(lay, plan) == {*first, "pa/5", "pa/6"}
    assert [lay.bays[j].id for j in policy.order()] == first + later
    rest = [b for b in first + later if b != "pa/2"]  # pa/2's session ends
    assert on_bays(lay, call(policy, lay, rest)) == {*rest} - {"pa/8"}


def test_fcfs_under_shortage_drops_the_latest_arrivals_first(lay: Layout) -> None:
    policy = make_policy("fcfs", lay)
    asking: list[str] = []
    for bay in ["pb/1", "pa/1", "pb/2", "pa/2", "pb/3", "pa/3"]:
        asking.append(bay)
        call(policy, lay, asking)
    # main 30 A less 22.5 A unmanaged leaves 7.5 A: the first three arrivals
    plan = call(policy, lay, asking, unmanaged_main=22.5)
    assert on_bays(lay, plan) == {"pb/1", "pa/1", "pb/2"}
    assert plan[1][0, 0] == pytest.approx(30.0)


def test_fcfs_gives_an_early_wallbox_all_it_takes_and_a_later_socket_fits_past_a_waiter(
    lay: Layout,
) -> None:
    policy = make_policy("fcfs", lay)
    call(policy, lay, ["wb"])
    plan = call(policy, lay, ["wb", *row("pa", range(1, 6))])
    # the wallbox came first: 16 A; the sockets share the 14 A left (5 of them: 12.5 A)
    assert plan[0][lay.bay_index["wb"]] == 16.0
    assert on_bays(lay, plan) == {"wb", *row("pa", range(1, 6))}

    policy = make_policy("fcfs", lay)
    call(policy, lay, row("pa", range(1, 6)) + row("pb", range(1, 5)))  # 22.5 A on main
    plan = call(policy, lay, ["wb", *row("pa", range(1, 6)), *row("pb", range(1, 5))])
    plan = call(policy, lay, ["wb", *row("pa", range(1, 7)), *row("pb", range(1, 5))])
    # 7.5 A left before the wallbox: it takes it all (min 6 A), and pa/6, later, finds nothing
    assert plan[0][lay.bay_index["wb"]] == pytest.approx(7.5)
    assert "pa/6" not in on_bays(lay, plan)
    # with 5 A left the wallbox cannot have its 6 A and waits; pa/6 (after it) fits
    plan = call(policy, lay, ["wb", *row("pa", range(1, 7)), *row("pb", range(1, 5))],
                unmanaged_main=2.5)  # fmt: skip
    assert plan[0][lay.bay_index["wb"]] == 0.0
    assert "pa/6" in on_bays(lay, plan)


# -- stop-all ----------------------------------------------------------------------------------
def test_stop_all_shares_equally_when_there_is_enough(lay: Layout) -> None:
    policy = make_policy("stop-all", lay)
    policy.at(0.0)
    plan = call(policy, lay, [*row("pa", range(1, 5)), "wb"], unmanaged_main=10.0)
    # main: 20 A left; four sockets at 2.5 A, the wallbox the other 10 A
    assert plan[0][lay.bay_index["wb"]] == pytest.approx(10.0)
    assert on_bays(lay, plan) == {*row("pa", range(1, 5)), "wb"}


def test_stop_all_cuts_to_the_minimum_then_stops_everyone_for_a_minute(lay: Layout) -> None:
    policy = make_policy("stop-all", lay)
    assert isinstance(policy, StopAll)
    short = row("pa", range(1, 9)) + row("pb", range(1, 3))  # row-a: 8 x 2.5 A on 16 A
    for t in (0.0, 1.0):  # short, but not yet three ticks: everyone at the minimum
        policy.at(t)
        plan = call(policy, lay, short)
        assert on_bays(lay, plan) == set(short)
        assert plan[1][1, 0] == pytest.approx(20.0)  # over row-a's 16 A
        policy.at(t)  # a second plan in the same tick does not count again
        call(policy, lay, short)
    assert policy.short_ticks.tolist() == [2]
    policy.at(2.0)
    assert on_bays(lay, call(policy, lay, short)) == set()  # third tick: all stop
    assert policy.stopped_until.tolist() == [2.0 + STOP_HOLD_S]
    for t in (3.0, 30.0, 61.0):  # held: even when the shortage is gone, even a new arrival
        policy.at(t)
        assert on_bays(lay, call(policy, lay, ["pa/1", "wb"])) == set()
    policy.at(62.0)
    assert on_bays(lay, call(policy, lay, short)) == set(short)  # all again, still short
    policy.at(63.0)
    call(policy, lay, short)
    policy.at(64.0)
    assert on_bays(lay, call(policy, lay, short)) == set()


def test_stop_all_counts_only_consecutive_short_ticks(lay: Layout) -> None:
    policy = make_policy("stop-all", lay)
    short, fits = row("pa", range(1, 9)), row("pa", range(1, 7))
    for t, asking in enumerate([short, short, fits, short, short]):
        policy.at(float(t))
        plan = call(policy, lay, asking)
    assert on_bays(lay, plan) == set(short)  # two short ticks since the one that fitted


def test_stop_all_sees_the_measured_load(lay: Layout) -> None:
    policy = make_policy("stop-all", lay)
    asking = row("pa", range(1, 4)) + row("pb", range(1, 4))  # 15 A
    for t in range(3):
        policy.at(float(t))
        plan = call(policy, lay, asking, unmanaged_main=20.0)  # 10 A left on main
    assert on_bays(lay, plan) == set()


def test_stop_all_needs_the_time(lay: Layout) -> None:
    with pytest.raises(RuntimeError, match="at"):
        call(make_policy("stop-all", lay), lay, ["pa/1"])


# -- equal-split -------------------------------------------------------------------------------
def test_equal_split_ignores_the_meter(lay: Layout) -> None:
    policy = make_policy("equal-split", lay)
    asking = row("pa", range(1, 4)) + row("pb", range(1, 4))
    plan = call(policy, lay, asking, unmanaged_main=20.0)
    assert on_bays(lay, plan) == set(asking)
    assert plan[1][0, 0] == pytest.approx(35.0)  # 20 A measured + 15 A planned on 30 A
    assert plan[2][0, 0]


def test_equal_split_shares_a_wallbox_and_sockets_and_never_rotates(lay: Layout) -> None:
    policy = make_policy("equal-split", lay)
    for _ in range(5):
        plan = call(policy, lay, [*row("pa", range(1, 7)), "wb"])
    assert on_bays(lay, plan) == {*row("pa", range(1, 7)), "wb"}
    assert plan[0][lay.bay_index["wb"]] == pytest.approx(15.0)  # 30 A less six sockets


def test_equal_split_short_leaves_everyone_below_the_minimum_off(lay: Layout) -> None:
    policy = make_policy("equal-split", lay)
    # row-a 16 A over 8 sockets: 2 A each, below a socket's 2.5 A: none charges
    assert on_bays(lay, call(policy, lay, row("pa", range(1, 9)))) == set()
    # main 14 A over four 3 A sockets and a wallbox: 2.8 A each, so nobody charges, though
    # four sockets (12 A) would fit: a share below the minimum is not handed on
    asking = [*row("pa", range(1, 3)), *row("pb", range(1, 3)), "wb"]
    plan = call(policy, lay, asking, limit=[14.0, 16.0, 16.0], socket_a=3.0)
    assert on_bays(lay, plan) == set()


def test_plan_summary_names_a_circuit_over_its_limit_before_any_bay(lay: Layout) -> None:
    unmanaged = np.zeros((3, 3))
    unmanaged[0, 0] = 31.0
    _, planned, binding, infeasible = plan_summary(lay, lay.limit_a, unmanaged, np.zeros(17))
    assert infeasible[:, 0].tolist() == [True, False, False]
    assert not infeasible[:, 1:].any() and not planned[:, 1:].any()
    assert binding[0, 0] and not binding[1:, 0].any()
