"""benchmarks/firewatch.py kept working, at a few samples (the figures are the benchmark's):
the delay of the hard thresholds within one tick, healthy sessions without a finding, the
cost lines with their shares of the tick."""

from __future__ import annotations

import json
from types import ModuleType

import pytest

from tests.benchmark_module import load_benchmark


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_benchmark("firewatch")


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_hard_thresholds_within_one_tick(
    bench: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    bench.delay("heater", 4, 7, 10.0)
    bench.delay("modified_pack", 4, 7, 10.0, use_va=False)
    with_va, without = lines(capsys)
    assert with_va["detected"] == with_va["certain"] == 4
    assert with_va["delay_s_max"] is not None and with_va["delay_s_max"] <= 3.0
    assert without["detected"] == 4 and without["va"] is False


def test_healthy_sessions_find_nothing(bench: ModuleType) -> None:
    r = bench.healthy("lead72", 40, 3, 0)
    assert (r["sessions"], r["critical"], r["warning"]) == (40, 0, 0)
