"""The drivers' one error taxonomy.

A bad value in a non-critical field is not an error: the reading carries that field as None
and lists it (`readings.BadField`), and the device stays up (docs/modbus.md has the table).

Every error names the device (its config id, or `bus/unit` before a driver attached a name)
and, where there is one, the register. Nothing here decides about retries: the bus does, by
class (`bus.RETRIED`), and nowhere else.

    DeviceError
    ├── DeviceTimeout     no (valid) answer within the timeout: the unit may be gone
    ├── ConnectionLost    the line itself is down (TCP gateway unreachable, serial port gone)
    ├── DeviceDown        not asked at all: the unit is down and its next probe is not due yet
    ├── ExceptionReply    the unit answered with a Modbus exception: an answer, never retried
    ├── BadValue          the unit answered, but a critical value makes no physical sense
    └── ConfigError       a register map or a device config the drivers cannot work with
"""

from __future__ import annotations

# Modbus exception codes people meet on these lines (the rest print as a number).
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    6: "device busy",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


class DeviceError(Exception):
    """Base of every driver error. `device` names the device, `register` the address or None."""

    def __init__(self, device: str, message: str, register: int | None = None) -> None:
        where = device if register is None else f"{device} register {register}"
        super().__init__(f"{where}: {message}")
        self.device = device
        self.register = register
        self.detail = message


class DeviceTimeout(DeviceError):
    """No answer (or only an undecodable one) within the request's timeout."""


class ConnectionLost(DeviceError):
    """The connection to the line is down; nothing could be sent."""


class DeviceDown(DeviceError):
    """The unit is known to be down and is only asked again at its next probe (backoff)."""


class ExceptionReply(DeviceError):
    """The unit answered a Modbus exception (e.g. 02 illegal address, 03 illegal value)."""

    def __init__(self, device: str, code: int, function: int, register: int) -> None:
        name = EXCEPTION_NAMES.get(code, "unknown exception")
        super().__init__(
            device, f"exception {code:02d} ({name}) to function {function:02d}", register
        )
        self.code = code
        self.function = function


class BadValue(DeviceError):
    """A value outside physical sense, or a reply that does not fit the request."""

    def __init__(self, device: str, register: int, value: object, why: str) -> None:
        super().__init__(device, f"bad value {value!r}: {why}", register)
        self.value = value
        self.why = why


class ConfigError(DeviceError):
    """A register map or device config the drivers cannot use (a kind, a map file, a field)."""
