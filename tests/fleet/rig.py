"""A fleet on loopback, every part a real process: a central mosquitto (tests/mqtt/broker.py,
the shipped ACL) and per shed `chargectl sim`, `chargectl run` and an edge mosquitto run
on the config `chargectl.outputs.fleet.bridge_config` makes, its bridge reaching the centre
(plain MQTT, as inside a VPN; TLS with FLEET_BRIDGE_TLS=1, docs/fleet.md) through a `Link`
the test can cut.
`Centre` is the operator at the central broker.

Plain blocking code: the processes run on their own, the test drives them over HTTP and MQTT.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import select
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from chargectl.config.load import load_shed
from chargectl.config.schema import Shed
from chargectl.outputs.fleet import Central, bridge_config
from tests.mqtt.broker import PASSWORDS, Broker, free_port, start_mosquitto, stop_process
from tests.rig import add_cards, bay_cards, write_config
from tests.sessions_e2e.procs import DaemonProc, SimProc, _http

SHEDS = ("campus", "north")  # users of tests/mqtt/broker.py's password file
# The bridge over TLS (the central broker's TLS listener, its certificate checked): docs/fleet.md
# on mosquitto 2.0.11, which can spin with it; off by default, on to try another mosquitto.
BRIDGE_TLS = os.environ.get("FLEET_BRIDGE_TLS") == "1"


class Link:
    """A TCP relay on loopback between an edge broker's bridge and the central broker.
    `cut()` aborts the relayed connections and refuses new ones (the peer sees its connection
    closed, as when a mobile link drops) until `restore()`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._up = True
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = False
        threading.Thread(target=self._accept, name="link", daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                if not select.select([self._server], [], [], 0.1)[0]:
                    continue
                conn, _ = self._server.accept()
            except (OSError, ValueError):  # closed
                return
            if not self._up:
                conn.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                conn.close()
                continue
            with self._lock:
                if not self._up:  # cut while this one was being connected
                    conn.close()
                    upstream.close()
                    continue
                self._socks += [conn, upstream]
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    def cut(self) -> None:
        self._up = False
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def restore(self) -> None:
        self._up = True

    def close(self) -> None:
        self._stop = True
        self.cut()
        self._server.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_RDWR)


class Centre:
    """The `ops` user at the central broker: every shed's messages, in order, in `inbox`."""

    def __init__(self, port: int) -> None:
        self.inbox: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self.seen: list[tuple[str, bytes, bool]] = []
        self.retained: dict[str, bytes] = {}
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        c.username_pw_set("ops", PASSWORDS["ops"])
        ready: queue.Queue[int] = queue.Queue()
        c.on_connect = lambda _c, _u, _f, rc, _p: ready.put(int(rc.value))
        c.on_message = lambda _c, _u, m: self.inbox.put((m.topic, bytes(m.payload), bool(m.retain)))
        c.connect("127.0.0.1", port, keepalive=30)
        c.loop_start()
        assert ready.get(timeout=10) == 0
        c.subscribe("chargectl/#", qos=1)
        self.client = c

    def send(self, topic: str, body: dict[str, Any]) -> None:
        self.client.publish(topic, json.dumps(body), qos=1).wait_for_publish(timeout=10)

    def until(self, pred: Callable[[str, Any], bool], within: float = 20.0) -> tuple[str, Any]:
        """Read on until a message satisfies `pred(topic, payload)` (JSON payloads decoded);
        every message read stays in `seen`."""
        deadline = time.monotonic() + within
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"nothing matched within {within} s; last: {self.seen[-5:]}"
            try:
                topic, raw, retain = self.inbox.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append((topic, raw, retain))
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = raw
            if pred(topic, payload):
                return topic, payload

    def until_each(
        self, preds: dict[str, Callable[[str, Any], bool]], within: float = 20.0
    ) -> dict[str, Any]:
        """Read on until each of `preds` has matched a message, in whatever order they come;
        the payload each matched, by its key."""
        found: dict[str, Any] = {}

        def each(topic: str, payload: Any) -> bool:
            for key, pred in preds.items():
                if key not in found and pred(topic, payload):
                    found[key] = payload
            return len(found) == len(preds)

        self.until(each, within)
        return found

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class ShedBox:
    """One shed's edge box: simulator, daemon, edge broker, and the link to the centre."""

    name: str
    shed: Shed
    sim: SimProc
    daemon: DaemonProc
    edge: EdgeBroker
    link: Link
    folder: Path

    def tap(self, bay: str, uid: str) -> None:
        self.sim.tap(bay, uid)

    def bay_state(self, bay: str) -> str:
        code, body = _http(f"{self.daemon.url}/status")
        assert code == 200, body
        return next(str(b["state"]) for b in body["bays"] if b["id"] == bay)

    def wait_bay(self, bay: str, states: tuple[str, ...], within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while (state := self.bay_state(bay)) not in states:
            assert time.monotonic() < deadline, f"{self.name} {bay}: {state}, not {states}"
            time.sleep(0.05)

    def close(self) -> None:
        for p in (self.daemon, self.sim):
            with contextlib.suppress(AssertionError):
                p.terminate()
            p.close()
        self.edge.close()


class EdgeBroker:
    """An edge box's mosquitto on the config `bridge_config` makes, bridged to `central`
    through a `Link`; `restart()` stops it (SIGTERM: it saves what waits) and starts it again."""

    def __init__(self, name: str, central: Broker, folder: Path) -> None:
        self.port = free_port()
        self.link = Link(central.tls_port if BRIDGE_TLS else central.port)
        self.folder = folder
        conf = bridge_config(
            name,
            Central("127.0.0.1", self.link.port, str(central.ca) if BRIDGE_TLS else None),
            PASSWORDS[name],
            local_port=self.port,
            data_dir=f"{folder}/",
            restart_s=(1, 2),  # a test's patience; the shipped 5..60 s suits a fleet
        )
        # Started as root, mosquitto would drop to its own user, who cannot read tmp_path.
        (folder / "edge.conf").write_text(conf + "user root\n")
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        return start_mosquitto(self.folder / "edge.conf", self.folder / "edge.log", self.port)

    def stop(self) -> None:
        stop_process(self.proc)

    def restart(self) -> None:
        self.stop()
        self.proc = self._start()

    def close(self) -> None:
        self.stop()
        self.link.close()


def start_shed(name: str, central: Broker, folder: Path, cards: list[str]) -> ShedBox:
    """The edge box of shed `name` (an `EdgeBroker`), then the simulator and the daemon
    (reporting to the edge broker) on the small example."""
    folder.mkdir()
    edge = EdgeBroker(name, central, folder)

    def edit(d: dict[str, Any]) -> None:
        d["shed"]["name"] = name
        d["mqtt"] = {"host": "127.0.0.1", "port": edge.port, "state_interval_s": 1.0}

    config = write_config(folder, "small", edit=edit)
    shed = load_shed(config)
    add_cards(shed, [*cards, *bay_cards(shed)])
    sim = SimProc(config, shed, folder / "sim.log", speed=1.0)
    daemon = DaemonProc(config, shed, folder / "daemon.log")
    return ShedBox(name, shed, sim, daemon, edge, edge.link, folder)
