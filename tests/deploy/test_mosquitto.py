"""deploy/mosquitto: the real broker runs the shipped config and ACL (paths and ports moved to
a temporary folder and free loopback ports), and enforces them: sheds stay in their subtree."""

from __future__ import annotations

import queue
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.mqtt.broker import stop_process
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "mosquitto"
PASSWORDS = {"campus": "campus-secret", "north": "north-secret", "ops": "ops-secret"}


def tool(name: str) -> str:
    found = shutil.which(name)
    # No skip: the Makefile installs the Debian package `mosquitto`.
    assert found, f"{name} not found: apt-get install mosquitto"
    return found


@dataclass
class Broker:
    port: int
    tls_port: int
    ca: Path


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    passwd = tmp_path / "chargectl.passwd"
    for i, (user, pw) in enumerate(PASSWORDS.items()):
        flags = ["-c"] if i == 0 else []
        subprocess.run(
            [tool("mosquitto_passwd"), *flags, "-b", str(passwd), user, pw], check=True, timeout=30
        )
    key, cert = tmp_path / "broker.key", tmp_path / "broker.crt"
    subprocess.run(
        [
            tool("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    port, tls_port = free_port(), free_port()
    conf = (DEPLOY / "chargectl.conf").read_text()
    for old, new in {
        "/etc/mosquitto/chargectl.passwd": str(passwd),
        "/etc/mosquitto/chargectl.acl": str(DEPLOY / "chargectl.acl"),
        "/etc/mosquitto/certs/broker.crt": str(cert),
        "/etc/mosquitto/certs/broker.key": str(key),
        "/var/lib/mosquitto/": f"{tmp_path}/",
        "listener 8883\n": f"listener {tls_port} 127.0.0.1\n",
        "listener 1883 127.0.0.1\n": f"listener {port} 127.0.0.1\n",
    }.items():
        assert old in conf, old
        conf = conf.replace(old, new)
    # Started as root, mosquitto drops to its own user, who cannot read the temporary folder.
    conf_path = tmp_path / "mosquitto.conf"
    conf_path.write_text(conf + "\nuser root\n")
    log = (tmp_path / "mosquitto.log").open("w")
    proc = subprocess.Popen(
        [tool("mosquitto"), "-c", str(conf_path)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            assert proc.poll() is None, (tmp_path / "mosquitto.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                socket.create_connection(("127.0.0.1", tls_port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "mosquitto.log").read_text()
                time.sleep(0.05)
        yield Broker(port, tls_port, cert)
    finally:
        stop_process(proc)
        log.close()


class Peer:
    """A connected MQTT client whose received messages land in a queue."""

    def __init__(self, port: int, user: str | None, ca: Path | None = None) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.connected: queue.Queue[int] = queue.Queue()
        self.subscribed: queue.Queue[list[int]] = queue.Queue()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        if user is not None:
            c.username_pw_set(user, PASSWORDS[user])
        if ca is not None:
            c.tls_set(ca_certs=str(ca), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.on_connect = lambda _c, _u, _f, rc, _p: self.connected.put(int(rc.value))
        c.on_message = lambda _c, _u, m: self.messages.put((m.topic, m.payload))
        c.on_subscribe = lambda _c, _u, _mid, rcs, _p: self.subscribed.put(
            [int(r.value) for r in rcs]
        )
        self.client = c
        c.connect("127.0.0.1", port, keepalive=30)
        c.loop_start()
        self.rc = self.connected.get(timeout=10)

    def subscribe(self, topic: str) -> int:
        self.client.subscribe(topic, qos=1)
        (rc,) = self.subscribed.get(timeout=10)
        return rc

    def publish(self, topic: str, payload: str) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(timeout=10)

    def received_until(self, topic: str) -> list[tuple[str, bytes]]:
        """Everything received up to and including the first message on `topic`."""
        got = []
        while True:
            msg = self.messages.get(timeout=10)
            got.append(msg)
            if msg[0] == topic:
                return got

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_shed_publishes_only_under_its_own_name(broker: Broker) -> None:
    ops, campus = Peer(broker.port, "ops"), Peer(broker.port, "campus")
    try:
        assert (ops.rc, campus.rc) == (0, 0)
        assert ops.subscribe("chargectl/#") == 1
        # Messages of one client arrive in order: had the spoof passed, it would come first.
        campus.publish("chargectl/north/status", "spoofed")
        campus.publish("other/status", "outside the tree")
        campus.publish("chargectl/campus/status", "online")
        got = ops.received_until("chargectl/campus/status")
        assert got == [("chargectl/campus/status", b"online")]
    finally:
        ops.close()
        campus.close()


def test_a_shed_reads_only_its_own_commands(broker: Broker) -> None:
    ops, campus = Peer(broker.port, "ops"), Peer(broker.port, "campus")
    try:
        campus.subscribe("chargectl/campus/cmd/#")
        # Another shed's commands or status: refused at subscribe time or never delivered.
        campus.subscribe("chargectl/north/cmd/#")
        campus.subscribe("chargectl/north/status")
        north = Peer(broker.port, "north")
        try:
            north.publish("chargectl/north/status", "online")
        finally:
            north.close()
        ops.publish("chargectl/north/cmd/stop", "pile-a1/3")
        ops.publish("chargectl/campus/cmd/stop", "pile-b2/7")
        got = campus.received_until("chargectl/campus/cmd/stop")
        assert got == [("chargectl/campus/cmd/stop", b"pile-b2/7")]
    finally:
        ops.close()
        campus.close()


def test_operators_may_command_but_not_impersonate_a_shed(broker: Broker) -> None:
    ops, watcher = Peer(broker.port, "ops"), Peer(broker.port, "ops")
    try:
        watcher.subscribe("chargectl/#")
        ops.publish("chargectl/campus/status", "fake status")
        ops.publish("chargectl/campus/cmd/clear_alarm", "smoke")
        got = watcher.received_until("chargectl/campus/cmd/clear_alarm")
        assert got == [("chargectl/campus/cmd/clear_alarm", b"smoke")]
    finally:
        ops.close()
        watcher.close()


def test_anonymous_and_wrong_passwords_are_refused(broker: Broker) -> None:
    anon = Peer(broker.port, None)
    anon.close()
    assert anon.rc != 0
    bad = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    bad.username_pw_set("campus", "guess")
    codes: queue.Queue[int] = queue.Queue()
    bad.on_connect = lambda _c, _u, _f, rc, _p: codes.put(int(rc.value))
    bad.connect("127.0.0.1", broker.port)
    bad.loop_start()
    try:
        assert codes.get(timeout=10) != 0
    finally:
        bad.loop_stop()


def test_the_tls_listener_serves_sheds(broker: Broker) -> None:
    ops = Peer(broker.port, "ops")
    campus = Peer(broker.tls_port, "campus", ca=broker.ca)
    try:
        assert campus.rc == 0
        ops.subscribe("chargectl/campus/#")
        campus.publish("chargectl/campus/status", "online over tls")
        assert ops.received_until("chargectl/campus/status") == [
            ("chargectl/campus/status", b"online over tls")
        ]
    finally:
        ops.close()
        campus.close()


def test_the_tls_listener_refuses_plain_mqtt(broker: Broker) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    c.username_pw_set("campus", PASSWORDS["campus"])
    with pytest.raises((OSError, ConnectionError)):
        c.connect("127.0.0.1", broker.tls_port, keepalive=5)
        # the broker drops a client that speaks plain MQTT to a TLS port
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            rc = c.loop(timeout=0.2)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                raise ConnectionError(rc)
        c.disconnect()
