"""`check` is the gatekeeper (issue 9): mutations of the shipped examples never make `check`
raise, and every config it accepts can be assembled as `chargectl run` assembles it.

Each example is one of the shipped sheds (small, campus, small with MQTT on) with a few
mutations: a value replaced by another type, an extreme, NaN, a huge or negative number, an
exponent written YAML 1.1 reads as a string, unicode and control characters; a key dropped; a
list entry duplicated (duplicate ids); a list reordered; a reference swapped for another id
(or that id with `/1`, the shape of a bay). `check` must answer problems or OK; for OK,
`chargectl.runtime.daemon.build_offline`
(everything `run` does before its first I/O) must not raise.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargectl.config.load import ConfigError, parse_shed
from chargectl.runtime.daemon import build_offline

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ("small.yaml", "campus.yaml")


class Plain(str):
    """A scalar written exactly as given, unquoted (`1e300`, `010`): YAML reads it itself."""


class _Dumper(yaml.SafeDumper):
    pass


def _plain(dumper: yaml.SafeDumper, value: Plain) -> yaml.ScalarNode:
    # Tagged as YAML itself resolves the plain text, the emitter writes it unquoted.
    tag = dumper.resolve(yaml.ScalarNode, str(value), (True, False))
    return dumper.represent_scalar(tag, str(value))


_Dumper.add_representer(Plain, _plain)


def _bases() -> list[dict[str, Any]]:
    bases = [yaml.safe_load((ROOT / "deploy/examples" / f).read_text()) for f in EXAMPLES]
    with_mqtt = copy.deepcopy(bases[0])
    with_mqtt["shed"]["name"] = "shed-7"
    with_mqtt["mqtt"] = {
        "host": "broker.example.net",
        "tls": True,
        "username": "shed-7",
        "password_file": "mqtt.pw",
        "queue_size": 1000,
    }
    return [*bases, with_mqtt]


BASES = _bases()

# Values a careless installer or an attacker writes.
HOSTILE: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    3,
    33,
    248,
    65536,
    2**31,
    2**63,
    2**64 + 1,
    -(2**63),
    10**30,
    0.5,
    -0.0,
    1e-320,
    1e300,
    -1e300,
    math.nan,
    math.inf,
    -math.inf,
    "",
    " ",
    "x",
    "30",
    "ü∆名",
    "a\x00b",
    "line\nbreak",
    "\u202egnp.exe",
    "a/b",
    "+#",
    "::1",
    "0.0.0.0",
    "localhost",
    "a b",
    "/",
    Plain("1e300"),
    Plain("1e-320"),
    Plain("-1E5"),
    Plain("1.5e3"),
    Plain("1e400"),
    Plain("0x1F"),
    Plain("010"),
    Plain("1:30"),
    Plain(".nan"),
    Plain("-.inf"),
    [],
    {},
    [1, 2, 3],
    [1, 1],
    [4],
    {"a": 1},
]

values = st.one_of(
    st.sampled_from(HOSTILE),
    st.floats(min_value=0, max_value=100),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
OPS = ("set", "set", "set", "drop", "duplicate", "reorder", "swap", "swap", "scale")
mutation = st.tuples(st.sampled_from(OPS), st.integers(min_value=0, max_value=10**6), values)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if prefix:
        yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


def _ids(data: Any) -> list[str]:
    out: list[str] = []
    for section in ("circuits", "buses", "devices"):
        items = data.get(section) if isinstance(data, dict) else None
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and "id" in item:
                out.append(str(item["id"]))
    return out


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        node = node[p]
    return node


def mutate(data: Any, op: str, pick: int, value: Any) -> None:
    paths = list(_paths(data))
    # scale and swap aim at the leaves they fit (a number, a reference), so that more of the
    # mutants still load and go on to the assembly.
    fits = {
        "scale": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "swap": lambda v: isinstance(v, str),
    }.get(op)
    if fits is not None:
        paths = [p for p in paths if fits(_get(data, p))] or paths
    if not paths:
        return
    path = paths[pick % len(paths)]
    parent = _get(data, path[:-1])
    key = path[-1]
    old = parent[key]
    if op == "set":
        parent[key] = copy.deepcopy(value)
    elif op == "drop":
        del parent[key]
    elif op == "duplicate" and isinstance(parent, list):
        parent.insert(pick % (len(parent) + 1), copy.deepcopy(old))
    elif op == "reorder" and isinstance(parent, list):
        parent[:] = parent[pick % len(parent) :] + parent[: pick % len(parent)]
    elif op == "swap":
        ids = _ids(data)
        if ids:
            parent[key] = ids[pick % len(ids)] + ("", "/1", "/2")[pick % 3]
    elif op == "scale" and isinstance(old, int | float) and not isinstance(old, bool):
        parent[key] = old * (1000, -1, 1e300, 1e-300, 0.5)[pick % 5]
    else:
        parent[key] = copy.deepcopy(value)


def config_text(base: int, mutations: list[tuple[str, int, Any]]) -> str:
    data = copy.deepcopy(BASES[base])
    for op, pick, value in mutations:
        mutate(data, op, pick, value)
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


TALLY: Counter[str] = Counter()


def gatekeeper(text: str, source: Path) -> None:
    """`check` answers problems or OK; what it accepts, `run` can assemble."""
    TALLY["tried"] += 1
    try:
        checked = parse_shed(text, source)
    except ConfigError as exc:
        assert exc.errors, "a refused config names at least one error"
        for problem in exc.problems:
            assert "\n" not in str(problem)
            assert str(problem).startswith(f"{source}")
        return
    TALLY["accepted"] += 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_offline(checked.shed)


configs = st.tuples(
    st.integers(min_value=0, max_value=len(BASES) - 1),
    st.lists(mutation, min_size=1, max_size=2),
)


def _run(count: int, tmp: Path) -> Counter[str]:
    TALLY.clear()

    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(configs)
    def prop(case: tuple[int, list[tuple[str, int, Any]]]) -> None:
        gatekeeper(config_text(*case), tmp / "shed.yaml")

    prop()
    return Counter(TALLY)


def test_examples_pass_the_gatekeeper(tmp_path: Path) -> None:
    for name in EXAMPLES:
        text = (ROOT / "deploy/examples" / name).read_text()
        checked = parse_shed(text, tmp_path / name)
        build_offline(checked.shed)


@pytest.mark.timeout(120)
def test_check_is_the_gatekeeper(tmp_path: Path) -> None:
    tally = _run(1200, tmp_path)
    # Hypothesis stops early only when it has run out of distinct examples; it never does here.
    assert tally["tried"] >= 1000
    assert tally["accepted"] >= 50, tally  # the mutations still leave configs that load
    print(f"configs tried {tally['tried']}, accepted {tally['accepted']}, tracebacks 0")


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_check_is_the_gatekeeper_long(tmp_path: Path) -> None:
    tally = _run(20_000, tmp_path)
    assert tally["tried"] >= 15_000
    print(f"configs tried {tally['tried']}, accepted {tally['accepted']}, tracebacks 0")
