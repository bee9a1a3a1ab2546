"""Cards: one card runs at most `max_per_card` socket sessions and `max_per_card_wallbox`
wallbox sessions at once (a cloned UID at ten sockets gets one); the same card at the same bay
within `tap_debounce_s` is one tap (a runaway tap sequence opens one session, not seven)."""

from __future__ import annotations

from chargectl.sessions.manager import TapOutcome
from chargectl.sessions.records import SessionStart, TapRecord
from tests.sessions.rig import ALICE, BOB, Rig, settings

SOCKETS = tuple(f"p/{i}" for i in range(1, 11))


def test_a_cloned_card_at_ten_sockets_runs_one_session() -> None:
    rig = Rig(bays=SOCKETS)
    outcomes = [rig.tap(bay, ALICE).outcome for bay in SOCKETS]
    assert outcomes == [TapOutcome.STARTED] + [TapOutcome.LIMIT] * 9
    assert len(rig.ledger.of(SessionStart)) == 1
    assert [t.result for t in rig.ledger.of(TapRecord)] == ["started"] + ["limit"] * 9
    assert rig.mgr.readout().taps_total == {"started": 1, "limit": 9}
    # Another card is not held back by it.
    assert rig.tap("p/2", BOB).outcome is TapOutcome.STARTED


def test_the_limit_frees_when_the_session_ends() -> None:
    rig = Rig(bays=SOCKETS)
    rig.tap("p/1", ALICE)
    rig.run(6)
    assert rig.tap("p/1", ALICE).outcome is TapOutcome.STOPPED
    assert rig.tap("p/2", ALICE).outcome is TapOutcome.STARTED  # while p/1 settles


def test_max_per_card_is_configurable_and_0_is_no_limit() -> None:
    rig = Rig(bays=SOCKETS, settings=settings(max_per_card=3))
    outcomes = [rig.tap(bay, ALICE).outcome for bay in SOCKETS[:4]]
    assert outcomes == [TapOutcome.STARTED] * 3 + [TapOutcome.LIMIT]
    rig = Rig(bays=SOCKETS, settings=settings(max_per_card=0))
    assert all(rig.tap(bay, ALICE).outcome is TapOutcome.STARTED for bay in SOCKETS)


def test_a_wallbox_session_is_counted_apart_from_the_sockets() -> None:
    rig = Rig(bays=("p/1", "p/2", "wb-1", "wb-2"))
    assert rig.tap("p/1", ALICE).outcome is TapOutcome.STARTED
    assert rig.tap("wb-1", ALICE).outcome is TapOutcome.STARTED  # the e-bike and the car
    assert rig.tap("wb-2", ALICE).outcome is TapOutcome.LIMIT
    assert rig.tap("p/2", ALICE).outcome is TapOutcome.LIMIT
    rig = Rig(bays=("wb-1", "wb-2"), settings=settings(max_per_card_wallbox=2))
    assert rig.tap("wb-2", ALICE).outcome is TapOutcome.STARTED
    assert rig.tap("wb-1", ALICE).outcome is TapOutcome.STARTED


def test_a_runaway_tap_sequence_opens_one_session() -> None:
    """A reader that reports the same card twice a second for 6 s: one session, one tap in the
    audit trail, the repeats counted apart (no event, no record)."""
    rig = Rig(tick=0.5)
    rig.bays["p/1"].profile = lambda t: 100.0
    for _ in range(12):
        rig.tap("p/1", ALICE)
        rig.step()
    assert len(rig.ledger.of(SessionStart)) == 1
    assert rig.mgr.session_at("p/1") is not None  # not stopped by the repeats
    assert [t.result for t in rig.ledger.of(TapRecord)] == ["started"]
    r = rig.mgr.readout()
    assert r.taps_total == {"started": 1} and r.taps_repeated == 11


def test_a_card_held_on_the_reader_is_one_tap_until_lifted() -> None:
    rig = Rig(tick=1.0)
    rig.bays["p/1"].profile = lambda t: 100.0
    for _ in range(30):  # held for 30 s: every repeat is within 5 s of the one before
        rig.tap("p/1", ALICE)
        rig.step()
    assert rig.mgr.session_at("p/1") is not None
    rig.run(6)  # lifted
    assert rig.tap("p/1", ALICE).outcome is TapOutcome.STOPPED


def test_debounce_is_per_card_and_bay() -> None:
    rig = Rig()
    assert rig.tap("p/1", ALICE).outcome is TapOutcome.STARTED
    assert rig.tap("p/1", BOB).outcome is TapOutcome.BUSY  # another card: a tap of its own
    assert rig.tap("p/2", BOB).outcome is TapOutcome.STARTED
    rig = Rig(settings=settings(tap_debounce_s=0.0))
    assert rig.tap("p/1", ALICE).outcome is TapOutcome.STARTED
    assert rig.tap("p/1", ALICE).outcome is TapOutcome.STOPPED
