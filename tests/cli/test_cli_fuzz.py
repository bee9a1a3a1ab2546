"""The staff command line with hostile arguments (issue 9): every command, every argument.

Each case puts one hostile value (edge dates, numbers that are not numbers or are tiny, huge or
negative, UIDs of odd lengths and characters, names with control and bidi characters, bays no
shed has, paths to nothing) into one argument of one command, with the others valid. The
command either does its job (exit 0: a hostile-looking name may still be a fine name) or
refuses: exit 2 and one line that names the command and what is wrong; never a traceback, never
another exit code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargectl.cli import main

pytestmark = pytest.mark.timeout(300)

SHED = """\
shed: {name: test, phases: 1}
circuits:
  - {id: main, limit_a: 30, breaker: {rating_a: 32}}
buses:
  - {id: line-1, tcp: {host: 127.0.0.1, port: 5020}}
devices:
  - {id: pile-a, kind: pile, bus: line-1, unit: 1, circuit: main, phase: 1, ports: 4}
  - {id: wb-1, kind: evse, bus: line-1, unit: 2, circuit: main, phase: 1}
metrics: {port: 0}
api: {host: 127.0.0.1, port: 1}
ledger: shed.db
"""

HOSTILE = [
    "",
    " ",
    "-",
    "0001-01",
    "9999-12",
    "0000-00",
    "2026-13",
    "2026-00",
    "2026-1",
    "20260-01",
    "²⁰²⁶-01",
    "２０２６-01",
    "0001-01-01",
    "9999-12-31",
    "2026-02-30",
    "2026-01-01T00:00",
    "1e-320",
    "1e308",
    "1e309",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "-1",
    "0",
    "0x10",
    str(2**64),
    "00000000",
    "04A1B2C",
    "04:A1:B2:C3:D4",
    "04A1B2C3D4E5F60718",
    "zzzzzzzz",
    "04a1b2c3\x00",
    '=HYPERLINK("x")',
    "Flat\x1b[31m1",
    "\u202eFlat 1",
    "a\nb",
    "x" * 500,
    "pile-a/0",
    "pile-a/5",
    "pile-a/1/1",
    "wb-1/1",
    "../../etc/passwd",
    "/nonexistent/file.csv",
    "/dev/null",
]
hostile = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=24))

# Command lines with one slot ({}) for the hostile value.
TEMPLATES: list[list[str]] = [
    ["cards", "add", "{}", "--name", "Flat 1"],
    ["cards", "add", "04A1B2C9", "--name", "{}"],
    ["cards", "add", "04A1B2CA", "--name", "Flat 2", "--daily-kwh", "{}"],
    ["cards", "add", "04A1B2CB", "--name", "Flat 3", "--expires", "{}"],
    ["cards", "block", "{}"],
    ["cards", "unblock", "{}"],
    ["cards", "unflag", "{}"],
    ["cards", "import", "{}"],
    ["sessions", "export", "--from", "{}", "--to", "2026-01-31"],
    ["sessions", "export", "--from", "2026-01-01", "--to", "{}"],
    ["sessions", "stop", "{}"],
    ["energy", "--month", "{}"],
    ["cards", "list", "-c", "{}"],
    ["status", "{}"],
    ["run", "{}"],
    ["plan", "{}"],
    ["check", "{}"],
]


@pytest.fixture
def cfg(tmp_path: Path) -> Iterator[str]:
    path = tmp_path / "shed.yaml"
    path.write_text(SHED)
    assert main(["cards", "add", "04A1B2C3", "--name", "Flat 0", "-c", str(path)]) == 0
    yield str(path)


def call(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: usage, then one error line
        code = int(exc.code or 0)
    _, err = capsys.readouterr()
    return code, err


def judge(argv: list[str], code: int, err: str) -> str:
    """'ok' or 'refused'; fails the test on a traceback, another exit code or a vague refusal."""
    assert "Traceback" not in err, (argv, err)
    if code == 0:
        return "ok"
    assert code == 2, (argv, code, err)
    lines = err.strip().splitlines()
    assert lines, (argv, "exit 2 says nothing")
    command = argv[0]
    if lines[0].startswith("usage: "):  # argparse's refusal: the usage, then its one line
        assert lines[-1].startswith("chargectl") and ": error: " in lines[-1], err
    elif command == "check" or lines[0].startswith(("config ", "chargectl: config")):
        pass  # a config's problems: one FILE:LINE: PATH: MESSAGE line each
    elif command in ("run", "status") or "-c" in argv:
        # A config that cannot be read or loaded: its problems as `check` prints them.
        assert all(":" in line for line in lines), err
    else:
        assert len(lines) == 1, (argv, err)
        assert lines[0].startswith(f"chargectl {command}: "), (argv, err)
    return "refused"


def fill(template: list[str], value: str, cfg: str) -> list[str]:
    argv = [value if part == "{}" else part for part in template]
    if template[0] in ("plan", "check", "run", "status") or "-c" in template:
        return argv
    return [*argv, "-c", cfg]


TALLY: Counter[str] = Counter()


def test_edge_values_by_hand(cfg: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The audit's cases, each refused with its own message."""
    cases = [
        (["energy", "--month", "0001-01"], "--month '0001-01': the year must be in 1970..9998"),
        (["energy", "--month", "9999-12"], "--month '9999-12': the year must be in 1970..9998"),
        (["energy", "--month", "²⁰²⁶-01"], "--month '²⁰²⁶-01' is not YYYY-MM"),
        (
            ["sessions", "export", "--from", "2026-01-01", "--to", "9999-12-31"],
            "--to '9999-12-31': the year must be in 1970..9998",
        ),
        (
            ["cards", "add", "04A1B2C4", "--name", "x", "--daily-kwh", "1e-320"],
            "--daily-kwh '1e-320': a daily limit must be 0.001..1000 kWh",
        ),
        (["cards", "add", "04A1B2C4", "--name", "x", "--daily-kwh", "nan"], "'nan'"),
        (["cards", "add", "04A1B2C4", "--name", "x", "--daily-kwh", "-1"], "'-1'"),
        (["cards", "add", "04A1B2C", "--name", "x"], "has 7 hex digits"),
        (["cards", "add", "04A1B2C4", "--name", "a\x1bb"], "control characters"),
        (["sessions", "stop", "pile-a/9"], "unknown bay 'pile-a/9'"),
    ]
    for argv, message in cases:
        code, err = call([*argv, "-c", cfg], capsys)
        assert judge(argv, code, err) == "refused"
        assert message in err, (argv, err)


def test_a_daily_limit_out_of_range_in_an_import(
    cfg: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "cards.csv"
    csv.write_text("uid,name,daily_kwh\n04A1B2C5,Flat 5,1e-320\n")
    code, err = call(["cards", "import", str(csv), "-c", cfg], capsys)
    assert code == 2
    assert err.strip() == (
        f"chargectl cards: {csv}: card 04A1B2C5: daily_kwh 9.99989e-321: "
        "a daily limit must be 0.001..1000 kWh"
    )


def _run(count: int, cfg: str, capsys: pytest.CaptureFixture[str]) -> Counter[str]:
    TALLY.clear()

    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(st.sampled_from(TEMPLATES), hostile)
    def prop(template: list[str], value: str) -> None:
        argv = fill(template, value, cfg)
        code, err = call(argv, capsys)
        TALLY[judge(argv, code, err)] += 1

    prop()
    return Counter(TALLY)


def test_every_command_with_hostile_arguments(cfg: str, capsys: pytest.CaptureFixture[str]) -> None:
    tally = _run(600, cfg, capsys)
    assert tally["ok"] + tally["refused"] >= 500
    assert tally["refused"] >= 300, tally
    print(f"CLI calls {sum(tally.values())}: {dict(tally)}, tracebacks 0")


@pytest.mark.slow
def test_every_command_with_hostile_arguments_long(
    cfg: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tally = _run(5000, cfg, capsys)
    assert tally["ok"] + tally["refused"] >= 4000
    assert tally["refused"] >= 2500, tally
