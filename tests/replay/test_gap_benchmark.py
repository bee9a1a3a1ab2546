"""benchmarks/replay_gap.py: the served gap split by who lost it, and the bound and Jain's
index with the sessions the shed alarm ended stopping where they ended."""

from __future__ import annotations

from types import ModuleType

import pytest

from tests.benchmark_module import load_benchmark
from tests.replay.test_report import recording, session


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_benchmark("replay_gap")


def test_gap_by_group_and_the_alarms_share(bench: ModuleType) -> None:
    rec = recording(3600, duration_s=3600.0)  # an hour, one-second ticks
    rec.capacity_w[:] = 100_000.0  # never short: each session's bound is its own
    rec.waiting[10] = 1  # a shortage early on: every session below takes part
    rec.sessions = [
        # a car that could take 3 kWh in its hour (3 kW) and got 1 kWh: 2 kWh lost
        session(
            1,
            0.0,
            car=True,
            wanted_wh=5000.0,
            max_w=3000.0,
            delivered_wh=1000.0,
            end_reason="unplugged",
            end_at=3600.0,
            soc_end=0.2,
        ),
        # a bike that got all it wanted
        session(
            2,
            0.0,
            wanted_wh=100.0,
            max_w=200.0,
            delivered_wh=100.0,
            end_reason="full",
            end_at=1800.0,
            soc_end=1.0,
        ),
        # a bike the alarm ended at 30 min, 50 of 200 Wh in: 150 Wh lost
        session(
            3,
            0.0,
            wanted_wh=200.0,
            max_w=200.0,
            delivered_wh=50.0,
            end_reason="emergency",
            end_at=1800.0,
            soc_end=0.25,
        ),
    ]
    lines = bench.analyse(rec, top=2)
    groups = {line["group"]: line for line in lines if "group" in line}
    assert groups["car unplugged"]["gap_kwh"] == 2.0
    assert groups["socket full"]["gap_kwh"] == 0.0
    assert groups["socket emergency"]["gap_kwh"] == 0.15
    top = [line["session"] for line in lines if "session" in line]
    assert top == [1, 3]
    summary = lines[-1]
    assert summary["bound_kwh"] == 3.3  # 3 + 0.1 + 0.2
    # stopped at its end, the alarm's bike could take only 30 min at 200 W: 0.1 kWh
    assert summary["bound_kwh_emergency_stops"] == 3.2
    assert summary["served_emergency_stops"] == round(1.15 / 3.2, 4)
    assert summary["shortage_sessions"] == 3 and summary["shortage_emergency"] == 1
    assert summary["jain_without_emergency"] == round((0.2 + 1.0) ** 2 / (2 * (0.04 + 1.0)), 4)
