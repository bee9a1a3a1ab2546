"""`chargectl check`: exit codes and output format, through `chargectl.cli.main`."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from chargectl.cli import main
from tests.config.cfgtext import BASE, edit, line_of

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"
# FILE:LINE: PATH: MESSAGE (a warning's MESSAGE starts with "warning: ").
PROBLEM = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<path>[\w.\[\]-]+): (?P<message>.+)$")

Write = Callable[..., Path]


def test_examples_check_clean(capsys: pytest.CaptureFixture[str]) -> None:
    small, campus = EXAMPLES / "small.yaml", EXAMPLES / "campus.yaml"
    assert main(["check", str(small), str(campus)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines() == [
        f"{small}: ok: 1 circuit, 1 bus, 2 devices, 12 bays, 0 warnings",
        f"{campus}: ok: 3 circuits, 3 buses, 15 devices, 202 bays, 0 warnings",
    ]


def test_every_problem_printed_as_file_line_path_message(
    write: Write, capsys: pytest.CaptureFixture[str]
) -> None:
    text = edit(BASE, "limit_a: 30", "limit_a: -5")
    text = edit(text, "kind: pile", "kind: pyle")
    text = edit(text, "unit: 2,", "unit: 1,\n     prots: 3,")
    path = write(text)
    assert main(["check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    *problems, summary = err.splitlines()
    parsed = [PROBLEM.match(line) for line in problems]
    assert all(parsed), problems
    got = {(m["file"], int(m["line"]), m["path"], m["message"]) for m in parsed if m}
    kind = next(p for p in got if p[2] == "devices[2].kind")
    assert kind[1] == line_of(text, "kind: pyle")
    assert kind[3].startswith("unknown device kind 'pyle'; known: ")
    assert {"evse", "pile", "sdm120", "sdm630"} <= set(kind[3].split("known: ")[1].split(", "))
    assert got - {kind} == {
        (str(path), line_of(text, "limit_a: -5"), "circuits[1].limit_a", "must be > 0, got -5"),
        (
            str(path),
            line_of(text, "prots: 3"),
            "devices[3].prots",
            "unknown key 'prots'; did you mean 'ports'?",
        ),
    }
    assert [int(m["line"]) for m in parsed if m] == sorted(int(m["line"]) for m in parsed if m)
    assert summary == f"{path}: 3 errors, 0 warnings"


def test_warnings_go_to_stderr_and_exit_zero(
    write: Write, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(edit(BASE, "limit_a: 30", "limit_a: 33"))
    assert main(["check", str(path)]) == 0
    out, err = capsys.readouterr()
    [warning] = err.splitlines()
    m = PROBLEM.match(warning)
    assert m and m["path"] == "circuits[1].limit_a" and m["message"].startswith("warning: ")
    assert out.strip().endswith("1 warning")


def test_strict_turns_warnings_into_failure(
    write: Write, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(edit(BASE, "limit_a: 30", "limit_a: 33"))
    assert main(["check", "--strict", str(path)]) == 2
    assert main(["check", "--strict", str(EXAMPLES / "small.yaml")]) == 0


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "absent.yaml"
    assert main(["check", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0] == f"{missing}: cannot read: No such file or directory"


def test_syntax_error_exits_2_with_line(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    text = edit(BASE, "  name: test\n", "  name: [test\n")
    path = write(text)
    assert main(["check", str(path)]) == 2
    first = capsys.readouterr().err.splitlines()[0]
    assert re.match(rf"^{re.escape(str(path))}:\d+: YAML syntax error", first), first


def test_one_bad_file_among_good_ones_exits_2(
    write: Write, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write("- not a shed\n", "bad.yaml")
    assert main(["check", str(EXAMPLES / "small.yaml"), str(bad)]) == 2
    out, err = capsys.readouterr()
    assert "small.yaml: ok" in out and f"{bad}:1: the top level must be a mapping" in err


def test_no_config_argument_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["check"])
    assert info.value.code == 2


def test_console_script_exit_code(write: Write) -> None:
    # The installed entry point, as a person runs it (and the check stays import-light).
    path = write(edit(BASE, "ports: 10", "ports: 40"))
    run = subprocess.run(
        [sys.executable, "-m", "chargectl.cli", "check", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert run.returncode == 2
    assert "devices[2].ports: a pile of kind 'pile' has 1..32 ports, got 40" in run.stderr
