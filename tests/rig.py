"""The shed in a test: the simulator and the daemon together, over real Modbus.

`write_config` makes a config file from an example with free loopback ports, a private ledger
and any overrides (plain dict surgery on the YAML, so subprocess tests can use the file too).
`running_shed` runs the simulator (real time, optionally sped up) and the daemon in this
process, over TCP or over RTU on pty pairs, and stops both cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from chargectl.config.load import load_shed
from chargectl.config.schema import Shed
from chargectl.control.layout import build_layout
from chargectl.runtime.daemon import Daemon, Options
from chargectl.sessions import ledger
from chargectl.sessions.cards import Card, parse_uid
from chargectl.sim.runner import Simulator
from tests.ports import free_port

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "deploy" / "examples"
CARD = "04A1B2C3"
OTHER_CARD = "04D5E6F7"


def deep_update(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_update(out[k], v)
        else:
            out[k] = v
    return out


def write_config(
    tmp_path: Path,
    example: str = "small",
    *,
    transport: str = "tcp",
    baudrate: int = 19200,
    overrides: dict[str, Any] | None = None,
    edit: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """A config file in `tmp_path`: the example with free ports (TCP) or pty links (RTU),
    its ledger in `tmp_path`, then `overrides` merged in and `edit` applied to the dict."""
    data = yaml.safe_load((EXAMPLES / f"{example}.yaml").read_text())
    for bus in data["buses"]:
        if transport == "tcp":
            bus["tcp"] = {"host": "127.0.0.1", "port": free_port()}
        else:
            bus.pop("tcp", None)
            bus["rtu"] = {"port": str(tmp_path / f"tty-{bus['id']}"), "baudrate": baudrate}
    data["ledger"] = str(tmp_path / "ledger.db")
    data["metrics"] = {"host": "127.0.0.1", "port": free_port()}
    data["api"] = {"host": "127.0.0.1", "port": free_port()}
    data.setdefault("sim", {})["control_api"] = {"host": "127.0.0.1", "port": free_port()}
    if overrides:
        data = deep_update(data, overrides)
    if edit is not None:
        edit(data)
    path = tmp_path / f"{example}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def bay_card(bay: str) -> str:
    """A card of its own for every bay (a card charges at one socket at a time: the default
    sessions.max_per_card): 4 bytes from the bay id, registered by `running_shed`."""
    return f"04{zlib.crc32(bay.encode()) & 0xFFFFFF:06X}"


def bay_cards(shed: Shed) -> list[str]:
    return [bay_card(b.id) for b in build_layout(shed).bays]


def add_cards(shed: Shed, uids: Iterable[str] = (CARD, OTHER_CARD), **card: Any) -> None:
    conn = ledger.connect(shed.ledger_path())
    try:
        ledger.migrate(conn)
        for i, uid in enumerate(uids):
            ledger.add_card(conn, Card(parse_uid(uid), f"flat {i + 1}", **card), time.time())
    finally:
        conn.close()


@dataclass
class Rig:
    shed: Shed
    sim: Simulator
    daemon: Daemon
    stop: asyncio.Event

    @property
    def core(self) -> Any:
        return self.daemon.controller.core

    def status(self) -> dict[str, Any]:
        return self.daemon.status.latest

    def truth(self, bays: bool = False) -> dict[str, Any]:
        return self.sim.world.truth(bays=bays)

    def bay(self, bay: str) -> dict[str, Any]:
        for b in self.status().get("bays", []):
            if b["id"] == bay:
                return dict(b)
        raise KeyError(bay)

    def tap(self, bay: str, uid: str = CARD) -> None:
        self.sim.world.tap(bay, bytes.fromhex(uid))

    async def wait_for(self, pred: Callable[[], Any], within: float = 10.0, what: str = "") -> Any:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            value = pred()
            if value:
                return value
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out after {within} s waiting for {what or pred}")

    async def ticks(self, n: int) -> None:
        start = self.daemon.controller.ticks
        await self.wait_for(lambda: self.daemon.controller.ticks >= start + n, 5 + n * 2)

    async def api(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """Call the daemon's local API from a thread (the loop must stay free to answer)."""
        return await asyncio.to_thread(self._api, path, body)

    def _api(self, path: str, body: dict[str, Any] | None) -> tuple[int, Any]:
        url = f"http://{self.shed.api.host}:{self.daemon.api.port if self.daemon.api else 0}{path}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            url,
            data=data,
            method="GET" if body is None else "POST",
            headers={"Content-Type": "application/json"},  # the API runs no form posts
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())


@contextlib.asynccontextmanager
async def running_shed(
    config: Path,
    *,
    speed: float = 1.0,
    cards: Iterable[str] = (CARD, OTHER_CARD),
    daemon: bool = True,
    options: Options | None = None,
) -> AsyncIterator[Rig]:
    """The simulator and (unless `daemon=False`) the daemon on the config, until the block
    ends. The daemon is started once the simulator serves, and stopped first."""
    shed = load_shed(config)
    add_cards(shed, [*cards, *bay_cards(shed)])
    stop = asyncio.Event()
    sim = Simulator(shed, speed=speed)
    await sim.start()
    d = Daemon(shed, options or Options())
    rig = Rig(shed, sim, d, stop)
    sim_task = asyncio.create_task(sim.run(stop), name="sim")
    daemon_stop = asyncio.Event()
    daemon_task = asyncio.create_task(d.run(daemon_stop), name="daemon") if daemon else None
    try:
        if daemon_task is not None:
            await rig.wait_for(
                lambda: d.controller.ticks > 0 or daemon_task.done(), 30, "the first tick"
            )
            if daemon_task.done():
                daemon_task.result()  # raise what stopped it
        yield rig
    finally:
        daemon_stop.set()
        if daemon_task is not None:
            await asyncio.wait_for(daemon_task, 20)
        stop.set()
        await asyncio.wait_for(sim_task, 10)
        await sim.close()
