"""Another card at a bay whose session cannot show its own charger there takes the bay over.

A resident may leave without tapping out while their session is paused (rotation) or after
their charger was unplugged; the next resident plugs into the same socket and taps. Before,
that tap was `busy` and the old session, resumed, booked the new charger's energy to the old
card (found by a day's replay: 5 kWh on six sessions). A socket holds one plug, so a new card
there means a new charger, unless the session's own charger is evidently still there:
drawing without a break since its load began, or tapped a moment ago. A wallbox sees its car.
"""

from __future__ import annotations

from chargectl.sessions.records import SessionEnd, SessionSettle, SessionStart
from chargectl.sessions.taps import TapOutcome
from tests.sessions.rig import ALICE, BOB, CAROL, Rig


def charging(rig: Rig, bay: str, watts: float) -> None:
    rig.bays[bay].profile = lambda t: watts


def ends(rig: Rig) -> dict[int, SessionEnd]:
    return {e.id: e for e in rig.ledger.of(SessionEnd)}


def settled(rig: Rig) -> dict[int, int]:
    return {e.id: e.energy_wh for e in rig.ledger.of(SessionSettle)}


def test_a_charger_drawing_all_along_is_its_owner_s_and_another_card_is_busy() -> None:
    rig = Rig()
    charging(rig, "p/1", 400.0)
    assert rig.tap("p/1", ALICE).outcome is TapOutcome.STARTED
    assert rig.tap("p/1", BOB).outcome is TapOutcome.BUSY  # just tapped: her charger is there
    rig.run(600)
    assert rig.tap("p/1", BOB).outcome is TapOutcome.BUSY  # drawing without a break
    s = rig.mgr.session_at("p/1")
    assert s is not None and s.card == ALICE


def test_a_paused_session_is_taken_over_and_each_card_pays_its_own_energy() -> None:
    rig = Rig()
    charging(rig, "p/1", 360.0)  # 0.1 Wh a second
    first = rig.tap("p/1", ALICE)
    rig.run(600)  # Alice's charger draws 60 Wh
    rig.bays["p/1"].hold_open = True  # the controller pauses her (rotation); she leaves
    rig.run(120)
    counter_at_pause = int(rig.bays["p/1"].counter)
    second = rig.tap("p/1", BOB)  # Bob plugged into the same socket
    assert second.outcome is TapOutcome.STARTED
    assert ends(rig)[first.session].reason == "unplugged"
    rig.bays["p/1"].hold_open = False  # Bob's charger, once his session may draw
    rig.run(700)
    # Alice's session settled with what flowed before the pause; Bob's counts from there on.
    assert settled(rig)[first.session] == counter_at_pause - 1000
    bob = rig.mgr.session_at("p/1")
    assert bob is not None and bob.card == BOB
    assert bob.counter_start == counter_at_pause
    assert bob.energy_wh == int(rig.bays["p/1"].counter) - counter_at_pause > 0


def test_a_load_that_broke_off_is_taken_over() -> None:
    rig = Rig()
    watts = {"w": 200.0}
    rig.bays["p/1"].profile = lambda t: watts["w"]
    rig.tap("p/1", ALICE)
    rig.run(600)
    watts["w"] = 0.0  # Alice unplugs with the relay closed ...
    rig.run(40)
    quiet = int(rig.bays["p/1"].counter)
    watts["w"] = 360.0  # ... and Bob plugs his charger into the live socket,
    rig.run(20)  # drawing 2 Wh before he taps
    first = rig.mgr.session_at("p/1")
    assert first is not None
    assert rig.tap("p/1", BOB).outcome is TapOutcome.STARTED
    assert [e.reason for e in rig.ledger.of(SessionEnd)] == ["unplugged"]
    # The boundary is the counter read while no load flowed: Alice's session is final at
    # once, and Bob's energy before his tap is his.
    assert settled(rig)[first.id] == quiet - 1000
    bob = rig.mgr.session_at("p/1")
    assert bob is not None and bob.counter_start == quiet
    rig.run(5)
    assert bob.energy_wh == int(rig.bays["p/1"].counter) - quiet >= 2


def test_a_session_that_never_drew_for_the_unplugged_window_is_taken_over() -> None:
    rig = Rig()
    rig.bays["p/1"].hold_open = True  # waiting for capacity all along
    rig.tap("p/1", ALICE)
    rig.run(200)
    assert rig.tap("p/1", BOB).outcome is TapOutcome.BUSY  # still within the window
    rig.run(110)
    assert rig.tap("p/1", BOB).outcome is TapOutcome.STARTED


def test_a_refused_card_takes_nothing_over() -> None:
    rig = Rig()
    charging(rig, "p/1", 200.0)
    rig.tap("p/1", ALICE)
    rig.run(300)
    rig.bays["p/1"].hold_open = True
    rig.run(60)
    assert rig.tap("p/1", "0A0B0C0D").outcome is TapOutcome.UNKNOWN
    s = rig.mgr.session_at("p/1")
    assert s is not None and s.card == ALICE
    assert not rig.ledger.of(SessionEnd)


def test_while_the_old_session_settles_a_third_card_is_busy() -> None:
    rig = Rig()
    charging(rig, "p/1", 200.0)
    rig.tap("p/1", ALICE)
    rig.run(300)
    rig.bays["p/1"].hold_open = True
    rig.run(30)
    assert rig.tap("p/1", BOB).outcome is TapOutcome.STARTED
    assert rig.tap("p/1", CAROL).outcome is TapOutcome.BUSY  # Bob's is held, not taken over
    assert len(rig.ledger.of(SessionStart)) == 2


def test_a_wallbox_sees_its_car_so_a_paused_car_is_busy() -> None:
    rig = Rig()
    rig.bays["p/2"].plugged = True
    charging(rig, "p/2", 7000.0)
    rig.tap("p/2", ALICE)
    rig.run(300)
    rig.bays["p/2"].hold_open = True  # paused; her car stays connected
    rig.run(120)
    assert rig.tap("p/2", BOB).outcome is TapOutcome.BUSY


def test_a_swap_seen_in_one_reading_is_taken_over() -> None:
    # A full shed: the next resident plugs in as soon as the socket is free. One tick's
    # reading without load is the only trace of the swap.
    rig = Rig()
    watts = {"w": 150.0}
    rig.bays["p/1"].profile = lambda t: watts["w"]
    rig.tap("p/1", ALICE)
    rig.run(900)
    watts["w"] = 0.0
    rig.run(1)
    watts["w"] = 190.0
    rig.run(11)
    assert rig.tap("p/1", BOB).outcome is TapOutcome.STARTED
