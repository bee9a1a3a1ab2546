"""E-bike charger profiles: stages, ramp, inrush, plugged-while-open, appliances."""

from __future__ import annotations

import numpy as np
import pytest

from chargectl.sim.physics.chargers import (
    PROFILES,
    STAGE_CC,
    STAGE_CV,
    STAGE_FLOAT,
    ChargerBank,
)

V = 220.0


def run(bank: ChargerBank, energized: np.ndarray, seconds: float, dt: float = 1.0) -> list[float]:
    """Step power and charge together; the socket watts of socket 0 each step."""
    out = []
    for _ in range(round(seconds / dt)):
        _, w = bank.power(dt, energized, V)
        bank.charge(dt, w)
        out.append(float(w[0]))
    return out


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_profile_ends_in_float(name: str) -> None:
    b = ChargerBank(1)
    b.plug(0, name, 0.2)
    on = np.ones(1, dtype=bool)
    watts = run(b, on, 14 * 3600.0, dt=10.0)
    p = PROFILES[name]
    assert b.stage[0] == STAGE_FLOAT
    assert 100.0 <= max(watts) <= 500.0  # DOMAIN.md: 100..500 W at the socket
    assert max(watts) == pytest.approx(p.full_w, rel=1e-6)
    assert 10.0 <= watts[-1] <= 20.0  # the float stage


def test_lead48_reaches_float_in_hours_and_passes_through_cv() -> None:
    b = ChargerBank(1)
    b.plug(0, "lead48", 0.2)
    on = np.ones(1, dtype=bool)
    stages = []
    t = 0.0
    while b.stage[0] != STAGE_FLOAT and t < 20 * 3600:
        run(b, on, 60.0, dt=10.0)
        t += 60.0
        stages.append(int(b.stage[0]))
    assert STAGE_CC in stages and STAGE_CV in stages
    assert 5 * 3600 <= t <= 9 * 3600  # from 20 %: DOMAIN.md's 6..8 h are from empty


def test_lithium_holds_full_power_to_90_percent() -> None:
    b = ChargerBank(1)
    b.plug(0, "li48", 0.85)
    on = np.ones(1, dtype=bool)
    full = PROFILES["li48"].full_w
    while b.soc[0] < 0.895:
        w = run(b, on, 10.0, dt=1.0)
        assert w[-1] == pytest.approx(full)
    run(b, on, 600.0)
    assert b.stage[0] == STAGE_CV and run(b, on, 1.0)[-1] < full


def test_power_returning_draws_an_inrush_peak_then_ramps_to_full() -> None:
    b = ChargerBank(2, ramp_s=1.5)
    b.plug(0, "li72", 0.2)
    on = np.array([True, True])
    full_a = PROFILES["li72"].full_w / PROFILES["li72"].power_factor / V
    amps, pulses = [], []
    for _ in range(25):
        a, _ = b.power(0.1, on, V)
        amps.append(float(a[0]))
        pulses.append(float(b.pulse_a[0]))
    # The inrush is a 35 A peak of a few ms in the first step only, not in the RMS current.
    assert pulses == [35.0] + [0.0] * 24
    assert amps[0] == pytest.approx(full_a * 0.1 / 1.5)
    assert amps[1] < amps[5] < amps[14]  # the ramp
    assert amps[14] == pytest.approx(full_a)  # full after 1.5 s
    assert amps[24] == pytest.approx(full_a)
    a, w = b.power(0.1, on, V)
    assert a[1] == 0.0 and w[1] == 0.0 and b.pulse_a[1] == 0.0  # an empty socket: nothing
    # The peak follows the voltage (a capacitor charging through a resistance).
    b.power(0.1, ~on, V)
    b.power(0.1, on, 198.0)
    assert b.pulse_a[0] == pytest.approx(35.0 * 198.0 / 220.0)


@pytest.mark.parametrize("volts", [198.0, 220.0, 242.0])
@pytest.mark.parametrize("name", sorted(PROFILES))
def test_a_charger_is_a_constant_power_load(name: str, volts: float) -> None:
    """I = P / (V * pf): the same watts at any voltage, more amps as it sags."""
    b = ChargerBank(1)
    b.plug(0, name, 0.2)
    on = np.ones(1, dtype=bool)
    for _ in range(20):
        a, w = b.power(0.1, on, volts)
    p = PROFILES[name]
    assert w[0] == pytest.approx(p.full_w)
    assert a[0] == pytest.approx(p.full_w / (volts * p.power_factor))
    assert 0.5 <= p.power_factor <= 0.99


def test_cheap_chargers_have_no_pfc_and_a_plug_may_override_it() -> None:
    cheap = [p for p in PROFILES.values() if p.name.endswith("-cheap")]
    assert len(cheap) >= 2 and all(0.55 <= p.power_factor <= 0.65 for p in cheap)
    b = ChargerBank(2)
    b.plug(0, "li60-cheap", 0.2)
    b.plug(1, "li48", 0.2, power_factor=0.6)
    on = np.ones(2, dtype=bool)
    for _ in range(20):
        a, w = b.power(0.1, on, V)
    assert a[0] == pytest.approx(w[0] / V / 0.55)  # 1.8x what watts / volts suggests
    assert a[1] == pytest.approx(w[1] / V / 0.6)
    with pytest.raises(ValueError, match="power_factor"):
        b.plug(0, "li48", 0.2, power_factor=0.3)


def test_a_nearly_full_pack_restarts_in_cc_at_every_close_then_floats_again() -> None:
    """A lead48 in float is switched off and on (rotation): it starts again in CC at full
    power, holds it 120 s, its CV current then falls from full with a 600 s time constant and
    it floats again when that is under a fifth: 120 + 600 x ln(5) = 1086 s after the close."""
    b = ChargerBank(1)
    b.plug(0, "lead48", 0.99)
    on, off = np.ones(1, dtype=bool), np.zeros(1, dtype=bool)
    run(b, on, 3 * 3600.0)
    assert b.stage[0] == STAGE_FLOAT
    float_w = run(b, on, 1.0)[-1]
    assert float_w == pytest.approx(15.0)
    run(b, off, 60.0)
    full = PROFILES["lead48"].full_w
    w = run(b, on, 120.0)
    assert b.stage[0] == STAGE_CC and w[-1] == pytest.approx(full)
    w = run(b, on, 300.0)
    assert b.stage[0] == STAGE_CV
    # 420 s after the close: 300 s into the taper (1 s resolution of the charge update).
    assert w[-1] == pytest.approx(full * np.exp(-300.0 / 600.0), rel=0.01)
    t = 420.0
    while b.stage[0] != STAGE_FLOAT:
        run(b, on, 1.0)
        t += 1.0
    assert t == pytest.approx(120.0 + 600.0 * np.log(5.0), abs=2.0)
    # A pack still in CC is not disturbed: it goes on as before.
    c = ChargerBank(1)
    c.plug(0, "li48", 0.5)
    run(c, on, 60.0)
    run(c, off, 60.0)
    assert run(c, on, 10.0)[-1] == pytest.approx(PROFILES["li48"].full_w)


def test_plugged_while_open_waits_and_starts_on_close() -> None:
    b = ChargerBank(1)
    b.plug(0, "lead48", 0.2)
    off = np.zeros(1, dtype=bool)
    assert run(b, off, 60.0) == [0.0] * 60
    assert b.soc[0] == 0.2
    on = np.ones(1, dtype=bool)
    w = run(b, on, 5.0)
    assert w[0] > 0.0 and w[-1] == pytest.approx(PROFILES["lead48"].full_w)
    # Opened again: drops to nothing at once, ramps again on the next close.
    assert run(b, off, 1.0) == [0.0]
    assert run(b, on, 1.0, dt=0.1)[0] < PROFILES["lead48"].full_w


def test_unplug_and_heater() -> None:
    b = ChargerBank(1)
    b.plug(0, "li48", 0.3)
    b.unplug(0)
    on = np.ones(1, dtype=bool)
    assert run(b, on, 3.0) == [0.0] * 3
    b.set_appliance(0, 2000.0)
    a, w = b.power(0.1, on, V)
    assert w[0] == 2000.0 and a[0] == pytest.approx(2000.0 / V)


def test_bad_input_is_named() -> None:
    b = ChargerBank(1)
    with pytest.raises(KeyError, match="unknown charger profile 'li99'; known: lead48"):
        b.plug(0, "li99", 0.2)
    with pytest.raises(ValueError, match="soc"):
        b.plug(0, "li48", 1.5)
