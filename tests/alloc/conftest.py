"""The `slow` variants run only when asked for (`pytest -m slow`, `make test-long`)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "slow" in (config.getoption("markexpr") or ""):
        return
    slow = [i for i in items if i.get_closest_marker("slow") and "/alloc/" in str(i.path)]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if item not in slow]
