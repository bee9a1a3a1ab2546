"""`--templates DIR` on `check`, `run` and `demo` (repeatable): a model of one's own given on
the command line reaches the daemon's drivers and bays."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from chargectl.cli import build_parser, main
from chargectl.runtime.daemon import Daemon
from tests.config.cfgtext import BASE, edit
from tests.config.test_config_templates import ACME4, ACME_DEVICE, PILE


@pytest.mark.parametrize("command", [["check", "x.yaml"], ["run", "x.yaml"], ["demo"]])
def test_the_option_repeats(command: list[str]) -> None:
    args = build_parser().parse_args([*command, "--templates", "a", "--templates", "b"])
    assert args.templates == ["a", "b"]


@pytest.mark.parametrize("command", [["check", "x.yaml"], ["run", "x.yaml"], ["demo"]])
def test_a_directory_that_is_not_one(
    tmp_path: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope"
    assert main([*command, "--templates", str(missing)]) == 2
    assert capsys.readouterr().err.strip().endswith(f"--templates {missing}: not a directory")


def test_run_builds_the_daemon_with_the_templates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tpl = tmp_path / "tpl"
    tpl.mkdir()
    (tpl / "acme4.yaml").write_text(ACME4, encoding="utf-8")
    config = tmp_path / "shed.yaml"
    config.write_text(edit(BASE, PILE, PILE + ACME_DEVICE), encoding="utf-8")
    built: list[Daemon] = []

    async def no_run(self: Daemon, stop: asyncio.Event) -> None:  # assembled, never started
        built.append(self)

    monkeypatch.setattr(Daemon, "run", no_run)
    # Without the directory the kind is unknown: refused before any daemon is built.
    assert main(["run", str(config)]) == 2
    assert built == []
    assert main(["run", str(config), "--templates", str(tpl)]) == 0
    [daemon] = built
    assert daemon.io.drivers["acme-1"].template.kind == "acme4"
    assert [b.id for b in daemon.layout.bays if b.device == "acme-1"] == [
        f"acme-1/{p}" for p in range(1, 5)
    ]
