"""`chargectl sessions show ID`: the session and its curve as text, JSON and a PNG, the
detectors' findings on it, and the refusals (exit 2, one line)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chargectl.sessions.records import CurveMinute, SessionEnd, SessionStart
from chargectl.sessions.writer import LedgerWriter
from tests.sessions.rig import ALICE, WALL0
from tests.sessions.test_cli import cfg, cli, utc  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(60)

PNG = b"\x89PNG\r\n\x1a\n"


def _ledger(cfg: str) -> None:  # noqa: F811
    with LedgerWriter(Path(cfg).parent / "shed.db") as w:
        w.record(SessionStart(1, ALICE, "pile-a/1", WALL0, 1000))
        for m in range(6):  # a healthy start: 200 W, then a heater: 1000 W for 3 minutes
            watts = 200.0 if m < 3 else 1000.0
            w.record(CurveMinute(1, m, watts, watts + 5, 25.0 + m if m % 2 else None))
        w.record(SessionEnd(1, WALL0 + 400, "staff_stop", 1080, 80))
        w.record(SessionStart(2, ALICE, "pile-a/2", WALL0 + 500, 2000))  # no curve


def test_show_text(cfg: str, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    _ledger(cfg)
    code, out, err = cli(capsys, "sessions", "show", "1", "-c", cfg)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith("session 1  card 04A1B2C3") and "bay pile-a/1" in lines[0]
    assert "reason staff_stop" in lines[1] and "energy 0.080 kWh" in lines[1]
    assert lines[2].split() == ["MINUTE", "MEAN", "W", "PEAK", "W", "C"]
    table = [ln.split() for ln in lines[3:] if ln.split() and ln.split()[0].isdigit()]
    assert table[0] == ["0", "200", "205"]
    assert table[1] == ["1", "200", "205", "26.0"]
    assert "critical over_power since minute 3" in out


def test_show_json(cfg: str, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    _ledger(cfg)
    code, out, _ = cli(capsys, "sessions", "show", "1", "--json", "-c", cfg)
    assert code == 0
    doc = json.loads(out)
    assert (doc["id"], doc["bay"], doc["reason"], doc["energy_wh"]) == (
        1,
        "pile-a/1",
        "staff_stop",
        80,
    )
    assert [r["minute"] for r in doc["curve"]] == list(range(6))
    assert doc["curve"][0] == {"minute": 0, "mean_w": 200.0, "peak_w": 205.0, "temp_c": None}
    assert any(f["kind"] == "over_power" and f["since_s"] == 180.0 for f in doc["findings"])
    code, out, _ = cli(capsys, "sessions", "show", "2", "--json", "-c", cfg)
    assert code == 0 and json.loads(out)["curve"] == []


def test_show_plot(cfg: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:  # noqa: F811
    _ledger(cfg)
    png = tmp_path / "curve.png"
    code, out, _ = cli(capsys, "sessions", "show", "1", "--plot", str(png), "-c", cfg)
    assert code == 0 and f"plot written to {png}" in out
    assert png.read_bytes()[:8] == PNG
    empty = tmp_path / "empty.png"
    code, out, _ = cli(capsys, "sessions", "show", "2", "--plot", str(empty), "-c", cfg)
    assert code == 0 and "no power curve kept" in out
    assert empty.read_bytes()[:8] == PNG


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["99"], "no session 99 in the ledger"),
        (["x1"], "session 'x1': not a session number"),
        (["-5"], "session '-5': not a session number"),
        (["1", "--plot", "/no/such/folder/c.png"], "the folder /no/such/folder does not exist"),
    ],
)
def test_show_refusals(
    cfg: str,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    says: str,
) -> None:
    _ledger(cfg)
    code, out, err = cli(capsys, "sessions", "show", *argv, "-c", cfg)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and says in err
