"""The shed config: one YAML file, loaded once into frozen, typed objects.

The same `Shed` describes the shed to the simulator and to the controller. This module holds
the types; `chargectl.config.load` turns YAML into them and collects every problem with its
file, line and path (`circuits[1].limit_a: must be > 0, got -5`).

Phases are numbered 1..3 as people number them. A bay id is `<device>/<port>` for a pile's
socket and the device id for a wallbox.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from chargectl.firewatch.settings import FirewatchSettings

Curve = Literal["B", "C", "D"]
Parity = Literal["N", "E", "O"]


@dataclass(frozen=True, slots=True)
class ShedInfo:
    name: str
    phases: Literal[1, 3] = 1
    voltage_v: float = 220.0  # nominal phase (line-to-neutral) voltage
    # How far the supply may sag below voltage_v (GB/T 12325 allows -10 %). Budgets that turn
    # a pile's watt cut-off into amps use the lowest voltage: a watt limit is more amps there.
    supply_low_pct: float = 10.0

    @property
    def lowest_voltage_v(self) -> float:
        return self.voltage_v * (1.0 - self.supply_low_pct / 100.0)


@dataclass(frozen=True, slots=True)
class Breaker:
    rating_a: float
    curve: Curve = "C"


@dataclass(frozen=True, slots=True)
class Circuit:
    id: str
    limit_a: float  # the most the controller may plan, on each phase the circuit has
    breaker: Breaker
    parent: str | None = None  # None: the root (the supply)
    # Phases the circuit carries; default: its parent's (the root's: the supply's).
    phases: tuple[int, ...] = ()
    meter: str | None = None  # id of a meter device measuring this circuit
    # Unmanaged current per phase assumed when the circuit has no meter or its meter is down.
    # None: 0 A without a meter, 25 % of limit_a with one (the meter exists for a reason).
    unmanaged_worst_a: float | None = None


@dataclass(frozen=True, slots=True)
class TcpBus:
    id: str
    host: str
    port: int
    timeout_s: float = 0.5


@dataclass(frozen=True, slots=True)
class RtuBus:
    id: str
    port: str  # serial device path
    baudrate: int = 9600
    parity: Parity = "N"
    stopbits: int = 1
    timeout_s: float = 0.5


Bus = TcpBus | RtuBus


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    kind: str  # a key of chargectl.drivers.registry: pile, evse, sdm630, sdm120, ...
    bus: str
    unit: int  # Modbus unit id 1..247
    # The circuit a pile or wallbox hangs on. A meter measures the circuit whose `meter` names
    # it; its own `circuit` is optional.
    circuit: str | None
    # Supply phases the device is wired to (a meter: what its channels L1, L2, L3 measure).
    phases: tuple[int, ...]
    ports: int = 0  # pile only: 1..32
    port_power_limit_w: int = 2000  # pile only: the pile's own per-port cut-off
    max_current_a: float = 16.0  # evse only: hardware maximum (the simulator reports it)


@dataclass(frozen=True, slots=True)
class ControlSettings:
    tick_s: float = 1.0
    watchdog_s: int = 10
    min_on_s: float = 900.0
    min_off_s: float = 120.0
    # A bay that is on keeps its turn until one waiting has charged this much less (seconds at
    # full power): turns of about this length rather than a swap whenever two credits cross.
    rotation_margin_s: float = 1800.0
    # ... and until one waiting has charged less than 1/this of what it has beyond the margin:
    # each turn about this many times the one before, so a long session has few turns.
    rotation_ratio: float = 2.0
    # A socket's session is paused for others' turns at most this many times; after that it
    # keeps its turn until it ends (an overload, a fault or an alarm still opens it).
    max_pauses: int = 2
    socket_nominal_a: float = 2.5  # a socket about to close counts this until measured
    ramp_margin_a: float = 0.3  # a lone socket's; n on a circuit-phase share it x sqrt(n)
    wallbox_probe_a: float = 1.0  # room a wallbox gets above what its car draws
    slow_poll_s: float = 10.0  # energy, power and temperature blocks
    thermal_derate_ratio: float = 0.8  # breaker thermal ratio above which the plan is lowered
    # Relays closed per tick, shed-wide: each charger draws an inrush when its relay closes, and
    # dozens at once add up to a magnetic trip. The rest close on the following ticks.
    max_closes_per_tick: int = 6
    # Meters are read this often between ticks (0: with the tick only); a sample that shows a
    # circuit over its limit sheds at once instead of at the next tick. Meters on an RS485
    # line shared with piles are read with the tick only (the line has no time to spare).
    meter_poll_s: float = 0.05


@dataclass(frozen=True, slots=True)
class SessionSettings:
    full_power_w: float = 20.0  # "full" when power <= max(this, full_fraction * peak) ...
    full_fraction: float = 0.20
    full_hold_s: float = 1800.0  # ... for this long,
    full_topup_s: float = 2700.0  # then a top-up of this long, then stop.
    unplugged_w: float = 3.0  # average power under this ...
    unplugged_window_s: float = 300.0  # ... over this window: unplugged
    no_load_s: float = 120.0  # no load this long after the relay first closes
    max_duration_s: float = 43200.0
    checkpoint_s: float = 60.0
    load_w: float = 5.0  # above this a bay counts as drawing (for no_load)
    settle_s: float = 30.0  # an ended session still takes counter readings this long
    tap_lamp_s: float = 4.0  # "accepted" / "rejected" lamp shown this long
    complete_lamp_s: float = 600.0  # "charge complete" lamp shown this long (or until unplugged)
    load_sustain_s: float = 30.0  # "had load": every 10-s average above load_w this long
    no_load_first_w: float = 30.0  # no sustained load of this much ...
    no_load_first_s: float = 1800.0  # ... in this much relay-closed time: no_load (0: off)
    counter_confirm_s: float = 60.0  # a counter set aside on a series of its own this long: reset
    # A counter step is believed up to this multiple of the bay's maximum power (a pile's
    # port_power_limit_w, a wallbox's maximum current): a pile cuts after 2 s over its limit.
    # Raise it only for a simulator running faster than real time (speed x 1.25).
    counter_power_margin: float = 1.25
    max_per_card: int = 1  # socket sessions one card may run at once (0: no limit)
    max_per_card_wallbox: int = 1  # wallbox sessions one card may run at once (0: no limit)
    tap_debounce_s: float = 5.0  # the same card at the same bay within this is one tap
    # Per-minute power curves of sessions that ended longer ago than this are deleted (0: none
    # are kept).
    curve_keep_days: float = 90.0


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str = "127.0.0.1"
    port: int = 0


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """The daemon's local HTTP API (chargectl.outputs.api). Beyond loopback only with a
    bearer token."""

    host: str = "127.0.0.1"
    port: int = 0
    # A file holding the bearer token (relative to the config file's folder); needed when
    # `host` is not a loopback address, and then asked of every request.
    token_file: str | None = None

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """`localhost`, 127.0.0.0/8 or ::1: only this machine can connect."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip()).is_loopback
    except ValueError:
        return False  # another name: it may resolve to anything


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """The link to the central MQTT broker (chargectl.outputs.mqtt); off while `host` is None."""

    host: str | None = None
    port: int | None = None  # None: 8883 with TLS, 1883 without
    tls: bool = False
    # Files are relative to the config file's folder.
    ca_file: str | None = None  # CA bundle to trust over TLS; None: the system's CAs
    username: str | None = None  # the broker's ACL expects the shed's name
    password_file: str | None = None  # one line, read at each connect (rotation needs no restart)
    keepalive_s: int = 60
    state_interval_s: float = 10.0  # the retained state summary, this often
    queue_size: int = 1000  # events kept while the broker is away; the oldest go first
    reconnect_max_s: float = 60.0  # cap of the jittered exponential reconnect backoff
    # Home Assistant MQTT discovery (chargectl.outputs.ha_discovery): its configs under
    # `ha_prefix` while on; while off, empty retained messages that delete them.
    ha_discovery: bool = False
    ha_prefix: str = "homeassistant"


@dataclass(frozen=True, slots=True)
class BaseLoad:
    circuit: str
    amps: tuple[float, ...]  # per phase of the circuit
    noise_a: float = 0.0


@dataclass(frozen=True, slots=True)
class PluggedCharger:
    bay: str  # "<pile>/<port>"
    profile: str  # a charger profile name of chargectl.sim.physics
    soc: float = 0.2  # state of charge at start, 0..1
    power_factor: float | None = None  # 0.5..0.99; None: the profile's own


@dataclass(frozen=True, slots=True)
class PluggedCar:
    device: str  # an evse id
    max_a: float = 16.0  # what the car itself accepts
    phases: int = 3  # 1 or 3
    soc: float = 0.3
    capacity_kwh: float = 40.0
    # Time constant following a lower offer or a pause (IEC 61851-1 allows 5 s to comply).
    drop_s: float = 2.0


@dataclass(frozen=True, slots=True)
class SimSettings:
    seed: int = 1
    step_s: float = 0.1
    meter_refresh_s: float = 1.0
    # A meter's reading is the RMS over this window before each refresh (10 cycles at 50 Hz,
    # the IEC 61000-4-30 measurement window), not one instant and not the whole second.
    meter_window_s: float = 0.2
    pace: bool = False  # pace serial-like buses at their baud rate
    # Supply voltage: a seeded slow wander around shed.voltage_v (standard deviation, V; 0:
    # steady), kept within 198..242 V, with this correlation time.
    voltage_noise_v: float = 0.0
    voltage_wander_s: float = 300.0
    # Socket rating: terminals rise 45 K at rated current (IEC 60884-1), k = 45 / rating^2.
    socket_rating_a: float = 10.0
    control_api: Endpoint = field(default_factory=lambda: Endpoint("127.0.0.1", 8580))
    base_load: tuple[BaseLoad, ...] = ()
    chargers: tuple[PluggedCharger, ...] = ()
    cars: tuple[PluggedCar, ...] = ()


@dataclass(frozen=True, slots=True)
class Shed:
    source: Path  # the file it came from (relative paths in it are relative to its folder)
    shed: ShedInfo
    circuits: tuple[Circuit, ...]
    buses: tuple[Bus, ...]
    devices: tuple[Device, ...]
    control: ControlSettings = ControlSettings()
    sessions: SessionSettings = SessionSettings()
    metrics: Endpoint = Endpoint("127.0.0.1", 9464)
    # The residents' page (outputs/residents.py): read-only, no login, on the shed's network;
    # None (no section): not served.
    residents: Endpoint | None = None
    api: ApiSettings = ApiSettings("127.0.0.1", 8581)
    ledger: str = "chargectl.db"  # SQLite path, relative to the config file's folder
    mqtt: MqttSettings = MqttSettings()
    sim: SimSettings = SimSettings()
    # The fire-risk watch (docs/firewatch.md): its thresholds, on by default.
    firewatch: FirewatchSettings = field(default_factory=FirewatchSettings)
    # Directories of device templates (<kind>.yaml) besides the shipped ones, relative to the
    # config file's folder; the command line's `--templates DIR` are appended (absolute).
    templates: tuple[str, ...] = ()

    def circuit(self, circuit_id: str) -> Circuit:
        for c in self.circuits:
            if c.id == circuit_id:
                return c
        raise KeyError(circuit_id)

    def device(self, device_id: str) -> Device:
        for d in self.devices:
            if d.id == device_id:
                return d
        raise KeyError(device_id)

    def bus(self, bus_id: str) -> Bus:
        for b in self.buses:
            if b.id == bus_id:
                return b
        raise KeyError(bus_id)

    def ledger_path(self) -> Path:
        p = Path(self.ledger)
        return p if p.is_absolute() else self.source.parent / p

    def template_dirs(self) -> tuple[Path, ...]:
        """The extra template directories, relative ones under the config file's folder."""
        return tuple(self.source.parent / d for d in self.templates)


def bay_id(device_id: str, port: int | None) -> str:
    """`pile-a/3` for a socket, `wb-1` for a wallbox."""
    return device_id if port is None else f"{device_id}/{port}"
