"""The bus: one attempt per request unless granted retry time, retry by class, a dead unit
costs one timeout and is then only probed with capped backoff, reconnects, health, logging."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargectl.config.schema import RtuBus, TcpBus
from chargectl.drivers.bus import ModbusBus
from chargectl.drivers.errors import (
    BadValue,
    ConfigError,
    ConnectionLost,
    DeviceDown,
    DeviceTimeout,
    ExceptionReply,
)
from chargectl.drivers.health import BusPolicy, backoff_s
from chargectl.runtime.clock import VirtualClock
from tests.drivers.fakes import Image, ScriptedClient, place, run_virtual

TIMEOUT = 0.5


def make(
    units: dict[int, Image] | None = None,
    *,
    policy: BusPolicy | None = None,
    config: TcpBus | RtuBus | None = None,
) -> tuple[ModbusBus, ScriptedClient, VirtualClock]:
    clock = VirtualClock()
    client = ScriptedClient(units if units is not None else {1: Image(input=place(range(10)))})
    bus = ModbusBus(
        config or TcpBus("line-1", "127.0.0.1", 502, timeout_s=TIMEOUT),
        clock,
        client_factory=lambda: client,
        policy=policy,
        rng=random.Random(7),
    )
    return bus, client, clock


async def test_read_returns_registers_and_counts_health() -> None:
    bus, client, clock = make()
    bus.attach(1, "pile-a")
    assert await run_virtual(clock, bus.read_input(1, 2, 3)) == [2, 3, 4]
    h = bus.health(1)
    assert (h.up, h.requests, h.consecutive_failures, h.errors) == (True, 1, 0, {})
    assert (h.device, h.name) == ("pile-a", "pile-a (line-1 unit 1)")
    assert client.connects == 1 and clock.now() == 0.0


async def test_a_silent_unit_costs_exactly_one_timeout_by_default() -> None:
    bus, client, clock = make()
    client.silent.add(1)
    with pytest.raises(DeviceTimeout) as info:
        await run_virtual(clock, bus.read_input(1, 0, 4))
    assert clock.now() == pytest.approx(TIMEOUT)
    assert len(client.sent) == 1
    assert "line-1/1" in str(info.value) and "register 0" in str(info.value)


async def test_retry_for_s_retries_timeouts_with_backoff_within_the_grant() -> None:
    bus, client, clock = make()
    client.silent.add(1)
    with pytest.raises(DeviceTimeout):
        await run_virtual(clock, bus.write_register(1, 0, 5, retry_for_s=2.0))
    # Every attempt costs TIMEOUT plus a short backoff; no attempt starts after the grant.
    assert 3 <= len(client.sent) <= 4
    assert clock.now() <= 2.0 + TIMEOUT
    h = bus.health(1)
    assert h.errors == {"DeviceTimeout": 1}  # one failed request, however many attempts


async def test_retry_for_s_succeeds_when_the_unit_comes_back() -> None:
    bus, client, clock = make()
    client.silent.add(1)

    async def heal() -> None:
        await clock.sleep(0.7)
        client.silent.discard(1)

    heal_task = asyncio.ensure_future(heal())
    await run_virtual(clock, bus.write_register(1, 0, 5, retry_for_s=3.0))
    await heal_task
    assert client.units[1].holding[0] == 5 and len(client.sent) >= 2
    assert bus.health(1).up


async def test_exception_reply_is_final_and_proves_the_unit_is_there() -> None:
    bus, client, clock = make()
    with pytest.raises(ExceptionReply) as info:
        await run_virtual(clock, bus.read_input(1, 50, 2, retry_for_s=5.0))
    assert info.value.code == 2 and info.value.register == 50
    assert len(client.sent) == 1 and clock.now() == 0.0
    h = bus.health(1)
    assert h.up and h.errors == {"ExceptionReply": 1} and h.consecutive_failures == 1


async def test_a_reply_of_the_wrong_length_is_a_bad_value() -> None:
    bus, client, clock = make()
    client.short_reply.add(1)
    with pytest.raises(BadValue, match="has 3 registers, not 4"):
        await run_virtual(clock, bus.read_input(1, 0, 4))


async def test_down_after_two_silences_then_probed_with_capped_growing_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    policy = BusPolicy(down_after=2, probe_base_s=1.0, probe_max_s=4.0)
    bus, client, clock = make(policy=policy)
    bus.attach(1, "pile-a")
    client.silent.add(1)
    caplog.set_level(logging.INFO, "chargectl.drivers.bus")

    # One "tick" per virtual second: every tick asks once.
    asked_at: list[float] = []
    for _tick in range(40):
        sent_before = len(client.sent)
        with pytest.raises((DeviceTimeout, DeviceDown)):
            await run_virtual(clock, bus.read_input(1, 0, 1))
        if len(client.sent) > sent_before:
            asked_at.append(round(clock.now(), 3))
        await run_virtual(clock, clock.sleep(1.0 - (clock.now() % 1.0)))

    h = bus.health(1)
    assert not h.up and h.skipped > 0 and h.next_probe_at is not None
    # The first two ticks are real attempts; then the gaps grow and stay within the cap
    # (+1 tick of granularity, +the timeout).
    gaps = [b - a for a, b in itertools.pairwise(asked_at)]
    assert gaps[0] == pytest.approx(1.0)
    assert all(g <= 4.0 + 1.0 + TIMEOUT for g in gaps)
    assert max(gaps) > 2.0  # it did back off
    assert len(asked_at) < 20  # of 40 ticks, most were skipped
    down_logs = [r for r in caplog.records if "down after" in r.getMessage()]
    assert len(down_logs) == 1 and "pile-a" in down_logs[0].getMessage()

    client.silent.discard(1)
    await run_virtual(clock, clock.sleep(5.0))  # past any probe time
    assert await run_virtual(clock, bus.read_input(1, 0, 1)) == [0]
    assert bus.health(1).up
    back = [r for r in caplog.records if "answering again" in r.getMessage()]
    assert len(back) == 1


async def test_a_dead_unit_costs_one_timeout_per_tick_and_then_nothing() -> None:
    units = {u: Image(input=place([u] * 8)) for u in (1, 2, 3)}
    bus, client, clock = make(units)
    client.silent.add(2)
    costs = []
    for _tick in range(12):
        start = clock.now()
        for unit in (1, 2, 3):
            try:
                await run_virtual(clock, bus.read_input(unit, 0, 8))
            except (DeviceTimeout, DeviceDown):
                assert unit == 2
        costs.append(clock.now() - start)
        await run_virtual(clock, clock.sleep(1.0))
    assert costs[0] == pytest.approx(TIMEOUT) and costs[1] == pytest.approx(TIMEOUT)
    assert max(costs) <= TIMEOUT + 1e-9
    # Down after two ticks, then probed at growing intervals: most ticks cost nothing.
    assert costs.count(0.0) >= 6
    assert costs[-1] == 0.0 or costs[-2] == 0.0
    assert bus.health(1).up and bus.health(3).up


async def test_a_tick_of_several_requests_to_a_dead_unit_pays_one_timeout() -> None:
    bus, client, clock = make()
    client.silent.add(1)
    start = clock.now()
    for request in (bus.read_input(1, 0, 4), bus.write_register(1, 1, 7), bus.read_input(1, 9, 1)):
        with pytest.raises((DeviceTimeout, DeviceDown)):
            await run_virtual(clock, request)
    assert clock.now() - start == pytest.approx(TIMEOUT)
    assert len(client.sent) == 1 and bus.health(1).skipped == 2


async def test_failed_first_connect_is_retried_after_backoff_not_before() -> None:
    bus, client, clock = make()
    client.connect_results = [False, False]
    with pytest.raises(ConnectionLost, match="connect"):
        await run_virtual(clock, bus.read_input(1, 0, 1))
    with pytest.raises(ConnectionLost, match="next try in"):
        await run_virtual(clock, bus.read_input(1, 0, 1))
    assert client.connects == 1  # the second request did not even try
    await run_virtual(clock, clock.sleep(BusPolicy().connect_base_s))
    with pytest.raises(ConnectionLost):
        await run_virtual(clock, bus.read_input(1, 0, 1))
    assert client.connects == 2
    await run_virtual(clock, clock.sleep(2 * BusPolicy().connect_base_s))
    assert await run_virtual(clock, bus.read_input(1, 0, 1)) == [0]
    assert client.connects == 3 and bus.connected


async def test_a_lost_link_is_connection_lost_and_the_next_request_reconnects() -> None:
    bus, client, clock = make()
    await run_virtual(clock, bus.read_input(1, 0, 1))
    client.drop_next = True
    with pytest.raises(ConnectionLost, match="peer reset"):
        await run_virtual(clock, bus.read_input(1, 0, 1))
    assert await run_virtual(clock, bus.read_input(1, 1, 1)) == [1]
    assert client.connects == 2


async def test_tcp_line_silent_for_long_is_reconnected() -> None:
    units = {u: Image(input=place([0])) for u in (1, 2, 3, 4, 5)}
    bus, client, clock = make(units, policy=BusPolicy(silence_reconnect=4, down_after=99))
    await run_virtual(clock, bus.read_input(1, 0, 1))
    client.silent.update(units)
    for unit in (1, 2, 3, 4):
        with pytest.raises(DeviceTimeout):
            await run_virtual(clock, bus.read_input(unit, 0, 1))
    assert not bus.connected
    client.silent.clear()
    assert await run_virtual(clock, bus.read_input(5, 0, 1)) == [0]
    assert client.connects == 2


async def test_rtu_line_is_not_reconnected_for_silence() -> None:
    units = {u: Image(input=place([0])) for u in (1, 2, 3, 4, 5)}
    config = RtuBus("rs485-1", "/dev/null", timeout_s=TIMEOUT)
    bus, client, clock = make(units, policy=BusPolicy(silence_reconnect=2), config=config)
    client.silent.update(units)
    for unit in (1, 2, 3, 4):
        with pytest.raises(DeviceTimeout):
            await run_virtual(clock, bus.read_input(unit, 0, 1))
    assert bus.connected and client.connects == 1


async def test_one_request_in_flight_per_line() -> None:
    units = {u: Image(input=place(range(4))) for u in range(1, 9)}
    bus, client, clock = make(units)
    results = await run_virtual(clock, asyncio.gather(*(bus.read_input(u, 0, 4) for u in units)))
    assert results == [[0, 1, 2, 3]] * 8
    assert client.max_in_flight == 1


async def test_a_driver_reported_bad_value_counts_but_keeps_the_unit_up() -> None:
    bus, _client, _clock = make()
    bus.report(1, BadValue("pile-a", 16, 65535, "absurd"))
    h = bus.health(1)
    assert h.up and h.errors == {"BadValue": 1} and "absurd" in (h.last_error or "")


def test_attach_refuses_two_devices_on_one_unit_and_bad_unit_ids() -> None:
    bus, _client, _clock = make()
    bus.attach(1, "pile-a")
    bus.attach(1, "pile-a")  # the same device again is fine
    with pytest.raises(ConfigError, match="already pile-a"):
        bus.attach(1, "pile-b")
    with pytest.raises(ConfigError, match=r"1\.\.247"):
        bus.attach(0, "x")


async def test_bad_arguments_are_refused_before_the_line() -> None:
    bus, client, _clock = make()
    with pytest.raises(ValueError, match="16 bits"):
        await bus.write_register(1, 0, 70000)
    with pytest.raises(ValueError, match=r"1\.\.123"):
        await bus.write_registers(1, 0, [])
    with pytest.raises(ValueError, match="cannot read"):
        await bus.read_input(1, 0, 126)
    assert client.sent == []


async def test_real_clock_small_timeout() -> None:
    """The same path on the real clock: a silent unit costs its timeout, no more."""
    from chargectl.runtime.clock import RealClock

    client = ScriptedClient({1: Image(input=place([1]))})
    client.silent.add(1)
    clock = RealClock()
    bus = ModbusBus(
        TcpBus("l", "127.0.0.1", 1, timeout_s=0.05), clock, client_factory=lambda: client
    )
    start = clock.now()
    with pytest.raises(DeviceTimeout):
        await bus.read_input(1, 0, 1)
    assert 0.04 <= clock.now() - start < 0.5


@given(
    attempt=st.integers(0, 200),
    base=st.floats(0.001, 10.0),
    cap=st.floats(0.001, 100.0),
    seed=st.integers(0, 2**32),
)
def test_backoff_is_jittered_within_half_and_full_and_capped(
    attempt: int, base: float, cap: float, seed: int
) -> None:
    full = min(cap, base * 2.0**attempt)
    d = backoff_s(attempt, base, cap, random.Random(seed))
    assert full / 2 - 1e-12 <= d <= full + 1e-12
    assert d <= cap + 1e-12
