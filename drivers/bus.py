"""One `ModbusBus` per physical line: the client, one request in flight, timeouts, retries,
backoff, reconnects and the health of every unit on the line.

Why it is shaped like this:
- A control tick polls the devices of a line in turn, so a dead unit must cost at most one
  timeout per tick, not retries x timeout. A request therefore gets ONE attempt unless the
  caller grants it `retry_for_s` (start-up writes do; the tick does not: the next tick is the
  retry). Retries happen only for the classes in `RETRIED`, with capped, jittered backoff.
- A unit that stopped answering is declared down after `down_after` unanswered requests (logged
  once) and is then only probed at growing, jittered intervals; between probes a request fails
  at once with `DeviceDown`, so five dead piles on one RS485 line do not eat the line's tick.
  The first answer brings it back (logged once).
- Exception replies are answers: never retried, and they prove the unit is there.
- A non-critical field a driver found bad (`readings.BadField`) is not a failed request: it is
  counted per field in the unit's health (`bad_fields`), logged once when it goes bad and once
  when it is good again, and the unit stays up.
- pymodbus does not retry a failed first connect and, told not to, does not reconnect: the bus
  reconnects on demand, with backoff between failed attempts.
- Timeouts follow the injected clock, so a replay on virtual time sees a silent unit cost its
  timeout in virtual seconds, exactly like the edge box does in real ones.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

from chargectl.config.schema import RtuBus, TcpBus
from chargectl.drivers.errors import (
    BadValue,
    ConfigError,
    ConnectionLost,
    DeviceDown,
    DeviceError,
    DeviceTimeout,
    ExceptionReply,
)
from chargectl.drivers.health import BusPolicy, UnitHealth, UnitState, backoff_s
from chargectl.drivers.readings import BadField
from chargectl.runtime.clock import Clock, RealClock

log = logging.getLogger("chargectl.drivers.bus")

T = TypeVar("T")

# Retried within a request's `retry_for_s`; everything else is final at once.
RETRIED: tuple[type[DeviceError], ...] = (DeviceTimeout, ConnectionLost)
# Failures that mean "nobody answered": they (and only they) can take a unit down.
UNANSWERED: tuple[type[DeviceError], ...] = (DeviceTimeout, ConnectionLost)

MAX_READ = 125  # registers per read (Modbus)
MAX_WRITE = 123  # registers per function-16 write
MAX_COILS = 1968  # coils per function-15 write
READ_FUNCTION = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}


class ModbusClient(Protocol):
    """What the bus needs of a client: the pymodbus adapter, a test fake, a replay transport.

    `read`/`write` return an exception code (int) for a Modbus exception reply. They raise
    `TimeoutError` for no or an undecodable reply and `ConnectionError` (any `OSError`) when
    the link is down. They may also simply never return: the bus applies the timeout.
    """

    @property
    def connected(self) -> bool: ...
    async def connect(self) -> bool: ...
    def close(self) -> None: ...
    async def read(self, function: int, unit: int, addr: int, count: int) -> list[int] | int: ...
    async def write(
        self, function: int, unit: int, addr: int, values: Sequence[int]
    ) -> int | None: ...


ClientFactory = Callable[[], ModbusClient]


def pymodbus_factory(config: TcpBus | RtuBus) -> ClientFactory:
    """The real client for a config bus, built lazily (inside the running loop, as pymodbus
    requires, and without importing pymodbus until a line is actually used)."""

    def make() -> ModbusClient:
        from chargectl.drivers.transport import PymodbusClient

        return PymodbusClient(config)

    return make


class ModbusBus:
    def __init__(
        self,
        config: TcpBus | RtuBus,
        clock: Clock,
        *,
        client_factory: ClientFactory | None = None,
        policy: BusPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if config.timeout_s <= 0:
            raise ConfigError(config.id, f"timeout_s must be > 0, got {config.timeout_s}")
        self.config = config
        self.id = config.id
        self.timeout_s = config.timeout_s
        self._clock = clock
        self._real_time = isinstance(clock, RealClock)
        self._factory = client_factory or pymodbus_factory(config)
        self._policy = policy or BusPolicy()
        self._rng = rng or random.Random()
        self._lock = asyncio.Lock()  # one request in flight on the line
        self._client: ModbusClient | None = None
        self._units: dict[int, UnitState] = {}
        self._connect_failures = 0
        self._next_connect_at = 0.0
        self._connect_error = "never connected"
        self._lost_at: float | None = None
        self._bus_silent = 0

    # ------------------------------------------------------------------ units and health
    def attach(self, unit: int, device_id: str) -> None:
        """Name a unit after its device, for errors, logs and health."""
        if not 1 <= unit <= 247:
            raise ConfigError(device_id, f"unit id must be 1..247, got {unit} (bus {self.id})")
        name = f"{device_id} ({self.id} unit {unit})"
        known = self._units.get(unit)
        if known is not None and known.name != name:
            raise ConfigError(device_id, f"bus {self.id} unit {unit} is already {known.name}")
        if known is None:
            self._units[unit] = UnitState(unit, device_id, name)

    def health(self, unit: int) -> UnitHealth:
        u = self._unit(unit)
        return UnitHealth(
            unit=u.unit,
            device=u.device,
            name=u.name,
            up=u.up,
            since=u.since,
            consecutive_failures=u.consecutive,
            last_error=u.last_error,
            errors=dict(u.errors),
            requests=u.requests,
            skipped=u.skipped,
            next_probe_at=None if u.up else u.next_probe_at,
            bad_fields=dict(u.bad_fields),
        )

    def units(self) -> list[int]:
        return sorted(self._units)

    def report(self, unit: int, err: DeviceError) -> None:
        """A driver found a reply it cannot use (a `BadValue` while decoding): count it in the
        unit's health like any other failed request. The unit answered, so it stays up."""
        self._failed(self._unit(unit), err)

    def report_fields(self, unit: int, scope: str, bad: Sequence[BadField]) -> None:
        """A driver decoded a reading (`scope`: which one, e.g. a pile's "hot" or "slow") whose
        non-critical fields `bad` were out of range: count each; log a field once when it goes
        bad and once when a reading of the same scope has it good again."""
        u = self._unit(unit)
        now = frozenset(b.name for b in bad)
        was = u.bad_now.get(scope, frozenset())
        for b in bad:
            u.bad_fields[b.name] = u.bad_fields.get(b.name, 0) + 1
            if b.name not in was:
                log.warning("%s: %s", u.name, b)
        for name in sorted(was - now):
            log.info("%s: %s good again", u.name, name)
        if now or was:
            u.bad_now[scope] = now

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    async def close(self) -> None:
        async with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # ------------------------------------------------------------------ requests
    async def read_input(
        self, unit: int, addr: int, count: int, *, retry_for_s: float = 0.0
    ) -> list[int]:
        return await self._read(4, unit, addr, count, retry_for_s)

    async def read_holding(
        self, unit: int, addr: int, count: int, *, retry_for_s: float = 0.0
    ) -> list[int]:
        return await self._read(3, unit, addr, count, retry_for_s)

    async def read_coils(
        self, unit: int, addr: int, count: int, *, retry_for_s: float = 0.0
    ) -> list[int]:
        """Coils (function 01), one 0/1 per coil."""
        return await self._read(1, unit, addr, count, retry_for_s)

    async def read_discrete(
        self, unit: int, addr: int, count: int, *, retry_for_s: float = 0.0
    ) -> list[int]:
        """Discrete inputs (function 02), one 0/1 per input."""
        return await self._read(2, unit, addr, count, retry_for_s)

    async def read(
        self, table: str, unit: int, addr: int, count: int, *, retry_for_s: float = 0.0
    ) -> list[int]:
        """A read of `table` (input, holding, coil, discrete): a template's way in."""
        return await self._read(READ_FUNCTION[table], unit, addr, count, retry_for_s)

    async def write_coil(
        self, unit: int, addr: int, value: bool, *, retry_for_s: float = 0.0
    ) -> None:
        """One coil (function 05)."""
        _check_words(self._unit(unit).name, addr, [0])
        await self._write(5, unit, addr, [int(bool(value))], retry_for_s)

    async def write_coils(
        self, unit: int, addr: int, values: Sequence[bool], *, retry_for_s: float = 0.0
    ) -> None:
        """Contiguous coils in one frame (function 15)."""
        name = self._unit(unit).name
        if not 1 <= len(values) <= MAX_COILS:
            raise ValueError(f"{name}: a write carries 1..{MAX_COILS} coils, got {len(values)}")
        _check_words(name, addr, [0])
        await self._write(15, unit, addr, [int(bool(v)) for v in values], retry_for_s)

    async def write_register(
        self, unit: int, addr: int, value: int, *, retry_for_s: float = 0.0
    ) -> None:
        _check_words(self._unit(unit).name, addr, [value])
        await self._write(6, unit, addr, [value], retry_for_s)

    async def write_registers(
        self, unit: int, addr: int, values: Sequence[int], *, retry_for_s: float = 0.0
    ) -> None:
        name = self._unit(unit).name
        if not 1 <= len(values) <= MAX_WRITE:
            raise ValueError(f"{name}: a write carries 1..{MAX_WRITE} registers, got {len(values)}")
        _check_words(name, addr, values)
        await self._write(16, unit, addr, list(values), retry_for_s)

    async def _read(
        self, function: int, unit: int, addr: int, count: int, retry_for_s: float
    ) -> list[int]:
        u = self._unit(unit)
        most = MAX_READ if function in (3, 4) else 2000
        if not 1 <= count <= most or not 0 <= addr <= 0xFFFF - count + 1:
            raise ValueError(f"{u.name}: cannot read {count} registers at {addr}")

        async def attempt(client: ModbusClient) -> list[int]:
            reply = await client.read(function, unit, addr, count)
            if isinstance(reply, int):
                raise ExceptionReply(u.name, reply, function, addr)
            if len(reply) != count:
                # On RS485 a late answer to an earlier request can arrive in this one's place.
                why = f"reply to function {function:02d} has {len(reply)} registers, not {count}"
                raise BadValue(u.name, addr, len(reply), why)
            return reply

        return await self._request(u, function, addr, attempt, retry_for_s)

    async def _write(
        self, function: int, unit: int, addr: int, values: list[int], retry_for_s: float
    ) -> None:
        u = self._unit(unit)

        async def attempt(client: ModbusClient) -> None:
            code = await client.write(function, unit, addr, values)
            if code is not None:
                raise ExceptionReply(u.name, code, function, addr)

        await self._request(u, function, addr, attempt, retry_for_s)

    async def _request(
        self,
        u: UnitState,
        function: int,
        addr: int,
        attempt: Callable[[ModbusClient], Awaitable[T]],
        retry_for_s: float,
    ) -> T:
        start = self._clock.now()
        if not u.up and start < u.next_probe_at:
            u.skipped += 1
            wait = u.next_probe_at - start
            raise DeviceDown(
                u.name, f"down ({u.last_error}); next probe in {wait:.1f} s", register=addr
            )
        tries = 0
        while True:
            try:
                result = await self._attempt(u, function, addr, attempt)
            except RETRIED as err:
                wait = backoff_s(
                    tries, self._policy.retry_base_s, self._policy.retry_max_s, self._rng
                )
                if self._clock.now() + wait < start + retry_for_s:
                    tries += 1
                    await self._clock.sleep(wait)
                    continue
                self._failed(u, err)
                raise
            except DeviceError as err:
                self._failed(u, err)
                raise
            self._succeeded(u)
            return result

    async def _attempt(
        self,
        u: UnitState,
        function: int,
        addr: int,
        attempt: Callable[[ModbusClient], Awaitable[T]],
    ) -> T:
        async with self._lock:
            client = await self._connected_client(u, addr)
            u.requests += 1
            try:
                result = await self._within(attempt(client), self.timeout_s)
            except TimeoutError as exc:
                self._bus_silent += 1
                if (
                    isinstance(self.config, TcpBus)
                    and self._bus_silent >= self._policy.silence_reconnect
                ):
                    self._drop(f"no answer to {self._bus_silent} requests in a row")
                why = str(exc) or f"within {self.timeout_s:g} s"
                raise DeviceTimeout(
                    u.name, f"no answer to function {function:02d} ({why})", register=addr
                ) from None
            except OSError as exc:  # ConnectionError and friends: the link, not the unit
                self._drop(str(exc) or type(exc).__name__)
                raise ConnectionLost(u.name, f"line {self.id} lost: {exc}", register=addr) from None
            except DeviceError:
                self._bus_silent = 0  # the unit answered (an exception, or a bad reply)
                raise
            self._bus_silent = 0
            return result

    async def _connected_client(self, u: UnitState, addr: int) -> ModbusClient:
        if self._client is not None and self._client.connected:
            return self._client
        now = self._clock.now()
        if now < self._next_connect_at:
            wait = self._next_connect_at - now
            raise ConnectionLost(
                u.name,
                f"line {self.id} not connected ({self._connect_error}); next try in {wait:.1f} s",
                register=addr,
            )
        if self._client is None:
            self._client = self._factory()
        try:
            ok = await self._within(self._client.connect(), self.timeout_s)
            reason = "connect refused or failed"
        except TimeoutError:
            ok, reason = False, f"connect timed out after {self.timeout_s:g} s"
        except OSError as exc:
            ok, reason = False, f"connect failed: {exc}"
        if not ok or not self._client.connected:
            self._connect_failures += 1
            self._next_connect_at = now + backoff_s(
                self._connect_failures - 1,
                self._policy.connect_base_s,
                self._policy.connect_max_s,
                self._rng,
            )
            if self._connect_failures == 1:
                log.warning("bus %s: cannot connect: %s", self.id, reason)
            self._connect_error = reason
            self._client.close()
            raise ConnectionLost(u.name, f"line {self.id}: {reason}", register=addr)
        if self._lost_at is not None:
            log.info(
                "bus %s: connected again after %.1f s", self.id, self._clock.now() - self._lost_at
            )
        elif self._connect_failures:
            log.info("bus %s: connected after %d failed tries", self.id, self._connect_failures)
        self._connect_failures = 0
        self._next_connect_at = 0.0
        self._lost_at = None
        self._bus_silent = 0
        return self._client

    def _drop(self, why: str) -> None:
        """Close the connection; the next request reconnects."""
        if self._client is not None:
            self._client.close()
        if self._lost_at is None:
            log.warning("bus %s: connection dropped: %s", self.id, why)
            self._lost_at = self._clock.now()
        self._connect_error = why
        self._bus_silent = 0

    async def _within(self, aw: Awaitable[T], seconds: float) -> T:
        """Await `aw` for at most `seconds` of the injected clock; TimeoutError after that."""
        if self._real_time:  # the same thing, without two extra tasks per request
            async with asyncio.timeout(seconds):
                return await aw
        task = asyncio.ensure_future(aw)
        timer = asyncio.ensure_future(self._clock.sleep(seconds))
        try:
            await asyncio.wait((task, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            if not task.done():
                task.cancel()
                # Let the cancelled request unwind (it holds the client's own lock).
                await asyncio.wait((task,))
        if task.cancelled():
            raise TimeoutError
        return task.result()

    # ------------------------------------------------------------------ bookkeeping
    def _unit(self, unit: int) -> UnitState:
        u = self._units.get(unit)
        if u is None:
            self.attach(unit, f"{self.id}/{unit}")
            u = self._units[unit]
        return u

    def _failed(self, u: UnitState, err: DeviceError) -> None:
        now = self._clock.now()
        u.consecutive += 1
        kind = type(err).__name__
        u.errors[kind] = u.errors.get(kind, 0) + 1
        u.last_error = f"{kind}: {err.detail}"
        if isinstance(err, UNANSWERED):
            u.silent += 1
            if u.up and u.silent >= self._policy.down_after:
                u.up = False
                u.since = now
                u.probes = 0
                log.warning("%s: down after %d unanswered request(s): %s", u.name, u.silent, err)
            if not u.up and isinstance(err, ConnectionLost):
                u.next_probe_at = now  # the line's own backoff paces the retries, not the unit's
            elif not u.up:
                u.next_probe_at = now + backoff_s(
                    u.probes, self._policy.probe_base_s, self._policy.probe_max_s, self._rng
                )
                u.probes += 1
        else:
            self._answered(u, now)

    def _succeeded(self, u: UnitState) -> None:
        u.consecutive = 0
        self._answered(u, self._clock.now())

    def _answered(self, u: UnitState, now: float) -> None:
        u.silent = 0
        if not u.up:
            down_for = now - (u.since if u.since is not None else now)
            log.info("%s: answering again after %.1f s down", u.name, down_for)
            u.up = True
            u.since = now


def _check_words(name: str, addr: int, values: Sequence[int]) -> None:
    if not 0 <= addr <= 0xFFFF:
        raise ValueError(f"{name}: register address {addr} out of 0..65535")
    for i, v in enumerate(values):
        if not 0 <= v <= 0xFFFF:
            raise ValueError(f"{name}: register {addr + i}: {v} does not fit 16 bits")
