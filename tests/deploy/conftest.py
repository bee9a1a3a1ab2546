"""Fixtures for the metrics and deploy tests."""

from __future__ import annotations

import pytest

from chargectl.config.schema import Shed
from chargectl.outputs.metrics import ShedMetrics
from tests.deploy.sheds import BUILD, make_shed


@pytest.fixture
def shed() -> Shed:
    return make_shed()


@pytest.fixture
def metrics(shed: Shed) -> ShedMetrics:
    return ShedMetrics(shed, build=BUILD)
