"""Home Assistant discovery: the configs of the example sheds (ids, topics, templates rendered
with Jinja over real state payloads), their removal, the prefix check, and the daemon against
a real mosquitto: configs while the flag is on, none left after a restart with it off."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import jinja2
import jinja2.sandbox
import pytest

from chargectl.cli import main
from chargectl.config.load import load_shed
from chargectl.config.schema import MqttSettings, Shed
from chargectl.control.layout import build_layout
from chargectl.outputs import ha_discovery
from chargectl.outputs.mqtt import MqttLink
from chargectl.outputs.mqtt_topics import OFFLINE, ONLINE, TOPICS, state_summary, topic
from chargectl.topology import topology_of
from tests.config.cfgtext import BASE, line_of
from tests.mqtt.broker import ACL, PASSWORDS, SHED, running_broker
from tests.mqtt.conftest import decision
from tests.rig import running_shed, write_config

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"
ON = MqttSettings(host="broker", ha_discovery=True)
# HA's discovery topic: <prefix>/<component>/<node_id>/<object_id>/config
DISCOVERY = re.compile(r"^homeassistant/(sensor|binary_sensor)/(\w[\w-]*)/([A-Za-z0-9_-]+)/config$")
JINJA = jinja2.sandbox.ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined)


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str) -> Path:
        path = tmp_path / "shed.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture(params=["small", "campus"])
def shed(request: pytest.FixtureRequest) -> Shed:
    return load_shed(EXAMPLES / f"{request.param}.yaml")


def configs(
    shed: Shed, settings: MqttSettings = ON, prefix_name: str | None = None
) -> dict[str, dict[str, Any]]:
    name = prefix_name or shed.shed.name
    msgs = ha_discovery.messages(settings, name, topology_of(shed))
    assert all(m.retain and m.qos == 1 for m in msgs)
    return {m.topic: json.loads(m.payload) for m in msgs}


def render(template: str, payload: dict[str, Any]) -> str:
    # As Home Assistant: the payload parsed as `value_json`; the rendered text is the state.
    return JINJA.from_string(template).render(value_json=payload, value=json.dumps(payload))


def test_configs_well_formed(shed: Shed) -> None:
    name = shed.shed.name
    got = configs(shed)
    assert len({c["unique_id"] for c in got.values()}) == len(got)
    n = len(topology_of(shed).circuits)
    phases = sum(len(c.phases) for c in topology_of(shed).circuits)
    assert len(got) == 2 * phases + 2 * n + 6 + 3  # per phase, per circuit, bay states, shed
    for where, c in got.items():
        m = DISCOVERY.match(where)
        assert m, where
        assert m[2] == name
        assert c["unique_id"] == f"chargectl_{name}_{m[3]}"
        # Only topics the daemon publishes, with the status topic's own payloads.
        assert c["state_topic"] == topic(name, TOPICS["state"].suffix)
        assert c["availability_topic"] == topic(name, TOPICS["status"].suffix)
        assert (c["payload_available"], c["payload_not_available"]) == (
            ONLINE.decode(),
            OFFLINE.decode(),
        )
        assert c["device"] == {
            "identifiers": [f"chargectl_{name}"],
            "name": f"Charging shed {name}",
            "manufacturer": "chargectl",
            "model": "charging shed controller",
        }
        JINJA.parse(c["value_template"])  # valid Jinja


def test_templates_pick_the_published_values(shed: Shed) -> None:
    """Each template rendered over a state summary built as the reporter builds it, with
    values different everywhere, so a wrong index shows."""
    layout = build_layout(shed)
    d = decision(layout, states={layout.bays[0].id: "charging"}, alarm="smoke")
    d.circuit_current_a[:] = [
        [10 * c + p + 0.5 for p in range(3)] for c in range(layout.n_circuits)
    ]
    d.limit_a[:] = d.circuit_current_a + 100
    d.thermal_ratio[:] = [0.1 * (c + 1) + 0.0123 for c in range(layout.n_circuits)]
    d.overloaded[-1] = True
    payload = state_summary(shed.shed.name, layout, d, wall=1.0, devices_down=["x"], dropped=0)
    payload = json.loads(json.dumps(payload))  # as it travels
    got = {
        c["unique_id"].removeprefix(f"chargectl_{shed.shed.name}_"): c
        for c in configs(shed).values()
    }
    values = {k: render(c["value_template"], payload) for k, c in got.items()}
    want: dict[str, str] = {}
    for c, cid in enumerate(layout.circuit_ids):
        for p in range(3):
            if layout.circuit_phases[c, p]:
                want[f"circuit_{cid}_current_l{p + 1}"] = str(10 * c + p + 0.5)
                want[f"circuit_{cid}_limit_l{p + 1}"] = str(10 * c + p + 100.5)
        want[f"circuit_{cid}_thermal"] = str(round((0.1 * (c + 1) + 0.012) * 100, 1))
        want[f"circuit_{cid}_overloaded"] = "ON" if c == layout.n_circuits - 1 else "OFF"
    n = layout.n_bays
    want |= {"bays_idle": str(n - 1), "bays_charging": "1", "bays_waiting": "0"}
    want |= {"bays_paused": "0", "bays_fault": "0", "bays_disabled": "0"}
    want |= {"alarm": "ON", "alarm_kind": "smoke", "devices_down": "1"}
    assert values == want
    quiet = payload | {"alarm": None, "devices_down": []}
    assert render(got["alarm"]["value_template"], quiet) == "OFF"
    assert render(got["alarm_kind"]["value_template"], quiet) == "none"


def test_removal_same_topics_empty_retained(shed: Shed) -> None:
    off = dataclasses.replace(ON, ha_discovery=False)
    topology = topology_of(shed)
    removals = ha_discovery.messages(off, shed.shed.name, topology)
    assert [m.topic for m in removals] == list(configs(shed))
    assert all(m.payload == b"" and m.retain and m.qos == 1 for m in removals)


def test_prefix_and_odd_ids() -> None:
    shed = load_shed(EXAMPLES / "campus.yaml")
    s = dataclasses.replace(ON, ha_prefix="site/ha")
    assert all(t.startswith("site/ha/") for t in configs(shed, s))
    assert ha_discovery.object_id("row_1-a") == "row_1-a"
    odd = {ha_discovery.object_id(x) for x in ("a/b", "a_b", "a b", "a.b")}
    assert len(odd) == 4
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", x) for x in odd)


MQTT = "mqtt:\n  host: broker.example.net\n  ha_discovery: true\n"


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        ("'ha/+/x'", "must not contain the wildcards +, got 'ha/+/x'"),
        ("'ha/#'", "must not contain the wildcards #, got 'ha/#'"),
        ("'/ha'", "must not start or end with '/', got '/ha'"),
        ("'ha/'", "must not start or end with '/', got 'ha/'"),
        ("'ha//x'", "must not have an empty level ('//'), got 'ha//x'"),
        ("''", "must not be empty, got ''"),
        ('"ha\\0x"', "must not contain control characters, got 'ha\\x00x'"),
    ],
)
def test_bad_prefix_refused_by_check(
    write: Callable[[str], Path], capsys: pytest.CaptureFixture[str], prefix: str, message: str
) -> None:
    text = BASE + MQTT + f"  ha_prefix: {prefix}\n"
    path = write(text)
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    line = line_of(text, "ha_prefix:")
    assert f"{path}:{line}: mqtt.ha_prefix: {message}" in err, err


def test_shed_name_must_be_a_node_id(
    write: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    text = BASE.replace("name: test", "name: test.1") + MQTT
    path = write(text)
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:{line_of(text, 'name: test.1')}: shed.name: with mqtt.ha_discovery on" in err
    assert main(["check", str(write(BASE + MQTT))]) == 0  # a good prefix and name: clean


# -- the daemon, a real mosquitto ------------------------------------------------------------

HOOKED = "discovery" in inspect.signature(MqttLink).parameters


@contextlib.contextmanager
def ha_broker(folder: Path) -> Any:
    """The tests' mosquitto with the shipped ACL, which has what discovery needs
    (docs/mqtt.md): a shed writes its own configs under the prefix, `ops` reads them."""
    assert "pattern write homeassistant/+/%u/#" in ACL.read_text()
    with running_broker(folder) as b:
        yield b


async def retained(port: int, pattern: str, quiet_s: float = 1.0) -> dict[str, bytes]:
    """What a fresh subscriber to `pattern` gets retained (until `quiet_s` without a message)."""
    out: dict[str, bytes] = {}
    async with aiomqtt.Client("127.0.0.1", port, username="ops", password=PASSWORDS["ops"]) as c:
        await c.subscribe(pattern, qos=1)
        with contextlib.suppress(TimeoutError):
            while True:
                async with asyncio.timeout(quiet_s):
                    m = await anext(aiter(c.messages))
                if not m.retain:  # live traffic: the retained ones came first
                    break
                assert isinstance(m.payload, bytes)
                out[m.topic.value] = m.payload
    return out


@pytest.mark.timeout(120)
@pytest.mark.skipif(not HOOKED, reason="the hook in chargectl/outputs/mqtt.py is not in yet")
async def test_daemon_publishes_then_removes(tmp_path: Path) -> None:
    (tmp_path / "mqtt.pw").write_text(PASSWORDS[SHED] + "\n")
    with ha_broker(tmp_path / "broker") as broker:

        def config(on: bool) -> Path:
            mqtt = {"host": "127.0.0.1", "port": broker.port, "username": SHED}
            mqtt |= {"password_file": "mqtt.pw", "state_interval_s": 0.5, "ha_discovery": on}
            over = {"shed": {"name": SHED}, "control": {"tick_s": 0.25}, "mqtt": mqtt}
            folder = tmp_path / ("on" if on else "off")  # each run its own ledger
            folder.mkdir()
            (folder / "mqtt.pw").write_text(PASSWORDS[SHED] + "\n")
            return write_config(folder, "small", overrides=over)

        async with running_shed(config(True)) as rig:
            link = rig.daemon.mqtt
            assert link is not None
            await rig.wait_for(lambda: link.published > 0, 20)
            got = await retained(broker.port, "homeassistant/#")
            assert set(got) == set(configs(load_shed(EXAMPLES / "small.yaml"), prefix_name=SHED))
            state = await retained(broker.port, f"chargectl/{SHED}/#")
            for body in map(json.loads, got.values()):
                assert body["state_topic"] in state
                assert state[body["availability_topic"]] == b"online"
                value = render(body["value_template"], json.loads(state[body["state_topic"]]))
                assert value not in {"", "None"}, body["name"]
        async with running_shed(config(False)) as rig:
            off = rig.daemon.mqtt
            assert off is not None
            await rig.wait_for(lambda: off.published > 0, 20)
            assert await retained(broker.port, "homeassistant/#") == {}
