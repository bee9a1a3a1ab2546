"""The checks that turn a template's YAML data into a `template.Template`.

Every problem raises `ConfigError` as `FILE:LINE: PATH: MESSAGE` (PATH like
`fields.port_current.scale`), naming what is wrong and what would be right.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn, cast

from chargectl.drivers.errors import ConfigError
from chargectl.drivers.template import (
    BIT_FIELDS,
    BIT_TABLES,
    MAX_PORTS,
    TABLES,
    WIDTH,
    Field,
    Role,
    Table,
    Template,
    slots_of,
)
from chargectl.drivers.template_fields import (
    ROLES,
    VOCABULARY,
    Term,
    capabilities_of,
    meter_required,
)

TOP_KEYS = {
    "common": {"kind", "role", "description", "source", "word_order", "max_gap", "readable"},
    "pile": {"ports"},
    "evse": {
        "phases",
        "min_current_a",
        "max_current_a",
        "step_a",
        "watchdog_s",
        "setpoint_heartbeat",
    },
    "meter": {"phases"},
}
FIELD_KEYS = {
    "table",
    "address",
    "type",
    "word_order",
    "scale",
    "per_port",
    "stride",
    "bits",
    "codes",
    "code_bits",
    "equals",
    "min",
    "max",
    "special",
    "writable",
}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


class TemplateParser:
    def __init__(self, where: str, lines: Mapping[str, int]) -> None:
        self.where = where
        self.lines = lines

    def fail(self, path: str, message: str) -> NoReturn:
        probe = path
        while probe and probe not in self.lines:  # the nearest enclosing key with a line
            probe = probe.rpartition(".")[0]
        line = self.lines.get(probe, self.lines.get("", 1))
        raise ConfigError(f"{self.where}:{line}", f"{path or '(top)'}: {message}")

    # ------------------------------------------------------------------ the top level
    def template(self, data: Any, path: Path | None) -> Template:
        if not isinstance(data, dict):
            self.fail("", f"a template must be a mapping (kind, role, fields, ...), got {data!r}")
        role = data.get("role")
        if role not in ROLES:
            self.fail("role", f"required, one of {', '.join(ROLES)}; got {role!r}")
        kind = data.get("kind")
        if not isinstance(kind, str) or not kind.strip():
            self.fail("kind", "required, a non-empty string (the file's name without .yaml)")
        known = TOP_KEYS["common"] | TOP_KEYS[role] | {"fields"}
        for key in data:
            if key not in known:
                self.fail(str(key), f"unknown key for a {role} (known: {', '.join(sorted(known))})")
        order = data.get("word_order", "big")
        if order not in ("big", "little"):
            self.fail("word_order", f"must be big or little, got {order!r}")
        max_gap = data.get("max_gap", 0)
        if not _is_int(max_gap) or not 0 <= max_gap <= 100:
            self.fail("max_gap", f"must be an integer 0..100, got {max_gap!r}")
        for key in ("description", "source"):
            if not isinstance(data.get(key, ""), str):
                self.fail(key, "must be a string")
        raw_fields = data.get("fields")
        if not isinstance(raw_fields, dict) or not raw_fields:
            self.fail("fields", "required, a mapping of field name -> {table, address, ...}")
        vocab = VOCABULARY[role]
        ports = self.ports(data) if role == "pile" else (1, 1)
        fields: dict[str, Field] = {}
        for name, spec in raw_fields.items():
            if name not in vocab:
                self.fail(
                    f"fields.{name}",
                    f"unknown field for a {role} (known: {', '.join(sorted(vocab))})",
                )
            fields[name] = self.field(role, str(name), vocab[name], spec, order=order, ports=ports)
        self.required(role, fields, data)
        self.overlaps(fields, ports[1])
        extra = self.role_constants(role, data, fields)
        return Template(
            kind=kind,
            role=cast(Role, role),
            description=str(data.get("description", "")),
            source=str(data.get("source", "")),
            path=path,
            fields=fields,
            max_gap=max_gap,
            readable=self.readable(data.get("readable", [])),
            ports=ports,
            capabilities=capabilities_of(
                role, set(fields), setpoint_watchdog=bool(extra.get("setpoint_heartbeat"))
            ),
            **extra,
        )

    def ports(self, data: Any) -> tuple[int, int]:
        raw = data.get("ports")
        if _is_int(raw):
            lo = hi = raw
        elif isinstance(raw, dict) and set(raw) == {"min", "max"}:
            lo, hi = raw["min"], raw["max"]
            if not (_is_int(lo) and _is_int(hi)) or lo > hi:
                self.fail("ports", f"min and max must be integers, min <= max; got {raw!r}")
        else:
            self.fail("ports", f"required: a port count or {{min: 1, max: 32}}; got {raw!r}")
        if not 1 <= lo <= hi <= MAX_PORTS:
            self.fail("ports", f"must lie within 1..{MAX_PORTS}, got {lo}..{hi}")
        return lo, hi

    def readable(self, raw: Any) -> tuple[tuple[Table, int, int], ...]:
        if not isinstance(raw, list):
            self.fail("readable", "must be a list of {table, first, last}")
        out: list[tuple[Table, int, int]] = []
        for i, r in enumerate(raw):
            p = f"readable[{i}]"
            if not isinstance(r, dict) or set(r) != {"table", "first", "last"}:
                self.fail(p, f"must be {{table, first, last}}, got {r!r}")
            if r["table"] not in TABLES:
                self.fail(f"{p}.table", f"must be one of {', '.join(TABLES)}")
            lo, hi = r["first"], r["last"]
            if not (_is_int(lo) and _is_int(hi)) or not 0 <= lo <= hi <= 0xFFFF:
                self.fail(p, f"first and last must be addresses, first <= last; got {lo}, {hi}")
            out.append((r["table"], lo, hi))
        return tuple(out)

    # ------------------------------------------------------------------ one field
    def field(
        self, role: str, name: str, term: Term, spec: Any, *, order: str, ports: tuple[int, int]
    ) -> Field:
        p = f"fields.{name}"
        if not isinstance(spec, dict):
            self.fail(p, f"must be a mapping {{table, address, type, ...}}, got {spec!r}")
        for key in spec:
            if key not in FIELD_KEYS:
                self.fail(f"{p}.{key}", f"unknown key (known: {', '.join(sorted(FIELD_KEYS))})")
        default_table = "holding" if term.write else "input"
        table = spec.get("table", default_table)
        allowed = ("holding", "coil") if term.write else TABLES
        if name == "failsafe_current" and spec.get("writable") is False:
            allowed = ("input", "holding")
        if table not in allowed:
            self.fail(f"{p}.table", f"must be one of {', '.join(allowed)}, got {table!r}")
        if table in BIT_TABLES and name not in BIT_FIELDS:
            self.fail(f"{p}.table", f"{name} is a number, not a bit: use input or holding")
        addr: Any = spec.get("address")
        if not _is_int(addr) or not 0 <= addr <= 0xFFFF:
            self.fail(f"{p}.address", f"required, an integer 0..65535, got {addr!r}")
        vtype = spec.get("type", "bit" if table in BIT_TABLES else "u16")
        if table in BIT_TABLES and vtype != "bit":
            self.fail(f"{p}.type", f"a {table} is one bit: leave type out or say bit")
        if table not in BIT_TABLES and (
            not isinstance(vtype, str) or vtype not in WIDTH or vtype == "bit"
        ):
            types = ", ".join(t for t in WIDTH if t != "bit")
            self.fail(f"{p}.type", f"must be one of {types}, got {vtype!r}")
        if name == "tap" and vtype != "u16":
            self.fail(f"{p}.type", "the tap is 6 u16 registers (seq, info, 4 of UID)")
        f_order = spec.get("word_order", order)
        if f_order not in ("big", "little"):
            self.fail(f"{p}.word_order", f"must be big or little, got {f_order!r}")
        scale = spec.get("scale", 1)
        if not _is_number(scale) or scale == 0:
            self.fail(f"{p}.scale", f"must be a non-zero number, got {scale!r}")
        per_port = spec.get("per_port", False)
        if not isinstance(per_port, bool):
            self.fail(f"{p}.per_port", f"must be true or false, got {per_port!r}")
        may_be_per_port = term.per_port or (name == "failsafe_mask" and table == "coil")
        if per_port != term.per_port and not (per_port and may_be_per_port):
            want = "per port (per_port: true)" if term.per_port else "not per port"
            self.fail(f"{p}.per_port", f"{name} is {want}")
        if name == "failsafe_mask" and (table == "coil") != per_port:
            self.fail(p, "failsafe_mask is a u16/u32 bit mask in holding, or per-port coils")
        width = 6 if name == "tap" else WIDTH[vtype]
        stride = spec.get("stride", width)
        if "stride" in spec and not per_port:
            self.fail(f"{p}.stride", "only a per-port field has a stride")
        if not _is_int(stride) or stride < width:
            self.fail(f"{p}.stride", f"must be an integer >= the value's width {width}")
        span = addr + (ports[1] - 1) * stride + width if per_port else addr + width
        if span > 0x10000:
            self.fail(f"{p}.address", f"{name} for {ports[1]} ports runs past 65535")
        f = Field(
            name=name,
            table=table,
            address=addr,
            type=vtype,
            word_order=f_order,
            scale=float(scale),
            per_port=per_port,
            stride=stride,
            bits=self.bits(p, name, term, spec, width),
            codes=self.codes(p, name, term, spec),
            code_bits=self.code_bits(p, spec, width),
            equals=self.equals(p, role, name, term, spec),
            min=self.limit(p, term, spec, "min"),
            max=self.limit(p, term, spec, "max"),
            special=self.special(p, term, spec),
            writable=self.writable(p, name, spec),
            line=self.lines.get(p, 0),
        )
        if f.min is not None and f.max is not None and f.min > f.max:
            self.fail(f"{p}.min", f"min {f.min:g} is above max {f.max:g}")
        return f

    def bits(self, p: str, name: str, term: Term, spec: Any, width: int) -> dict[str, int]:
        raw = spec.get("bits")
        if raw is None:
            return {}
        if not term.bits:
            self.fail(f"{p}.bits", f"{name} has no bit meanings")
        if not isinstance(raw, dict) or not raw:
            self.fail(f"{p}.bits", "must map meaning -> bit number")
        seen: dict[int, str] = {}
        for meaning, bit in raw.items():
            if meaning not in term.bits:
                self.fail(
                    f"{p}.bits.{meaning}",
                    f"not a meaning of {name} (known: {', '.join(sorted(term.bits))})",
                )
            if not _is_int(bit) or not 0 <= bit < 16 * width:
                self.fail(f"{p}.bits.{meaning}", f"must be a bit number 0..{16 * width - 1}")
            if bit in seen:
                self.fail(f"{p}.bits.{meaning}", f"bit {bit} is {seen[bit]} already")
            seen[bit] = meaning
        return dict(raw)

    def codes(self, p: str, name: str, term: Term, spec: Any) -> dict[int, str]:
        raw = spec.get("codes")
        if raw is None:
            return {}
        if not term.codes:
            self.fail(f"{p}.codes", f"{name} has no code meanings")
        if not isinstance(raw, dict) or not raw:
            self.fail(f"{p}.codes", "must map raw value -> meaning")
        allowed = term.codes | ({"none"} if name in ("port_state", "port_fault") else set())
        for value, meaning in raw.items():
            if not _is_int(value) or not 0 <= value <= 0xFFFF:
                self.fail(f"{p}.codes.{value}", "a code is an integer 0..65535")
            if not isinstance(meaning, str) or meaning not in allowed:
                self.fail(
                    f"{p}.codes.{value}",
                    f"{meaning!r} is not a meaning of {name} (known: {', '.join(sorted(allowed))})",
                )
        if len(set(raw.values())) != len(raw) and name == "cp_state":
            self.fail(f"{p}.codes", "each state may have one code")
        return dict(raw)

    def code_bits(self, p: str, spec: Any, width: int) -> tuple[int, int] | None:
        raw = spec.get("code_bits")
        if raw is None:
            return None
        if "codes" not in spec:
            self.fail(f"{p}.code_bits", "only with codes")
        ok = isinstance(raw, list) and len(raw) == 2 and all(_is_int(b) for b in raw)
        if not ok or not 0 <= raw[0] <= raw[1] < 16 * width:
            self.fail(f"{p}.code_bits", f"must be [first, last] bit within 0..{16 * width - 1}")
        bits = spec.get("bits") or {}
        clash = [m for m, b in bits.items() if raw[0] <= b <= raw[1]]
        if clash:
            self.fail(f"{p}.code_bits", f"overlaps bit {clash[0]}")
        return raw[0], raw[1]

    def equals(self, p: str, role: str, name: str, term: Term, spec: Any) -> Any:
        raw = spec.get("equals")
        if not term.equals:
            if raw is not None:
                self.fail(f"{p}.equals", f"only identity fields have equals, not {name}")
            return None
        if raw is None:
            self.fail(f"{p}.equals", f"required: the value every {name} reads")
        if raw == "ports" and role == "pile":
            return raw
        if not _is_int(raw) or not 0 <= raw <= 0xFFFF_FFFF:
            choices = "an integer or `ports`" if role == "pile" else "an integer"
            self.fail(f"{p}.equals", f"must be {choices}, got {raw!r}")
        return raw

    def limit(self, p: str, term: Term, spec: Any, key: str) -> float | None:
        raw = spec.get(key)
        if raw is None:
            return None
        if not term.ranged:
            self.fail(f"{p}.{key}", "only a written value with a range has min/max")
        if not _is_number(raw) or raw < 0:
            self.fail(f"{p}.{key}", f"must be a number >= 0, got {raw!r}")
        return float(raw)

    def special(self, p: str, term: Term, spec: Any) -> dict[str, int]:
        raw = spec.get("special")
        if raw is None:
            return {}
        if not term.special or not isinstance(raw, dict):
            self.fail(f"{p}.special", f"allowed: {', '.join(sorted(term.special)) or 'none'}")
        for k, v in raw.items():
            if k not in term.special or not _is_int(v) or not 0 <= v <= 0xFFFF:
                self.fail(f"{p}.special.{k}", f"must be one of {sorted(term.special)}: 0..65535")
        return dict(raw)

    def writable(self, p: str, name: str, spec: Any) -> bool:
        raw = spec.get("writable", True)
        if not isinstance(raw, bool) or (raw is False and name != "failsafe_current"):
            self.fail(f"{p}.writable", "only failsafe_current may say writable: false")
        return raw

    # ------------------------------------------------------------------ the whole
    def required(self, role: str, fields: dict[str, Field], data: Any) -> None:
        if role == "meter":
            phases = data.get("phases", 1)
            if phases not in (1, 3):
                self.fail("phases", f"must be 1 or 3, got {phases!r}")
            names = meter_required(phases)
        else:
            names = [n for n, t in VOCABULARY[role].items() if t.required]
        missing = [n for n in names if n not in fields]
        if missing:
            self.fail("fields", f"missing required field(s) for a {role}: {', '.join(missing)}")
        if role == "meter":
            n_ph = data.get("phases", 1)
            extra = [n for n in fields if n[-3:-1] == "_l" and int(n[-1]) > n_ph]
            if extra:
                self.fail(f"fields.{extra[0]}", f"beyond the meter's {n_ph} phase(s)")
        if role == "pile":
            state = fields.get("port_state")
            if "relay_closed" not in fields and (state is None or "relay_closed" not in state.bits):
                self.fail("fields", "the relay feedback is needed: port_state bits relay_closed, "
                                    "or a relay_closed field")  # fmt: skip
            if "fault_reset" in fields and not ("port_state" in fields or "port_fault" in fields):
                self.fail("fields.fault_reset", "needs port faults to clear (port_fault)")
        for name, f in fields.items():
            if name == "port_state" and not f.bits and not f.codes:
                self.fail(f"fields.{name}", "port_state needs bits, codes, or both")
            if name in ("status", "port_fault") and not f.bits and not f.codes:
                self.fail(f"fields.{name}", f"{name} needs bits (or codes)")
            if name == "cp_state" and not f.codes:
                self.fail(f"fields.{name}.codes", "required: raw value -> A..F")

    def overlaps(self, fields: dict[str, Field], ports: int) -> None:
        """Two fields sharing a register is a typo in a template, never intended."""
        seen: dict[tuple[str, int], str] = {}
        for s in slots_of(list(fields.values()), ports):
            f = s.field
            for r in range(s.address, s.address + f.width):
                other = seen.setdefault((f.table, r), f.name)
                if other != f.name:
                    self.fail(f"fields.{f.name}", f"overlaps {other} at {f.table} {r}")
                if f.per_port and (f.table, r) in seen and other == f.name:
                    continue

    def role_constants(self, role: str, data: Any, fields: dict[str, Field]) -> dict[str, Any]:
        if role == "meter":
            return {"phases": data.get("phases", 1)}
        if role == "pile":
            return {}
        phases = data.get("phases", 3)
        if phases not in (1, 3):
            self.fail("phases", f"must be 1 or 3, got {phases!r}")
        lo = data.get("min_current_a")
        if not _is_number(lo) or not 0 < lo <= 32:
            self.fail("min_current_a", f"required, the least current offered (6 A); got {lo!r}")
        rng = data.get("max_current_a")
        if not (isinstance(rng, list) and len(rng) == 2 and all(_is_number(x) for x in rng)):
            self.fail("max_current_a", f"required, [lowest, highest] maximum in A; got {rng!r}")
        if not lo <= rng[0] <= rng[1] <= 1000:
            self.fail("max_current_a", f"must satisfy min_current_a <= lowest <= highest: {rng}")
        step = data.get("step_a")
        if not _is_number(step) or not 0 < step <= 1:
            self.fail("step_a", f"required, the setpoint's resolution, 0 < step <= 1 A: {step!r}")
        wd = data.get("watchdog_s")
        if wd is not None and (not _is_int(wd) or not 1 <= wd <= 3600):
            self.fail("watchdog_s", f"must be seconds 1..3600, got {wd!r}")
        by_setpoint = data.get("setpoint_heartbeat", False)
        if not isinstance(by_setpoint, bool):
            self.fail("setpoint_heartbeat", "must be true or false")
        if by_setpoint and ("heartbeat" in fields or wd is None):
            self.fail("setpoint_heartbeat", "means no heartbeat field and a box-set watchdog_s")
        if wd is not None and "watchdog_timeout" in fields:
            self.fail("watchdog_s", "the timeout is written (watchdog_timeout): leave this out")
        return {
            "phases": phases,
            "min_current_a": float(lo),
            "max_current_a": (float(rng[0]), float(rng[1])),
            "step_a": float(step),
            "watchdog_s": wd,
            "setpoint_heartbeat": by_setpoint,
        }
