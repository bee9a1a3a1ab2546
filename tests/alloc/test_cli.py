"""`chargectl plan`: the result as JSON, exit 2 with a message naming the culprit."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from chargectl.cli import main
from tests.alloc.test_jsonio import DOC


def test_plan_prints_the_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "problem.json"
    path.write_text(json.dumps(DOC))
    assert main(["plan", str(path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["setpoints"] == {"pile-a/1": 1.4, "wallbox-1": 16.0}
    assert out["circuits"]["main"]["planned_a"] == pytest.approx([19.4, 16.5, 16.0])
    assert out["circuits"]["main"]["binding"] == [False, False, False]
    assert out["infeasible"] == []


def test_plan_reads_standard_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = {
        "circuits": [{"id": "main", "limit_a": [3, None, None], "unmanaged_a": [4, 0, 0]}],
        "bays": [],
    }
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(doc)))
    assert main(["plan", "-", "--indent", "0"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert json.loads(out)["infeasible"] == [["main", 1]]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "problem.json: not JSON"),
        (
            json.dumps({**DOC, "bays": [{**DOC["bays"][0], "circuit": "nowhere"}]}),
            "problem.json: bay 'pile-a/1': unknown circuit 'nowhere'",
        ),
        (
            json.dumps({**DOC, "circuits": [{**DOC["circuits"][0], "parent": "main"}]}),
            r"problem.json: circuit 'main': parents form a cycle \(main -> main\)",
        ),
    ],
)
def test_bad_problems_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = tmp_path / "problem.json"
    path.write_text(text)
    assert main(["plan", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("chargectl plan: ")
    assert re.search(message, captured.err)


def test_a_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(tmp_path / "nope.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_the_installed_command_reads_a_pipe() -> None:
    exe = Path(sys.executable).parent / "chargectl"
    bad = {**DOC, "bays": [{**DOC["bays"][1], "phases": [1, 1, 2]}]}
    done = _run([str(exe), "plan", "-"], json.dumps(bad))
    assert done.returncode == 2
    assert "bay 'wallbox-1'" in done.stderr and "phases[2]: expected 0 or 1" in done.stderr
    ok = _run([str(exe), "plan", "-"], json.dumps(DOC))
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["setpoints"]["wallbox-1"] == 16.0


def _run(argv: list[str], stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=60, check=False
    )
