"""Templates: every shipped one loads; a malformed one is refused as FILE:LINE: PATH: MESSAGE
(never a traceback); the generic role drivers read and write the second pile family and the
Alfen wallbox from their templates alone."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from chargectl.config.schema import Device, TcpBus
from chargectl.drivers.bus import ModbusBus
from chargectl.drivers.errors import ConfigError
from chargectl.drivers.evse import EvseDriver
from chargectl.drivers.factory import make_driver
from chargectl.drivers.pile import PileDriver
from chargectl.drivers.readings import FAULT_SHORT, FAULT_WELDED
from chargectl.drivers.template import encode_value, load_template, shipped, templates
from chargectl.runtime.clock import VirtualClock
from tests.drivers.fakes import Image, ScriptedClient, Sent, run_virtual

GOOD_PILE = """\
kind: mypile
role: pile
ports: 4
fields:
  port_current: {address: 0, per_port: true}
  relay_closed: {table: discrete, address: 0, per_port: true}
  relay: {table: coil, address: 0, per_port: true}
"""


def test_every_shipped_template_loads_with_its_source() -> None:
    found = shipped()
    assert set(found) == {"pile", "evse", "sdm630", "sdm120", "dtsu666", "voltbay10", "alfen_ng9xx"}
    for kind, t in found.items():
        assert t.kind == kind and t.source, kind
    assert "Alfen" in found["alfen_ng9xx"].source
    assert found["voltbay10"].ports == (10, 10) and found["pile"].ports == (1, 32)
    assert {"watchdog", "failsafe_mask", "port_power_cutoff"} <= found["voltbay10"].capabilities
    assert {"watchdog", "failsafe_current"} <= found["alfen_ng9xx"].capabilities


BROKEN = [
    (GOOD_PILE.replace("port_current:", "port_amps:"), 5, "fields.port_amps", "unknown field"),
    (GOOD_PILE + "  relay_closed_extra: 1\n", 8, "fields.relay_closed_extra", "unknown field"),
    (GOOD_PILE.replace("per_port: true}\n  relay_c", "per_port: true, colour: red}\n  relay_c"),
     5, "fields.port_current.colour", "unknown key"),
    (GOOD_PILE.replace("{address: 0, per_port: true}", "{address: 0, type: u24, per_port: true}"),
     5, "fields.port_current.type", "must be one of"),
    (GOOD_PILE + "  port_power: {address: 3, per_port: true}\n", 8, "fields.port_power",
     "overlaps port_current"),
    (GOOD_PILE + "  port_fault: {address: 9, per_port: true, bits: {melted: 0}}\n", 8,
     "fields.port_fault.bits.melted", "not a meaning"),
    (GOOD_PILE + "  model: {address: 20, equals: lots}\n", 8, "fields.model.equals",
     "an integer or `ports`"),
    (GOOD_PILE + "  model: {address: 20}\n", 8, "fields.model.equals", "required"),
    (GOOD_PILE.replace("  relay: {table: coil, address: 0, per_port: true}\n", ""), 4, "fields",
     "missing required field(s) for a pile: relay"),
    (GOOD_PILE + "  heartbeat: {address: [1\n", 9, "(file)", "YAML syntax error"),
    ("- just\n- a list\n", 1, "(top)", "must be a mapping"),
    (GOOD_PILE.replace("role: pile", "role: toaster"), 2, "role", "one of pile, evse, meter"),
    (GOOD_PILE.replace("ports: 4", "ports: 40"), 3, "ports", "1..32"),
    (GOOD_PILE.replace("kind: mypile", "kind: other"), 1, "kind", "must match the file name"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "line", "path", "message"), BROKEN)
def test_a_malformed_template_names_file_line_path(
    tmp_path: Path, text: str, line: int, path: str, message: str
) -> None:
    file = tmp_path / "mypile.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_template(file)
    assert str(info.value).startswith(f"{file}:{line}: {path}: "), str(info.value)
    assert message in str(info.value)


def test_a_good_template_from_a_directory_adds_a_kind(tmp_path: Path) -> None:
    (tmp_path / "mypile.yaml").write_text(GOOD_PILE)
    found = templates([tmp_path])
    assert found["mypile"].role == "pile" and "pile" in found
    assert "watchdog" not in found["mypile"].capabilities  # no watchdog fields: not safe alone
    (tmp_path / "pile.yaml").write_text(GOOD_PILE.replace("mypile", "pile"))
    with pytest.raises(ConfigError, match=re.escape("already defined in")):
        templates([tmp_path])


def rig(image: Image, unit: int = 1) -> tuple[ModbusBus, ScriptedClient, VirtualClock]:
    clock = VirtualClock()
    client = ScriptedClient({unit: image})
    bus = ModbusBus(TcpBus("l", "127.0.0.1", 1), clock, client_factory=lambda: client)
    return bus, client, clock


async def test_voltbay10_reads_and_writes_its_own_layout() -> None:
    image = Image(input=dict.fromkeys(range(80), 0), discrete=dict.fromkeys(range(32), 0))
    image.input[0], image.input[1] = 0x5642, 10
    image.input[20 + 2] = 37  # port 3: 3.7 A (0.1 A)
    image.input[30 + 3] = 0b1100  # port 4: short and welded: welded (the worst) is reported
    image.input[30 + 5] = 0b0100  # port 6: short
    image.input[40 + 2] = 800  # port 3: 800 W
    image.input[60 + 4], image.input[60 + 5] = 0, 12345  # port 3: 123.45 kWh, big-endian u32
    image.discrete[2] = 1  # relay 3 closed
    bus, client, clock = rig(image)
    pile = make_driver(Device("vb", "voltbay10", "l", 1, "c", (1,), ports=10), bus)
    assert isinstance(pile, PileDriver)
    hot = await run_virtual(clock, pile.read_hot())
    assert (
        hot.current_a[2] == pytest.approx(3.7)
        and hot.relay_closed == (False,) * 2 + (True,) + (False,) * 7
    )
    assert hot.fault[3] == FAULT_WELDED and hot.fault[5] == FAULT_SHORT and hot.fault[0] == 0
    assert [(s.function, s.addr, s.payload) for s in client.sent] == [(4, 0, 40), (2, 0, 20)]
    slow = await run_virtual(clock, pile.read_slow())
    assert slow.power_w[2] == 800 and slow.energy_wh[2] == 123450
    client.sent.clear()
    await run_virtual(clock, pile.setup(10, 0b101, 1200))
    # the mask (coils 16..25) before the watchdog and a fresh heartbeat (holding 0..2)
    assert client.sent == [
        Sent(15, 1, 16, [1, 0, 1, 0, 0, 0, 0, 0, 0, 0]),
        Sent(16, 1, 0, [10, 1, 1200]),
    ]
    client.sent.clear()
    assert await run_virtual(clock, pile.write_relays({1: True, 2: True, 5: False})) == 2
    assert client.sent == [Sent(15, 1, 0, [1, 1]), Sent(5, 1, 4, [0])]
    with pytest.raises(ValueError, match=r"50\.\.1500"):
        await pile.setup(10, 0, 2000)
    with pytest.raises(ConfigError, match=r"ports must be 10"):
        make_driver(Device("vb2", "voltbay10", "l", 2, "c", (1,), ports=8), bus)


def alfen_image(cp: str = "C2", amps: float = 10.0, safe_a: float = 0.0) -> Image:
    regs: dict[int, int] = dict.fromkeys(range(300, 430), 0xFFFF)  # reserved read NaN
    regs.update(dict.fromkeys(range(1200, 1216), 0))

    def put(addr: int, value: float, vtype: str) -> None:
        for i, w in enumerate(encode_value(value, vtype)):
            regs[addr + i] = w

    for n in range(3):
        put(320 + 2 * n, amps, "f32")
    put(344, 3 * 230 * amps, "f32")
    put(374, 1234567.5, "f64")
    letters = cp.encode().ljust(10, b"\0")
    for i in range(5):
        regs[1201 + i] = struct.unpack(">H", letters[2 * i : 2 * i + 2])[0]
    put(1208, 42, "u32")
    put(1212, safe_a, "f32")
    regs[1215] = 3
    return Image(holding=regs)


async def test_alfen_reads_writes_and_heartbeats_by_the_setpoint() -> None:
    image = alfen_image()
    bus, client, clock = rig(image)
    box = make_driver(Device("wb", "alfen_ng9xx", "l", 1, "c", (1, 2, 3), max_current_a=16), bus)
    assert isinstance(box, EvseDriver)
    hot = await run_virtual(clock, box.read_hot())
    assert hot.cp_letter == "C" and hot.charging and hot.current_a == (10.0, 10.0, 10.0)
    assert hot.power_w == 6900 and hot.energy_wh == 1234567 and hot.phases == 3
    assert hot.watchdog_remaining_s == 42 and hot.tap is None and hot.bad == ()
    assert [(s.function, s.addr, s.payload) for s in client.sent] == [(3, 320, 58), (3, 1201, 15)]
    client.sent.clear()
    assert await run_virtual(clock, box.setup(10)) is True  # its safe current reads 0 A
    assert client.sent[0] == Sent(16, 1, 1210, [0, 0])  # paused, as one f32 in one frame
    await run_virtual(clock, box.set_current(12.34))
    (hi, lo) = client.sent[-1].payload  # type: ignore[misc]
    assert struct.unpack(">f", struct.pack(">HH", hi, lo))[0] == pytest.approx(12.3)
    await run_virtual(clock, box.heartbeat())  # no heartbeat register: the setpoint again
    assert client.sent[-1] == client.sent[-2] and client.sent[-1].addr == 1210
    with pytest.raises(ValueError, match=r"0 or 6\.\.16"):
        await box.set_current(5)
    bus2, _, clock2 = rig(alfen_image(safe_a=16.0), unit=2)
    box2 = make_driver(Device("wb2", "alfen_ng9xx", "l", 2, "c", (1, 2, 3)), bus2)
    assert isinstance(box2, EvseDriver)
    assert await run_virtual(clock2, box2.setup(10)) is False  # 16 A while the daemon is away
    bad = alfen_image(cp="X")
    bus3, _, clock3 = rig(bad, unit=3)
    box3 = make_driver(Device("wb3", "alfen_ng9xx", "l", 3, "c", (1, 2, 3)), bus3)
    with pytest.raises(Exception, match="cp_state"):
        await run_virtual(clock3, box3.read_hot())
