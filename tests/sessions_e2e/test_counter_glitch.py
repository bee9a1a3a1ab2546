"""Energy you can bill, against the simulator over Modbus TCP: a pile's energy register that
jumps a million Wh ahead for a moment, then one that drops behind, are set aside by the daemon
(counted, never billed) and the true value after each is billed again: the ledger matches the
true energy within 1 Wh."""

from __future__ import annotations

from pathlib import Path

import pytest

from chargectl.adapters.sessions import max_power_w
from chargectl.config.load import load_shed
from chargectl.control.layout import build_layout
from chargectl.runtime import daemon as app
from tests.rig import CARD, running_shed
from tests.sessions_e2e.shed import (
    SPEED,
    check_energy,
    counter,
    e2e_config,
    until_charging,
    until_ended,
    until_running,
)

pytestmark = pytest.mark.timeout(120)

BAY = "pile-a/7"
PORT = 7


def _with_limits(monkeypatch: pytest.MonkeyPatch, cfg: Path) -> None:
    """The daemon's SessionManager gets the bays' plausible power from the config, as the app
    hands it over (kept if the app passes its own)."""
    shed = load_shed(cfg)
    limits = max_power_w(shed, build_layout(shed))
    real = app.SessionManager

    def manager(*args, **kwargs):  # type: ignore[no-untyped-def]
        return real(*args, **{"max_power_w": limits, **kwargs})

    monkeypatch.setattr(app, "SessionManager", manager)


async def test_a_glitching_counter_is_not_billed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = e2e_config(tmp_path, chargers=[{"bay": BAY, "profile": "li48", "soc": 0.3}])
    _with_limits(monkeypatch, cfg)
    async with running_shed(cfg, speed=SPEED) as rig:
        pile = rig.sim.world.models["pile-a"]
        mgr = rig.daemon.sessions

        def true_wh() -> float:
            return float(pile.snapshot()["energy_wh"][PORT - 1])

        start = counter(rig.sim, BAY)
        rig.tap(BAY, CARD)
        row = await until_running(rig, BAY)
        await until_charging(rig, BAY)
        await rig.wait_for(lambda: counter(rig.sim, BAY) > start + 2, 20, "energy flowing")

        for n, offset in enumerate((1_000_000.0, -min(500.0, true_wh()))):
            pile.set_energy_wh(PORT, true_wh() + offset)  # the register glitches
            await rig.wait_for(
                lambda n=n: mgr.readout().counter_anomalies > n, 10, "the daemon to see it"
            )
            s = mgr.session_at(BAY)
            assert s is not None and s.energy_wh < 1000, s
            pile.set_energy_wh(PORT, true_wh() - offset)  # and reads true again
            seen = counter(rig.sim, BAY)
            await rig.wait_for(
                lambda seen=seen: (
                    (mgr.session_at(BAY) is not None)
                    and (mgr.session_at(BAY).counter_last or 0) >= seen
                ),  # type: ignore[union-attr]
                10,
                "the true value billed again",
            )

        rig.tap(BAY, CARD)  # the same card: user_stop
        ended = await until_ended(rig, BAY)
        assert ended.id == row.id and ended.reason == "user_stop"
        got = await check_energy(rig, ended, start)
        assert 0 < got < 1000
        assert mgr.readout().counter_resets == 0
