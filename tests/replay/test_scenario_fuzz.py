"""Any YAML gives a Scenario or a ScenarioError: a few hundred mutations of the shipped
scenarios (lines dropped, doubled or swapped, values replaced by odd ones), seeded."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from chargectl.replay.scenario import SHIPPED, ScenarioError, parse_scenario

ODD = [
    "[]",
    "{}",
    "null",
    "-1",
    "0",
    "1e999",
    ".nan",
    "x",
    "'18:00'",
    "25:61",
    "99:00:00",
    "true",
    "[1, 2, 3]",
    "{a: 1}",
    "&a [*a]",
    "!!binary aGk=",
    "!!python/object:os.system x",
    "!!int x",
    "<<: 1",
    "'\\x00'",
    "1h1h",
    "-5m",
    "2000000",
    "pile-a1/999",
    "meter-main",
    "wb-1",
    "crash",
    "smoke",
    "../nowhere.yaml",
    "/",
]


def mutate(text: str, rng: random.Random) -> str:
    lines = text.splitlines()
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(lines))
        op = rng.randrange(5)
        if op == 0:
            del lines[i]
        elif op == 1:
            lines.insert(i, lines[i])
        elif op == 2:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif ":" in lines[i]:
            head, _, _ = lines[i].rpartition(":")
            lines[i] = f"{head}: {rng.choice(ODD)}" + ("}" if "{" in head else "")
        else:
            lines[i] = " " * rng.randrange(4) + lines[i]
        if not lines:
            lines = [""]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name", ["faults", "evening-peak", "winter-lead-acid"])
def test_mutated_scenarios_load_or_raise_only_scenario_errors(name: str) -> None:
    text = (SHIPPED / f"{name}.yaml").read_text()
    source = SHIPPED / f"{name}.yaml"  # the shed path stays relative to the shipped folder
    rng = random.Random(name)
    raised = 0
    for _ in range(120):
        mutated = mutate(text, rng)
        try:
            parse_scenario(mutated, source)
        except ScenarioError as exc:
            raised += 1
            assert exc.problems
            for p in exc.problems:  # the scenario's, or its shed config's
                assert "\n" not in str(p) and p.file and p.message
    assert raised > 30  # the mutations do break files


def test_odd_top_level_values_for_every_key() -> None:
    keys = ["shed", "start", "duration", "seed", "tick_s", "arrivals", "cars", "unmanaged"]
    base = (SHIPPED / "faults.yaml").read_text()
    loaded = []
    for key in [*keys, "faults"]:
        for odd in ODD:
            try:  # a duplicate key (but tick_s, absent from the file), and an odd value
                parse_scenario(f"{base}\n{key}: {odd}\n", Path(SHIPPED / "faults.yaml"))
            except ScenarioError:
                continue
            loaded.append((key, odd))
    assert loaded == [("tick_s", "null")]  # null: the shed's tick
