"""The pymodbus 3.16.1 client behind the small `ModbusClient` interface the bus talks to.

The adapter turns pymodbus's two error channels into plain ones: an exception reply becomes
its code (an answer), no reply or an undecodable one becomes `TimeoutError`, a missing
connection becomes `ConnectionError`. pymodbus is told not to retry (`retries=0`) and not to
reconnect on its own (`reconnect_delay=0`): the bus decides both. Its own timeout is only a
backstop behind the bus's (which follows the injected clock).

pymodbus matches a reply to its request by transaction id only: it hands back a reply of
another function (a 03 reply to a 04 read, any reply to a write) and a write echo naming
another address or value. Such a reply is not an answer to what was asked, so it is an
undecodable one (`TimeoutError`): a read gets no registers from it and, above all, a write it
seems to confirm stays unconfirmed.

Imported lazily by the bus: pymodbus costs about 70 ms to import.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusIOException

from chargectl.config.schema import RtuBus, TcpBus

_READS = {
    1: "read_coils",
    2: "read_discrete_inputs",
    3: "read_holding_registers",
    4: "read_input_registers",
}

# Our deadline fires first; pymodbus's is there only if ours were ever broken.
_BACKSTOP_S = 2.0


class PymodbusClient:
    """One pymodbus client (TCP or RTU); create it inside the running event loop."""

    def __init__(self, config: TcpBus | RtuBus) -> None:
        timeout = config.timeout_s + _BACKSTOP_S
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient
        if isinstance(config, TcpBus):
            self._client = AsyncModbusTcpClient(
                config.host,
                port=config.port,
                name=config.id,
                timeout=timeout,
                retries=0,
                reconnect_delay=0,
            )
        else:
            self._client = AsyncModbusSerialClient(
                config.port,
                name=config.id,
                baudrate=config.baudrate,
                parity=config.parity,
                stopbits=config.stopbits,
                bytesize=8,
                timeout=timeout,
                retries=0,
                reconnect_delay=0,
            )
        # pymodbus closes a TCP connection after a few unanswered requests; with one dead unit
        # behind a gateway that would cut every other unit off too. The bus decides instead.
        self._client.set_max_no_responses(1 << 30)

    @property
    def connected(self) -> bool:
        return bool(self._client.connected)

    async def connect(self) -> bool:
        return bool(await self._client.connect())

    def close(self) -> None:
        self._client.close()

    async def read(self, function: int, unit: int, addr: int, count: int) -> list[int] | int:
        method = getattr(self._client, _READS[function])
        reply = await self._call(method(addr, count=count, device_id=unit))
        code = _exception_code(reply, function)
        if code is not None:
            return code
        if function in (1, 2):
            return [int(bool(b)) for b in reply.bits[:count]]
        return [int(r) for r in reply.registers]

    async def write(self, function: int, unit: int, addr: int, values: Sequence[int]) -> int | None:
        if function == 5:
            call = self._client.write_coil(addr, bool(values[0]), device_id=unit)
            echo = (addr, len(values))
        elif function == 15:
            call = self._client.write_coils(addr, [bool(v) for v in values], device_id=unit)
            echo = (addr, len(values))
        elif function == 6:
            call = self._client.write_register(addr, values[0], device_id=unit)
            echo = (addr, values[0])
        else:
            call = self._client.write_registers(addr, list(values), device_id=unit)
            echo = (addr, len(values))
        reply = await self._call(call)
        code = _exception_code(reply, function)
        if code is not None:
            return code
        try:
            if function == 5:
                got = (int(reply.address), 1 if bool(reply.bits[0]) == bool(values[0]) else -1)
            else:
                echoed = reply.registers[0] if function == 6 else reply.count
                got = (int(reply.address), int(echoed))
        except (AttributeError, IndexError, TypeError, ValueError):
            raise TimeoutError(f"a write reply without its echo: {reply!r}") from None
        if got != echo:
            raise TimeoutError(f"write echo {got} does not match {echo}")
        return None

    @staticmethod
    async def _call(call: Any) -> Any:
        """The reply; pymodbus's decode errors (a frame it cannot parse) are no reply."""
        try:
            return await call
        except ConnectionException as exc:
            raise ConnectionError(str(exc)) from exc
        except ModbusIOException as exc:
            raise TimeoutError(str(exc)) from exc


def _exception_code(reply: Any, function: int) -> int | None:
    """The code of an exception reply to `function`, None for a normal reply to it; a reply
    to another function is no answer (TimeoutError)."""
    fc = int(getattr(reply, "function_code", -1))
    if fc == function | 0x80:
        return int(reply.exception_code)
    if fc != function:
        raise TimeoutError(f"a reply of function {fc:#04x} to a function {function:02d} request")
    return None
