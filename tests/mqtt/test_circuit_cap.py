"""circuits/limit through a real mosquitto into the daemon on the simulator: a cap below the
present load brings the true current under it within the controller's reaction, is shown in
the status, the state, the metrics and the view, and lets go by itself; bad caps are refused
on cmd/result and change nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chargectl.outputs.view import render_status
from tests.integration.helpers import metric, open_sessions, scrape, trace_truth
from tests.mqtt.broker import SHED, Broker, operator
from tests.mqtt.central import TICK_S, central, command, mqtt_config, subscribed
from tests.rig import running_shed

pytestmark = pytest.mark.timeout(90)

# One simulator step (0.1 s) for the write to take effect, and scheduling on a busy box.
MARGIN_S = 0.5
TTL_S = 4.0


async def test_a_cap_keeps_the_true_current_under_it_and_lets_go_when_it_runs_out(
    broker: Broker, tmp_path: Path
) -> None:
    bays = [f"pile-a/{p}" for p in range(1, 9)]
    cfg = mqtt_config(
        tmp_path,
        broker,
        control={"min_off_s": 1},  # sockets shed by the cap may close again soon after it
        sim={"chargers": [{"bay": b, "profile": "li72", "soc": 0.3} for b in bays]},
    )
    async with operator(broker.port) as op, running_shed(cfg) as rig:
        await open_sessions(rig, bays)
        await rig.wait_for(lambda: rig.truth()["bays_charging"] >= 8, 10, "8 bays charging")
        await rig.ticks(int(2 / TICK_S))  # past the chargers' ramps
        load = rig.truth()["circuits"]["main"]["amps"][0]
        cap = round(load / 2, 1)
        assert cap >= 6.0, f"too little load to cap: {load} A"
        with trace_truth(rig) as trace:
            t0 = rig.sim.world.now
            got = await command(
                op, "circuits/limit", {"circuit": "main", "limit_a": cap, "ttl_s": TTL_S}, "c-1"
            )
            assert got == {
                "id": "c-1",
                "command": "circuits/limit",
                "ok": True,
                "result": {"circuit": "main", "cap_a": cap, "ttl_s": TTL_S},
            }
            await rig.ticks(2)
            main = rig.status()["circuits"][0]
            assert main["limit_a"] == [cap]
            assert main["cap"]["limit_a"] == cap and 0 < main["cap"]["left_s"] <= TTL_S
            assert f"CAPPED from above at {cap:.1f} A" in render_status(rig.status())
            samples = await scrape(rig)
            assert metric(samples, "chargectl_circuit_limit_amperes", circuit="main") == cap
            state = json.loads(await op.payload(f"chargectl/{SHED}/state"))
            while state["circuits"][0]["cap_a"] is None:  # one summarised before the cap
                state = json.loads(await op.payload(f"chargectl/{SHED}/state"))
            assert state["circuits"][0]["plan_limit_a"] == [cap]
            assert state["circuits"][0]["limit_a"] == [30.0]  # as configured
            # Runs out by itself on the daemon's clock, then the shed takes its limit back.
            await rig.wait_for(lambda: rig.status()["circuits"][0]["cap"] is None, TTL_S + 3)
            t_end = rig.sim.world.now
            assert rig.status()["circuits"][0]["limit_a"] == [30.0]
            await rig.wait_for(
                lambda: rig.truth()["circuits"]["main"]["amps"][0] > cap + 2.5, 10, "load back"
            )
        t, amps = trace.circuit_without_inrush("main", t0 + TICK_S + MARGIN_S)
        under = amps[t < t0 + TTL_S, 0]
        assert len(under) >= 20
        assert under.max() <= cap, f"{under.max():.2f} A over the {cap} A cap"
        assert t_end - t0 >= TTL_S - 0.2  # it held for its ttl
        assert rig.truth()["trips"] == []
        lines = list(rig.daemon.events.lines)
    assert any(f"capped from above at {cap:g} A for 4 s" in line for line in lines)


MAIN = '{"circuit": "main", '
RANGE = "ttl_s must be above 0 and at most 86400 s, got "
BAD_CAPS = [
    (MAIN + '"limit_a": "10", "ttl_s": 60}', "field 'limit_a' must be a number, got a string '10'"),
    (MAIN + '"limit_a": NaN, "ttl_s": 60}', "payload holds NaN: only finite numbers are JSON"),
    (MAIN + '"limit_a": -3, "ttl_s": 60}', "limit_a must be at least 0 A, got -3"),
    (
        MAIN + '"limit_a": 31, "ttl_s": 60}',
        "limit_a 31 A is above main's configured limit of 30 A: a cap may only lower it",
    ),
    ('{"circuit": "row-z", "limit_a": 10, "ttl_s": 60}', "unknown circuit 'row-z'; known: main"),
    (MAIN + '"limit_a": 10, "ttl_s": 0}', RANGE + "0"),
    (MAIN + '"limit_a": 10, "ttl_s": 86401}', RANGE + "86401"),
    (MAIN + '"limit_a": 10, "ttl_s": "1h"}', "field 'ttl_s' must be a number, got a string '1h'"),
    (MAIN + '"limit_a": 10, "ttl_s": true}', "field 'ttl_s' must be a number, got a boolean True"),
    (MAIN + '"limit_a": 10}', "missing field 'ttl_s' (a number)"),
    (
        MAIN + '"limit_a": 10, "ttl_s": 60, "phase": 1}',
        "unknown field 'phase'; known: id, circuit, limit_a, ttl_s",
    ),
]


async def test_a_bad_cap_is_refused_on_cmd_result_and_changes_nothing(
    broker: Broker, tmp_path: Path
) -> None:
    cfg = mqtt_config(tmp_path, broker)
    async with operator(broker.port) as op, running_shed(cfg) as rig:
        await subscribed(rig)
        good = {"circuit": "main", "limit_a": 20, "ttl_s": 600}
        assert (await command(op, "circuits/limit", good, "good"))["ok"]
        caps = rig.core.external.in_force(rig.daemon.clock.now())
        for n, (payload, error) in enumerate(BAD_CAPS):
            got = await command(op, "circuits/limit", payload[:-1] + f', "id": {n}}}')
            # Not JSON as Python's reader would take it: no id could be read from it.
            assert got["id"] == (None if "NaN" in payload else n)
            assert (got["ok"], got["error"]) == (False, error), payload
            assert rig.core.external.in_force(rig.daemon.clock.now()) == caps, payload
        await rig.ticks(1)
        assert rig.status()["circuits"][0]["cap"]["limit_a"] == 20.0
        # The same refusals over the local HTTP API, which serves the same table.
        code, answer = await rig.api("/circuits/limit", {**good, "limit_a": 45})
        assert (code, answer["error"]) == (400, BAD_CAPS[3][1].replace("31", "45"))
        code, answer = await rig.api("/circuits/limit", {**good, "limit_a": 30})  # clears
        assert (code, answer) == (200, {"circuit": "main", "cap_a": None})
        assert rig.core.external.in_force(rig.daemon.clock.now()) == {}


async def test_the_energy_manager_may_cap_circuits_and_nothing_else(
    broker: Broker, tmp_path: Path
) -> None:
    cfg = mqtt_config(tmp_path, broker)
    async with central(broker.port, "energy") as energy, running_shed(cfg) as rig:
        await subscribed(rig)
        # The broker drops what the ACL does not allow: the stop never reaches the shed, so
        # the first answer is the cap's.
        await energy.send(f"chargectl/{SHED}/cmd/alarm/clear", '{"id": "no"}')
        body = {"circuit": "main", "limit_a": 12.5, "ttl_s": 30}
        got = await command(energy, "circuits/limit", body, "yes")
        assert (got["id"], got["ok"]) == ("yes", True)
        assert rig.core.external.in_force(rig.daemon.clock.now())["main"].limit_a == 12.5
