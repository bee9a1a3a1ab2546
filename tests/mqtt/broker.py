"""A real mosquitto for the MQTT tests, with the shipped ACL; a TCP proxy that can cut the
link's connection; an operator client that collects what the shed publishes."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
ACL = ROOT / "deploy" / "mosquitto" / "chargectl.acl"
SHED = "campus"
PASSWORDS = {SHED: "campus-secret", "north": "north-secret", "ops": "ops-secret"}
# Central systems' users (tests/mqtt/central.py).
PASSWORDS |= {"energy": "energy-secret", "app": "app-secret", "cardlist": "cardlist-secret"}


def tool(name: str) -> str:
    # /usr/sbin is not on every user's PATH, and mosquitto lives there.
    found = shutil.which(name, path="/usr/local/bin:/usr/bin:/usr/sbin:/bin")
    # No skip: the Makefile installs the Debian package `mosquitto`.
    assert found, f"{name} not found: apt-get install mosquitto"
    return found


def make_cert(folder: Path) -> tuple[Path, Path]:
    key, cert = folder / "broker.key", folder / "broker.crt"
    subprocess.run(
        [
            tool("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "1", "-keyout", str(key), "-out", str(cert),
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return key, cert


@dataclass
class Broker:
    """mosquitto on free loopback ports: plain `port` and TLS `tls_port`, users and the ACL of
    deploy/mosquitto, persistence in the temporary folder (retained messages survive a restart)."""

    folder: Path
    port: int = field(default_factory=free_port)
    tls_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def ca(self) -> Path:
        return self.folder / "broker.crt"

    def write_files(self) -> Path:
        passwd = self.folder / "passwd"
        for i, (user, pw) in enumerate(PASSWORDS.items()):
            flags = ["-c"] if i == 0 else []
            subprocess.run(
                [tool("mosquitto_passwd"), *flags, "-b", str(passwd), user, pw],
                check=True,
                timeout=30,
            )
        key, cert = make_cert(self.folder)
        conf = self.folder / "mosquitto.conf"
        conf.write_text(
            "per_listener_settings false\n"
            "allow_anonymous false\n"
            f"password_file {passwd}\n"
            f"acl_file {ACL}\n"
            f"listener {self.port} 127.0.0.1\n"
            f"listener {self.tls_port} 127.0.0.1\n"
            f"certfile {cert}\nkeyfile {key}\n"
            "persistence true\n"
            # As deploy/mosquitto/chargectl.conf: a command's answer is not held back ~40 ms.
            "set_tcp_nodelay true\n"
            f"persistence_location {self.folder}/\n"
            # Started as root, mosquitto would drop to its own user, who cannot read tmp_path.
            "user root\n"
        )
        return conf

    def start(self) -> None:
        self.proc = start_mosquitto(
            self.folder / "mosquitto.conf", self.folder / "mosquitto.log", self.port, self.tls_port
        )

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_process(self.proc)
        self.proc = None

    def log(self) -> str:
        return (self.folder / "mosquitto.log").read_text()


class Proxy:
    """Loopback TCP relay to the broker; `cut()` aborts every relayed connection at once, as a
    dead mobile link would (the broker sees no DISCONNECT, so it publishes the Will)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.accepted = 0
        self._transports: list[asyncio.WriteTransport] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._transports += [writer.transport, up_w.transport]

        async def pump(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            w.transport.abort()

        await asyncio.gather(pump(reader, up_w), pump(up_r, writer))

    def cut(self) -> None:
        for t in self._transports:
            t.abort()
        self._transports.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class Operator:
    """The `ops` user of the ACL: reads every shed, may send commands."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.inbox: asyncio.Queue[aiomqtt.Message] = asyncio.Queue()
        self.client: aiomqtt.Client | None = None

    async def next(self, topic: str, within: float = 10.0) -> aiomqtt.Message:
        """The next message on `topic` (messages on other topics are skipped)."""
        async with asyncio.timeout(within):
            while True:
                m = await self.inbox.get()
                if m.topic.value == topic:
                    return m

    async def payload(self, topic: str, within: float = 10.0) -> bytes:
        m = await self.next(topic, within)
        assert isinstance(m.payload, bytes)
        return m.payload

    async def send(self, topic: str, payload: Any, retain: bool = False) -> None:
        assert self.client is not None
        await self.client.publish(topic, payload, qos=1, retain=retain)


@contextlib.contextmanager
def running_broker(folder: Path) -> Iterator[Broker]:
    """The tests' mosquitto (shipped ACL, test users) in a new `folder`, stopped after."""
    folder.mkdir()
    b = Broker(folder)
    b.write_files()
    b.start()
    try:
        yield b
    finally:
        b.stop()


def start_mosquitto(conf: Path, log_path: Path, *ports: int) -> subprocess.Popen[bytes]:
    """mosquitto on `conf`, its output appended to `log_path`, once it listens on every port."""
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [tool("mosquitto"), "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 10
    while True:
        assert proc.poll() is None, log_path.read_text()
        try:
            for port in ports:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.02)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (mosquitto saves what it keeps), then SIGKILL after 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.asynccontextmanager
async def operator(
    port: int, subscribe: str = f"chargectl/{SHED}/#", user: str = "ops"
) -> AsyncIterator[Operator]:
    """A client as the ACL's `user` (staff's `ops` unless said), collecting what `subscribe`
    brings into its inbox."""
    op = Operator(port)
    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        username=user,
        password=PASSWORDS[user],
        # It reads the commands it sends: without this each publish waits ~40 ms (Nagle).
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    ) as c:
        op.client = c
        await c.subscribe(subscribe, qos=1)

        async def collect() -> None:
            async for m in c.messages:
                op.inbox.put_nowait(m)

        task = asyncio.create_task(collect(), name=f"operator-{user}")
        try:
            yield op
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task
