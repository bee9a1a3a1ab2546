"""The contract devices' decoders as the tests call them: register lists from address 0 in,
readings out, through the generic role drivers and the shipped `pile` and `evse` templates
(so every assertion on the contract pages runs against the template-driven code)."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace

from chargectl.drivers import evse as evse_role
from chargectl.drivers import pile as pile_role
from chargectl.drivers.counters import CounterMemory
from chargectl.drivers.readings import EvseHot, PileHot, PileSlow
from chargectl.drivers.template import Image, shipped

PILE = shipped()["pile"]
EVSE = shipped()["evse"]


def image(regs: Sequence[int], at: int = 0, table: str = "input") -> Image:
    return {(table, at + i): v for i, v in enumerate(regs)}


def _pile_hot(device: str, ports: int, regs: Sequence[int]) -> PileHot:
    return pile_role.decode_hot(PILE, device, ports, image(regs))


def _pile_slow(
    device: str,
    ports: int,
    energy: Sequence[int],
    power: Sequence[int],
    temps: Sequence[int],
    *,
    counters: CounterMemory | None = None,
) -> PileSlow:
    t = PILE.fields
    regs = {
        **image(energy, t["port_energy"].address),
        **image(power, t["port_power"].address),
        **image(temps, t["port_temperature"].address),
    }
    return pile_role.decode_slow(PILE, device, ports, regs, counters=counters)


def _hot_count(ports: int) -> int:
    (block,) = pile_role.hot_blocks(PILE, ports)
    assert block.address == 0
    return block.count


def _evse_hot(
    device: str, phases: int | None, regs: Sequence[int], counters: CounterMemory | None = None
) -> EvseHot:
    return evse_role.decode_hot(EVSE, device, phases, image(regs), counters)


pile = SimpleNamespace(
    decode_hot=_pile_hot,
    decode_slow=_pile_slow,
    hot_count=_hot_count,
    MODEL=PILE.fields["model"].equals,
    PROTOCOL=PILE.fields["protocol_version"].equals,
)
evse = SimpleNamespace(
    decode_hot=_evse_hot,
    deci_amps=lambda amps: evse_role.setpoint_raw(EVSE, amps),
    MODEL=EVSE.fields["model"].equals,
    PROTOCOL=EVSE.fields["protocol_version"].equals,
)
