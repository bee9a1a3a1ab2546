"""Fixtures for the config tests: write a config text to tmp_path and load it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from chargectl.config.load import ConfigError, Problem, load_checked


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str, name: str = "shed.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def problems(write: Callable[[str], Path]) -> Callable[[str], list[Problem]]:
    """Every problem of a config text, errors and warnings, in the loader's order."""

    def problems(text: str) -> list[Problem]:
        try:
            return list(load_checked(write(text)).warnings)
        except ConfigError as exc:
            return list(exc.problems)

    return problems


@pytest.fixture
def errors(write: Callable[[str], Path]) -> Callable[[str], list[Problem]]:
    """The errors of a config text that must fail to load."""

    def errors(text: str) -> list[Problem]:
        with pytest.raises(ConfigError) as info:
            load_checked(write(text))
        assert info.value.errors, "a ConfigError must carry at least one error"
        return list(info.value.errors)

    return errors
