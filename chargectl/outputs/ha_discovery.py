"""Home Assistant MQTT discovery: what the shed already publishes, described for Home Assistant.

Pure: the mqtt settings, the shed's name and its topology in; `Message`s (topic, payload,
retain) out. `announce` publishes them on a connected client, at each (re)connect.

- Flag on (`mqtt.ha_discovery`): one retained JSON config per entity, at
  `<ha_prefix>/<component>/<shed>/<object_id>/config`. Every entity reads the shed's retained
  `state` summary (no topic of its own) and is available while the shed's `status` topic
  says `online`. One Home Assistant device per shed: the state is one message for the whole
  shed, and a circuit's entities are named after the circuit.
- Flag off: an empty retained message on each of the same topics, which is how Home Assistant
  is told to delete an entity (and the broker to forget the retained config). The topics come
  from the same function over the same topology, so nothing needs remembering; a circuit
  removed from the config while the flag was on is not known any more, and its configs stay.

What is left out, because the shed does not publish it: each bay's state, power and energy
(the state has only the number of bays in each state; the `events/*` topics are not state).

The entities are tables of small rows (as Home Assistant's own sensor descriptions): adding
one is a row.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chargectl.config.schema import MqttSettings
from chargectl.control.observe import BAY_STATES
from chargectl.outputs.mqtt_topics import OFFLINE, ONLINE, TOPICS, topic
from chargectl.topology import Topology

if TYPE_CHECKING:
    import aiomqtt

QOS = 1  # a config is sent once per connect: it must arrive


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes  # b"": delete the retained config (and the entity)
    retain: bool = True
    qos: int = QOS


@dataclass(frozen=True, slots=True)
class Entity:
    """One kind of entity. `template` is the Jinja `value_template` over the state summary,
    with `@c` for the circuit's index in its `circuits` and `@p` for the phase's index in the
    circuit's lists; `key` and `name` are formatted with `circuit` (its id) and `phase` (1..3)."""

    key: str  # the object id's end
    name: str
    component: str  # "sensor" | "binary_sensor"
    template: str
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = None


PER_PHASE = (
    Entity(
        "current_l{phase}",
        "{circuit} current L{phase}",
        "sensor",
        "{{ value_json.circuits[@c].current_a[@p] }}",
        "A",
        "current",
        "measurement",
    ),
    # The limit in force: the configured one after thermal derating (`plan_limit_a`).
    Entity(
        "limit_l{phase}",
        "{circuit} limit L{phase}",
        "sensor",
        "{{ value_json.circuits[@c].plan_limit_a[@p] }}",
        "A",
        "current",
        "measurement",
    ),
)
PER_CIRCUIT = (
    Entity(
        "thermal",
        "{circuit} thermal load",
        "sensor",
        "{{ (value_json.circuits[@c].thermal_ratio * 100) | round(1) }}",
        "%",
        None,
        "measurement",
    ),
    Entity(
        "overloaded",
        "{circuit} overloaded",
        "binary_sensor",
        "{{ 'ON' if value_json.circuits[@c].overloaded else 'OFF' }}",
        device_class="problem",
    ),
)
PER_SHED = (
    *(
        Entity(
            f"bays_{s}",
            f"Bays {s}",
            "sensor",
            f"{{{{ value_json.bays.{s} }}}}",
            state_class="measurement",
        )
        for s in BAY_STATES
    ),
    Entity(
        "alarm",
        "Alarm",
        "binary_sensor",
        "{{ 'ON' if value_json.alarm else 'OFF' }}",
        device_class="safety",
    ),
    Entity("alarm_kind", "Alarm kind", "sensor", "{{ value_json.alarm or 'none' }}"),
    Entity(
        "devices_down",
        "Devices down",
        "sensor",
        "{{ value_json.devices_down | length }}",
        state_class="measurement",
    ),
)

_ID = re.compile(r"[A-Za-z0-9_-]+")


def object_id(text: str) -> str:
    """`text` as a Home Assistant object id ([A-Za-z0-9_-]+), the same for the same text and
    different for different texts: an id with other characters gets a short hash."""
    if _ID.fullmatch(text):
        return text
    slug = re.sub(r"[^A-Za-z0-9_-]", "_", text)
    return f"{slug}_{hashlib.sha1(text.encode()).hexdigest()[:6]}"


def _fill(template: str, c: int, p: int = 0) -> str:
    return template.replace("@c", str(c)).replace("@p", str(p))


def _config(
    settings: MqttSettings, shed: str, e: Entity, *, oid: str, name: str, template: str
) -> Message:
    body: dict[str, Any] = {
        "name": name,
        "unique_id": f"chargectl_{shed}_{oid}",
        "state_topic": topic(shed, TOPICS["state"].suffix),
        "value_template": template,
        "availability_topic": topic(shed, TOPICS["status"].suffix),
        "payload_available": ONLINE.decode(),
        "payload_not_available": OFFLINE.decode(),
        "device": {
            "identifiers": [f"chargectl_{shed}"],
            "name": f"Charging shed {shed}",
            "manufacturer": "chargectl",
            "model": "charging shed controller",
        },
    }
    optional = {
        "unit_of_measurement": e.unit,
        "device_class": e.device_class,
        "state_class": e.state_class,
    }
    body |= {k: v for k, v in optional.items() if v is not None}
    where = f"{settings.ha_prefix}/{e.component}/{shed}/{oid}/config"
    return Message(where, json.dumps(body, separators=(",", ":")).encode())


def configs(settings: MqttSettings, shed: str, topology: Topology) -> list[Message]:
    """Every entity's retained config (whatever the flag says)."""
    out = []
    for c, circuit in enumerate(topology.circuits):
        cid = object_id(circuit.id)
        # The state lists a circuit's phases in order, and its currents in that order.
        for p, phase in enumerate(sorted(circuit.phases)):
            for e in PER_PHASE:
                oid = f"circuit_{cid}_{e.key.format(phase=phase)}"
                name = e.name.format(circuit=circuit.id, phase=phase)
                out.append(
                    _config(settings, shed, e, oid=oid, name=name, template=_fill(e.template, c, p))
                )
        for e in PER_CIRCUIT:
            name = e.name.format(circuit=circuit.id)
            template = _fill(e.template, c)
            out.append(
                _config(
                    settings, shed, e, oid=f"circuit_{cid}_{e.key}", name=name, template=template
                )
            )
    out += [
        _config(settings, shed, e, oid=e.key, name=e.name, template=e.template) for e in PER_SHED
    ]
    return out


def removals(settings: MqttSettings, shed: str, topology: Topology) -> list[Message]:
    """An empty retained message on each config's topic: Home Assistant deletes the entity."""
    return [Message(m.topic, b"") for m in configs(settings, shed, topology)]


def messages(settings: MqttSettings, shed: str, topology: Topology) -> list[Message]:
    """What to publish at each connect: the configs while the flag is on, else their removal."""
    if settings.ha_discovery:
        return configs(settings, shed, topology)
    return removals(settings, shed, topology)


async def announce(client: aiomqtt.Client, messages: Sequence[Message]) -> None:
    """Publish `messages`, one after another (each waits for its acknowledgement, with the
    client's timeout): a few dozen small messages, once per connect."""
    for m in messages:
        await client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)
