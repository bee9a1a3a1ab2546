"""The pymodbus 3.16.1 client behind the small `ModbusClient` interface the bus talks to.

The adapter turns pymodbus's two error channels into plain ones: an exception reply becomes
its code (an answer), no reply or an undecodable one becomes `TimeoutError`, a missing
connection becomes `ConnectionError`. pymodbus is told not to retry (`retries=0`) and not to
reconnect on its own (`reconnect_delay=0`): the bus decides both. Its own timeout is only a
backstop behind the bus's (which follows the injected clock).

Imported lazily by the bus: pymodbus costs about 70 ms to import.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusIOException

from chargectl.config import RtuBus, TcpBus

_READS = {3: "read_holding_registers", 4: "read_input_registers"}

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
        if reply.isError():
            return int(reply.exception_code)
        return list(reply.registers)

    async def write(self, function: int, unit: int, addr: int, values: Sequence[int]) -> int | None:
        if function == 6:
            call = self._client.write_register(addr, values[0], device_id=unit)
        else:
            call = self._client.write_registers(addr, list(values), device_id=unit)
        reply = await self._call(call)
        if reply.isError():
            return int(reply.exception_code)
        return None

    @staticmethod
    async def _call(call: Any) -> Any:
        try:
            return await call
        except ConnectionException as exc:
            raise ConnectionError(str(exc)) from exc
        except ModbusIOException as exc:
            raise TimeoutError(str(exc)) from exc
