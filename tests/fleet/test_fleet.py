"""Two sheds on one central broker, every part a real process (tests/fleet/rig.py): each shed's
simulator and daemon, its edge mosquitto on the config `chargectl fleet bridge` makes, bridged
(plain MQTT, as inside a VPN) to a central mosquitto with the shipped ACL.

(a) both sheds' status and state reach the centre;
(b) with both links cut for 30 s, every tap made at the sheds meanwhile reaches the centre
    once the links return, and nothing was dropped; a card command sent centrally during the
    cut is delivered after it (queued), a staff stop is not (never kept for an absent shed);
(c) a card blocked centrally (`cards/block`) is refused at both sheds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.fleet.rig import SHEDS, Centre, ShedBox, start_shed
from tests.mqtt.broker import Broker
from tests.rig import CARD, OTHER_CARD, bay_card

pytestmark = pytest.mark.timeout(180)

CUT_S = 30.0
BAYS = ("pile-a/1", "pile-a/2", "pile-a/3")


class Fleet:
    def __init__(self, central: Broker, centre: Centre, boxes: dict[str, ShedBox]) -> None:
        self.central = central
        self.centre = centre
        self.boxes = boxes


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    (root / "central").mkdir()
    central = Broker(root / "central")
    central.write_files()
    central.start()
    boxes: dict[str, ShedBox] = {}
    centre = None
    try:
        centre = Centre(central.port)
        for name in SHEDS:
            boxes[name] = start_shed(name, central, root / name, [CARD, OTHER_CARD])
        for box in boxes.values():
            box.daemon.wait_up()
        yield Fleet(central, centre, boxes)
    finally:
        for box in boxes.values():
            box.close()
        if centre is not None:
            centre.close()
        central.stop()


def on(shed: str, suffix: str, **fields: Any) -> Callable[[str, Any], bool]:
    """A message on chargectl/<shed>/<suffix>: a JSON object with `fields`, or that payload
    (`payload=...`) decoded."""
    want = fields.pop("payload", None)

    def match(topic: str, p: Any) -> bool:
        if topic != f"chargectl/{shed}/{suffix}":
            return False
        if want is not None:
            return bool(p == want)
        return all(isinstance(p, dict) and p.get(k) == v for k, v in fields.items())

    return match


def test_both_sheds_state_reaches_the_centre(fleet: Fleet) -> None:
    # Per shed: the daemon online, its state, and the bridge up (each may come first).
    missing = {(shed, what) for shed in SHEDS for what in ("status", "state", "bridge")}

    def arrived(topic: str, p: Any) -> bool:
        _, shed, what = topic.split("/", 2)
        if what == "state":
            assert p["shed"] == shed
            assert [c["id"] for c in p["circuits"]] == ["main"]
        if (what, p) in (("status", b"online"), ("state", p), ("bridge", 1)):
            missing.discard((shed, what))
        return not missing

    fleet.centre.until(arrived)


def test_a_link_cut_for_30_s_loses_no_event(fleet: Fleet) -> None:
    centre = fleet.centre
    for box in fleet.boxes.values():
        box.link.cut()
    cut_at = time.monotonic()
    # The centre sees each link go: the bridge's Will.
    centre.until_each({s: on(s, "bridge", payload=0) for s in SHEDS})
    # While the links are down: residents tap at every shed (each tap seen by its daemon
    # before the next: a pile holds only its latest); the card list blocks a card (queued
    # for the shed), staff stop a session (not kept for it).
    for box in fleet.boxes.values():
        for bay in BAYS:
            box.tap(bay, bay_card(bay))
            box.wait_bay(bay, ("charging", "waiting"))
        centre.send(f"chargectl/{box.name}/cmd/sessions/stop", {"bay": BAYS[0], "id": "late"})
        block = {"uid": OTHER_CARD, "version": int(time.time()), "id": "queued"}
        centre.send(f"chargectl/{box.name}/cmd/cards/block", block)
    time.sleep(max(0.0, CUT_S - (time.monotonic() - cut_at)))
    for box in fleet.boxes.values():
        box.link.restore()

    # Every tap, and each shed's answer to the queued block, in whatever order they come.
    want = {(shed, bay, bay_card(bay)) for shed in SHEDS for bay in BAYS}
    got: set[tuple[str, str, str]] = set()
    blocked: set[str] = set()

    def all_arrived(topic: str, p: Any) -> bool:
        shed = topic.split("/")[1]
        if topic.endswith("/events/tap") and p["result"] == "started":
            got.add((shed, p["bay"], p["card"]))
        if topic.endswith("/cmd/result") and p["id"] == "queued":
            assert p["ok"] and p["result"]["applied"], p
            blocked.add(shed)
        return got == want and blocked == set(SHEDS)

    centre.until(all_arrived, within=30)
    for shed in SHEDS:
        _, state = centre.until(on(shed, "state"))
        assert state["events_dropped"] == 0
        # A stop sent now is answered; the one sent during the cut never runs (QoS 0 in).
        centre.send(f"chargectl/{shed}/cmd/sessions/stop", {"bay": BAYS[1], "id": "now"})
        centre.until(on(shed, "cmd/result", id="now"))
        assert fleet.boxes[shed].bay_state(BAYS[0]) in ("charging", "waiting")
    late = [m for m in centre.seen if m[0].endswith("/cmd/result") and b'"late"' in m[1]]
    assert late == []


def test_a_card_blocked_centrally_is_refused_at_both_sheds(fleet: Fleet) -> None:
    centre = fleet.centre
    version = int(time.time() * 1000)
    for shed in SHEDS:
        block = {"uid": CARD, "version": version, "id": f"block-{shed}"}
        centre.send(f"chargectl/{shed}/cmd/cards/block", block)
    answers = centre.until_each({s: on(s, "cmd/result", id=f"block-{s}") for s in SHEDS})
    for answer in answers.values():
        assert answer["ok"] and answer["result"]["status"] == "blocked", answer
    bay = "pile-a/5"
    for box in fleet.boxes.values():
        box.tap(bay, CARD)
    refused = set()

    def tap_refused(topic: str, p: Any) -> bool:
        if topic.endswith("/events/tap") and p["card"] == CARD and p["bay"] == bay:
            assert p["result"] == "blocked", p
            refused.add(topic.split("/")[1])
        return refused == set(SHEDS)

    centre.until(tap_refused)
    for box in fleet.boxes.values():
        assert box.bay_state(bay) == "idle"
