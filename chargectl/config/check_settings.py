"""The checks of the settings: the supply (`shed`), numeric ranges of every section, the
controller's timing, the Modbus lines, the endpoints the daemon binds and MQTT."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from chargectl.config.problems import Context, join
from chargectl.config.schema import (
    ApiSettings,
    BaseLoad,
    Bus,
    ControlSettings,
    Endpoint,
    MqttSettings,
    PluggedCar,
    PluggedCharger,
    RtuBus,
    SessionSettings,
    SimSettings,
    TcpBus,
)
from chargectl.firewatch.settings import problems as firewatch_problems
from chargectl.topology import SUPPLY_PHASES

# The phase (line-to-neutral) voltage of a low-voltage supply: 100..250 V. 400 V is a
# line-to-line figure and would make every watt-to-amp budget 1.8x too small.
VOLTAGE_RANGE = (100.0, 250.0)
SUPPLY_LOW_PCT_RANGE = (10.0, 40.0)  # never less than GB/T 12325's -10 %
U16_MAX = 65535  # watchdog_timeout is a u16 of seconds


@dataclass(frozen=True, slots=True)
class Range:
    low: float
    high: float | None = None  # None: no upper bound
    low_open: bool = False  # True: the value must be strictly above `low`

    def __contains__(self, v: float) -> bool:
        above = v > self.low if self.low_open else v >= self.low
        return above and (self.high is None or v <= self.high)

    def text(self) -> str:
        if self.high is None:
            return f"must be {'>' if self.low_open else '>='} {self.low:g}"
        if self.low_open:
            return f"must be > {self.low:g} and <= {self.high:g}"
        return f"must be in {self.low:g}..{self.high:g}"


POSITIVE = Range(0, None, low_open=True)
NON_NEGATIVE = Range(0)
FRACTION = Range(0, 1)

# Numeric fields and their ranges. A time of 0 is allowed only where "no wait" makes sense.
RANGES: dict[type, dict[str, Range]] = {
    ControlSettings: {
        "tick_s": POSITIVE,
        "watchdog_s": Range(0, U16_MAX, low_open=True),
        "min_on_s": NON_NEGATIVE,
        "min_off_s": NON_NEGATIVE,
        "rotation_margin_s": NON_NEGATIVE,
        "rotation_ratio": Range(1, 100),
        "max_pauses": Range(0, 10_000),
        "socket_nominal_a": POSITIVE,
        "ramp_margin_a": NON_NEGATIVE,
        "wallbox_probe_a": NON_NEGATIVE,
        "slow_poll_s": POSITIVE,
        "thermal_derate_ratio": Range(0, 1, low_open=True),
        "max_closes_per_tick": Range(1, 10_000),
        "meter_poll_s": Range(0, 60),
    },
    SessionSettings: {
        "full_power_w": NON_NEGATIVE,
        "full_fraction": FRACTION,
        "full_hold_s": POSITIVE,
        "full_topup_s": NON_NEGATIVE,
        "unplugged_w": NON_NEGATIVE,
        "unplugged_window_s": POSITIVE,
        "no_load_s": POSITIVE,
        "max_duration_s": POSITIVE,
        "checkpoint_s": POSITIVE,
        "load_w": NON_NEGATIVE,
        "settle_s": NON_NEGATIVE,
        "counter_power_margin": Range(1, 1000),
        "tap_lamp_s": NON_NEGATIVE,
        "complete_lamp_s": NON_NEGATIVE,
        "load_sustain_s": NON_NEGATIVE,
        "no_load_first_w": NON_NEGATIVE,
        "no_load_first_s": NON_NEGATIVE,
        "counter_confirm_s": POSITIVE,
        "max_per_card": Range(0, 1000),
        "max_per_card_wallbox": Range(0, 1000),
        "tap_debounce_s": Range(0, 60),
        "curve_keep_days": Range(0, 36500),
    },
    SimSettings: {
        "step_s": POSITIVE,
        "meter_refresh_s": POSITIVE,
        "meter_window_s": POSITIVE,
    },
    MqttSettings: {
        "keepalive_s": Range(5, U16_MAX),
        "state_interval_s": POSITIVE,
        "queue_size": Range(1, None),
        "reconnect_max_s": Range(1, None),
    },
    BaseLoad: {"noise_a": NON_NEGATIVE},
    PluggedCharger: {"soc": FRACTION},
    PluggedCar: {"max_a": POSITIVE, "soc": FRACTION, "capacity_kwh": POSITIVE},
    Endpoint: {"port": Range(0, 65535)},
    ApiSettings: {"port": Range(0, 65535)},
    TcpBus: {"port": Range(0, 65535), "timeout_s": POSITIVE},
    RtuBus: {"baudrate": POSITIVE, "timeout_s": POSITIVE},
}


def check_ranges(ctx: Context, obj: object, path: str) -> None:
    for name, allowed in RANGES.get(type(obj), {}).items():
        value = getattr(obj, name)
        if value not in allowed:
            ctx.report(join(path, name), f"{allowed.text()}, got {value:g}")


def check_info(ctx: Context) -> None:
    info = ctx.shed.shed
    if not info.name.strip():
        ctx.report("shed.name", "must not be empty")
    if info.phases not in SUPPLY_PHASES:
        ctx.report("shed.phases", f"must be 1 or 3, got {info.phases!r}")
    low_v, high_v = VOLTAGE_RANGE
    if not low_v <= info.voltage_v <= high_v:
        ctx.report(
            "shed.voltage_v",
            f"the phase (line-to-neutral) voltage must be in {low_v:g}..{high_v:g} V, "
            f"got {info.voltage_v:g}",
        )
    low_p, high_p = SUPPLY_LOW_PCT_RANGE
    if not low_p <= info.supply_low_pct <= high_p:
        ctx.report(
            "shed.supply_low_pct",
            f"must be in {low_p:g}..{high_p:g} (the supply may sag at least 10 %), "
            f"got {info.supply_low_pct:g}",
        )


def check_timing(ctx: Context) -> None:
    c = ctx.shed.control
    if c.tick_s > 0 and c.watchdog_s > 0 and c.watchdog_s <= c.tick_s:
        ctx.report(
            "control.watchdog_s",
            f"must be longer than control.tick_s ({c.tick_s:g} s): the devices would fall "
            f"into failsafe between ticks, got {c.watchdog_s}",
        )
    if c.tick_s > 0 and 0 < c.slow_poll_s < c.tick_s:
        ctx.warn("control.slow_poll_s", f"shorter than control.tick_s ({c.tick_s:g} s)")
    settle = ctx.shed.sessions.settle_s
    if c.tick_s > 0 and c.slow_poll_s > 0 and settle < c.slow_poll_s + c.tick_s:
        ctx.warn(
            "sessions.settle_s",
            f"shorter than control.slow_poll_s + control.tick_s "
            f"({c.slow_poll_s + c.tick_s:g} s): an ended session may settle before its "
            f"bay's energy counter is read again, got {settle:g}",
        )
    if ctx.shed.sim.step_s > 0.1:
        ctx.warn("sim.step_s", f"above 0.1 s the physics are coarse, got {ctx.shed.sim.step_s:g}")


def check_bus(ctx: Context, b: Bus, path: str) -> None:
    # The file nests a bus's connection under `tcp:` / `rtu:`; `timeout_s` sits beside it.
    kind = "tcp" if isinstance(b, TcpBus) else "rtu"
    for name, allowed in RANGES[type(b)].items():
        value = getattr(b, name)
        if value not in allowed:
            where = name if name == "timeout_s" else f"{kind}.{name}"
            ctx.report(join(path, where), f"{allowed.text()}, got {value:g}")
    if isinstance(b, TcpBus):
        if not b.host.strip():
            ctx.report(join(path, "tcp.host"), "must not be empty")
    else:
        if not b.port.strip():
            ctx.report(join(path, "rtu.port"), "must not be empty (a serial device path)")
        if b.stopbits not in (1, 2):
            ctx.report(join(path, "rtu.stopbits"), f"must be 1 or 2, got {b.stopbits}")


def check_bus_endpoints(ctx: Context) -> None:
    first: dict[object, str] = {}
    for i, b in enumerate(ctx.shed.buses):
        path = ctx.path(b, f"buses[{i}]")
        key: object = (b.host, b.port) if isinstance(b, TcpBus) else b.port
        if isinstance(b, TcpBus) and b.port == 0:
            continue  # port 0: a free port picked at start (tests)
        if key in first:
            ctx.report(path, f"same line as bus '{first[key]}': one bus entry per line")
        else:
            first[key] = b.id


def check_endpoints(ctx: Context) -> None:
    shed = ctx.shed
    first: dict[tuple[str, int], str] = {}
    endpoints: list[tuple[str, Endpoint | ApiSettings]] = [
        ("metrics", shed.metrics),
        ("api", shed.api),
        ("sim.control_api", shed.sim.control_api),
    ]
    if shed.residents is not None:
        endpoints.append(("residents", shed.residents))
    for name, ep in endpoints:
        check_ranges(ctx, ep, name)
        if not ep.host.strip():
            ctx.report(join(name, "host"), "must not be empty")
        if ep.port == 0:
            continue
        key = (ep.host, ep.port)
        if key in first:
            ctx.report(join(name, "port"), f"{ep.host}:{ep.port} is used by {first[key]} too")
        else:
            first[key] = name
    api = shed.api
    if api.token_file is not None and not api.token_file.strip():
        ctx.report("api.token_file", "must not be empty (leave it out instead)")
    elif api.token_file is None and api.host.strip() and not api.loopback:
        ctx.report(
            "api.host",
            f"{api.host} is beyond loopback: the API clears alarms and stops sessions, so "
            "it is bound there only with api.token_file (a bearer token)",
        )
    for i, b in enumerate(shed.buses):
        if isinstance(b, TcpBus) and (b.host, b.port) in first:
            path = join(ctx.path(b, f"buses[{i}]"), "tcp.port")
            ctx.report(path, f"{b.host}:{b.port} is used by {first[(b.host, b.port)]} too")


def check_firewatch(ctx: Context) -> None:
    """The fire-risk watch's thresholds (chargectl.firewatch.settings.problems), each at the
    line of the key it names."""
    for problem in firewatch_problems(ctx.shed.firewatch):
        key = problem.split(":", 1)[0].split(" ", 1)[0]
        if key.startswith("classes["):
            key = key[: key.index("]") + 1]
        message = problem.split(": ", 1)[1] if ": " in problem else problem
        ctx.report(join("firewatch", key), message)


def check_mqtt(ctx: Context) -> None:
    m = ctx.shed.mqtt
    check_ranges(ctx, m, "mqtt")
    if m.port is not None and not 1 <= m.port <= U16_MAX:
        ctx.report("mqtt.port", f"must be in 1..{U16_MAX}, got {m.port}")
    if m.host is None:
        return
    if not m.host.strip():
        ctx.report("mqtt.host", "must not be empty (leave it out to turn MQTT off)")
    if m.ca_file is not None and not m.tls:
        ctx.report("mqtt.ca_file", "needs tls: true")
    if m.password_file is not None and m.username is None:
        ctx.report("mqtt.password_file", "needs a username")
    for key in ("ca_file", "username", "password_file"):
        if getattr(m, key) == "":
            ctx.report(join("mqtt", key), "must not be empty (leave it out instead)")
    # The name is a topic level (chargectl/<shed>/...) and the broker's user for the ACL.
    name = ctx.shed.shed.name
    bad = sorted(set(name) & set("/+#"))
    if bad:
        ctx.report(
            "shed.name",
            f"is an MQTT topic level and must not contain {' '.join(bad)}, got {name!r}",
        )
    problem = topic_path_problem(m.ha_prefix)
    if problem:
        ctx.report("mqtt.ha_prefix", f"{problem}, got {m.ha_prefix!r}")
    # Home Assistant reads a discovery topic's node id (the shed's name) as [A-Za-z0-9_-]+.
    if m.ha_discovery and not _HA_ID.fullmatch(name):
        ctx.report(
            "shed.name",
            "with mqtt.ha_discovery on, must be letters, digits, '_' and '-' only "
            f"(Home Assistant's node id), got {name!r}",
        )


_HA_ID = re.compile(r"[A-Za-z0-9_-]+")


def topic_path_problem(path: str) -> str | None:
    """What makes `path` unusable as the first levels of an MQTT topic name, or None."""
    if not path:
        return "must not be empty"
    if path.startswith("/") or path.endswith("/"):
        return "must not start or end with '/'"
    if "//" in path:
        return "must not have an empty level ('//')"
    wild = sorted(set(path) & set("+#"))
    if wild:
        return f"must not contain the wildcards {' '.join(wild)}"
    if any(unicodedata.category(ch) == "Cc" for ch in path):  # NUL, C0, DEL, C1
        return "must not contain control characters"
    if len(path.encode("utf-8")) > 1024:  # leaves room for the rest of the topic
        return "must be at most 1024 bytes"
    return None
