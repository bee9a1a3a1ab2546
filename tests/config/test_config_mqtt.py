"""The `mqtt` section: off by default, typed when given, its combinations checked."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from chargectl.config.load import Problem, load_shed
from chargectl.config.schema import MqttSettings
from tests.config.cfgtext import BASE, edit

MQTT = """\
mqtt:
  host: broker.example.net
  tls: true
  ca_file: certs/ca.pem
  username: test
  password_file: mqtt.pw
  state_interval_s: 5
"""


def test_mqtt_section(write: Callable[[str], Path], errors: Callable[[str], list[Problem]]) -> None:
    assert load_shed(write(BASE)).mqtt == MqttSettings()  # off: host None
    shed = load_shed(write(BASE + MQTT))
    assert shed.mqtt == MqttSettings(
        host="broker.example.net",
        tls=True,
        ca_file="certs/ca.pem",
        username="test",
        password_file="mqtt.pw",
        state_interval_s=5.0,
    )
    bad = edit(BASE + MQTT, "  tls: true\n", "  port: 70000\n  queue_size: 0\n")
    bad = edit(bad, "  username: test\n", "")
    bad = edit(bad, "name: test", "name: shed/1")
    found = {p.path: p.message for p in errors(bad)}
    assert found == {
        "mqtt.port": "must be in 1..65535, got 70000",
        "mqtt.queue_size": "must be >= 1, got 0",
        "mqtt.ca_file": "needs tls: true",
        "mqtt.password_file": "needs a username",
        "shed.name": "is an MQTT topic level and must not contain /, got 'shed/1'",
    }
