"""What waits at the edge broker for the bridge survives a restart of that broker: the edge
mosquitto on the config `chargectl fleet bridge` makes, its link to a central mosquitto cut,
events published (QoS 1, as the daemon does), the edge broker stopped and started again, then
the link back: every event reaches the centre."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from tests.fleet.rig import Centre, EdgeBroker
from tests.mqtt.broker import Broker, running_broker

EVENTS = 5


@pytest.fixture
def central(tmp_path: Path) -> Iterator[Broker]:
    with running_broker(tmp_path / "central") as b:
        yield b


def publish(port: int, topic: str, payloads: list[str]) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    try:
        for p in payloads:
            c.publish(topic, p, qos=1).wait_for_publish(timeout=10)
    finally:
        c.disconnect()
        c.loop_stop()


def test_events_queued_for_the_bridge_survive_an_edge_restart(
    central: Broker, tmp_path: Path
) -> None:
    centre = Centre(central.port)
    (tmp_path / "edge").mkdir()
    edge = EdgeBroker("campus", central, tmp_path / "edge")
    try:
        centre.until(lambda t, p: t == "chargectl/campus/bridge" and p == 1)
        edge.link.cut()
        centre.until(lambda t, p: t == "chargectl/campus/bridge" and p == 0)
        sent = [json.dumps({"bay": f"pile-a/{i}", "n": i}) for i in range(EVENTS)]
        publish(edge.port, "chargectl/campus/events/tap", sent)
        edge.restart()
        edge.link.restore()
        got: list[int] = []

        def arrived(topic: str, p: Any) -> bool:
            if topic == "chargectl/campus/events/tap":
                got.append(p["n"])
            return len(set(got)) == EVENTS

        centre.until(arrived)
        assert sorted(set(got)) == list(range(EVENTS))
    finally:
        edge.close()
        centre.close()
