"""The staff command line, end to end through `chargectl.cli.main`, and its error cases."""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from chargectl.cli import main
from chargectl.sessions import ledger
from chargectl.sessions.records import Checkpoint, SessionEnd, SessionStart
from tests.sessions.rig import ALICE, BOB

pytestmark = pytest.mark.timeout(60)

SHED = """\
shed: {{name: test, phases: 1}}
circuits:
  - {{id: main, limit_a: 30, breaker: {{rating_a: 32}}}}
buses:
  - {{id: line-1, tcp: {{host: 127.0.0.1, port: 5020}}}}
devices:
  - {{id: pile-a, kind: pile, bus: line-1, unit: 1, circuit: main, phase: 1, ports: 4}}
  - {{id: wb-1, kind: evse, bus: line-1, unit: 2, circuit: main, phase: 1}}
api: {{host: 127.0.0.1, port: {port}}}
ledger: shed.db
"""


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def make_config(tmp_path: Path, api_port: int = 1) -> str:
    path = tmp_path / "shed.yaml"
    path.write_text(SHED.format(port=api_port))
    return str(path)


@pytest.fixture
def cfg(tmp_path: Path) -> str:
    return make_config(tmp_path)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_add_list_block_unblock(cfg: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(
        capsys,
        "cards",
        "--config",
        cfg,
        "add",
        "04:a1:b2:c3",
        "--name",
        "Flat 1A",
        "--daily-kwh",
        "2.5",
        "--expires",
        "2026-12-31",
    )
    assert code == 0 and "04A1B2C3" in out
    # --config after the action works too
    assert cli(capsys, "cards", "add", BOB.lower(), "--name", "Flat 2B", "-c", cfg)[0] == 0
    code, out, _ = cli(capsys, "cards", "-c", cfg, "list", "--json")
    assert code == 0
    assert json.loads(out) == [
        {
            "uid": ALICE,
            "name": "Flat 1A",
            "status": "active",
            "daily_kwh": 2.5,
            "expires": "2026-12-31",
            "flag": None,
        },
        {
            "uid": BOB,
            "name": "Flat 2B",
            "status": "active",
            "daily_kwh": None,
            "expires": None,
            "flag": None,
        },
    ]
    code, out, _ = cli(capsys, "cards", "-c", cfg, "block", "04a1b2c3")
    assert (code, out.strip()) == (0, "blocked card 04A1B2C3")
    code, out, _ = cli(capsys, "cards", "-c", cfg, "block", ALICE)
    assert "already blocked" in out
    code, out, _ = cli(capsys, "cards", "-c", cfg, "list")
    lines = out.splitlines()
    assert lines[0].split() == ["UID", "STATUS", "DAILY_KWH", "EXPIRES", "NAME", "FLAG"]
    assert lines[1].split()[:2] == [ALICE, "blocked"]
    assert cli(capsys, "cards", "-c", cfg, "unblock", ALICE)[0] == 0
    code, out, _ = cli(capsys, "cards", "-c", cfg, "list", "--json")
    assert json.loads(out)[0]["status"] == "active"


def test_the_config_from_the_environment(
    cfg: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHARGECTL_CONFIG", cfg)
    assert cli(capsys, "cards", "add", ALICE, "--name", "Flat 1A")[0] == 0
    assert (Path(cfg).parent / "shed.db").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["add", "04A1B2", "--name", "x"], "6 hex digits"),
        (["add", "04A1B2CZ", "--name", "x"], "not hex"),
        (["add", "00000000", "--name", "x"], "all zeros"),
        (["add", ALICE, "--name", "  "], "name is empty"),
        (["add", ALICE, "--name", "x", "--daily-kwh", "lots"], "not a number"),
        (["add", ALICE, "--name", "x", "--daily-kwh", "0"], "positive"),
        (["add", ALICE, "--name", "x", "--expires", "31/12/2026"], "not YYYY-MM-DD"),
        (["add", ALICE, "--name", "x", "--expires", "2026-02-30"], "not a real date"),
        (["block", "04A1B2C4"], "04A1B2C4 is not registered"),
        (["unblock", "nothex!!"], "not hex"),
        (["import", "missing.csv"], "no such file"),
    ],
)
def test_card_errors_exit_2(
    cfg: str, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    cli(capsys, "cards", "-c", cfg, "add", "DEADBEEF", "--name", "someone")  # create the ledger
    code, _, err = cli(capsys, "cards", "-c", cfg, *argv)
    assert code == 2
    assert message in err and err.startswith("chargectl cards: ")


def test_adding_a_registered_card_twice(cfg: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "cards", "-c", cfg, "add", ALICE, "--name", "Flat 1A")[0] == 0
    code, _, err = cli(capsys, "cards", "-c", cfg, "add", ALICE, "--name", "Flat 9")
    assert code == 2 and "already registered (to Flat 1A)" in err


def test_a_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "cards", "-c", str(tmp_path / "nope.yaml"), "list")
    assert code == 2 and "nope.yaml" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("shed: {name: x}\ncircuits: []\n")
    code, _, err = cli(capsys, "sessions", "-c", str(bad), "list")
    assert code == 2 and "bad.yaml" in err


def test_reading_a_ledger_that_does_not_exist_exits_1(
    cfg: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "sessions", "-c", cfg, "list")
    assert code == 1 and "no ledger database" in err
    assert not (Path(cfg).parent / "shed.db").exists()


def test_import_all_or_nothing_with_line_numbers(
    cfg: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "uid,name,daily_kwh,expires,status\n"
        "04000001,Flat 1,2,,\n"
        "\n"
        "xyz,Flat 2,,,\n"  # line 4
        '04000003,"Flat\n3",,2026-13-01,\n'  # a quoted name over two lines: line 5
        "04000004,Flat 4,,,gone\n"  # line 7
        "04:00:00:01,Flat 1 again,,,\n"  # line 8
        "04000005,Flat 5\n"  # line 9
        "04000006,Flat 6,,2026-13-01,\n"  # line 10
    )
    code, _, err = cli(capsys, "cards", "-c", cfg, "import", str(bad))
    assert code == 2
    assert "6 bad line(s), nothing imported" in err
    for line, text in [
        (4, "not hex"),
        (5, "control characters"),
        (7, "status 'gone'"),
        (8, "already on line 2"),
        (9, "2 fields"),
        (10, "not a real date"),
    ]:
        assert f"bad.csv:{line}: " in err and text in err, (line, err)
    assert "bad.csv:2:" not in err
    # nothing was written, not even the good line
    code, out, _ = cli(capsys, "cards", "-c", cfg, "list", "--json")
    assert code == 1 or json.loads(out) == []

    good = tmp_path / "good.csv"
    good.write_text("\ufeffUID,Name,Status\n04000001,Flat 1,\n04000002,Flat 2,blocked\n")
    code, out, _ = cli(capsys, "cards", "-c", cfg, "import", str(good))
    assert code == 0 and "2 added, 0 updated" in out
    good.write_text("uid,name\n04000001,Flat 1 (new tenant)\n")
    code, out, _ = cli(capsys, "cards", "-c", cfg, "import", str(good))
    assert code == 0 and "0 added, 1 updated" in out
    code, out, _ = cli(capsys, "cards", "-c", cfg, "list", "--json")
    assert [(c["uid"], c["name"], c["status"]) for c in json.loads(out)] == [
        ("04000001", "Flat 1 (new tenant)", "active"),
        ("04000002", "Flat 2", "blocked"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", ":1: no header line"),
        ("uid,flat\n04000001,1\n", ":1: unknown column(s) flat"),
        ("name,daily_kwh\nx,1\n", ":1: header lacks column(s) uid"),
        ("uid,name\n", ":1: no cards after the header"),
        ('uid,name\n04000001,"unterminated\n', "CSV syntax"),
    ],
)
def test_import_file_shape_errors(
    cfg: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    f = tmp_path / "c.csv"
    f.write_text(text)
    code, _, err = cli(capsys, "cards", "-c", cfg, "import", str(f))
    assert code == 2 and message in err, err


def test_import_rejects_non_utf8(
    cfg: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "c.csv"
    f.write_bytes(b"uid,name\n04000001,Fl\xe4t\n")
    code, _, err = cli(capsys, "cards", "-c", cfg, "import", str(f))
    assert code == 2 and "not UTF-8" in err


def wall(y: int, m: int, d: int, h: int = 12) -> float:
    return datetime(y, m, d, h, tzinfo=UTC).timestamp()


@pytest.fixture
def history(cfg: str, capsys: pytest.CaptureFixture[str]) -> str:
    cli(capsys, "cards", "-c", cfg, "add", ALICE, "--name", "Flat 1A")
    cli(capsys, "cards", "-c", cfg, "add", BOB, "--name", "Flat 2B")
    conn = ledger.connect(Path(cfg).parent / "shed.db")
    ledger.apply(
        conn,
        [
            SessionStart(1, ALICE, "pile-a/1", wall(2026, 1, 31, 22), 100),
            SessionEnd(1, wall(2026, 2, 1, 6), "full", 1600, 1500),
            SessionStart(2, BOB, "pile-a/2", wall(2026, 2, 1), 0),
            SessionEnd(2, wall(2026, 2, 1, 14), "user_stop", 250, 250),
            SessionStart(3, ALICE, "pile-a/1", wall(2026, 2, 2), 1600),
            SessionEnd(3, wall(2026, 2, 2, 13), "unplugged", 1900, 300),
            SessionStart(4, ALICE, "wb-1", wall(2026, 2, 28, 23), 5000),
            Checkpoint(4, wall(2026, 2, 28, 23) + 60, 5000, 5400, 400, 7000, 60, True, 0, None),
        ],
    )
    conn.close()
    return cfg


def test_sessions_list(history: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "sessions", "-c", history, "list", "--json")
    rows = json.loads(out)
    assert code == 0 and [(r["id"], r["reason"], r["energy_wh"]) for r in rows] == [
        (1, "full", 1500),
        (2, "user_stop", 250),
        (3, "unplugged", 300),
        (4, None, 400),
    ]
    code, out, _ = cli(capsys, "sessions", "-c", history, "list", "--active")
    lines = out.splitlines()
    assert len(lines) == 2 and lines[1].split()[0] == "4" and "running" in lines[1]
    assert "0.400" in lines[1] and "Flat 1A" in lines[1]


def test_sessions_export(history: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(
        capsys, "sessions", "-c", history, "export", "--from", "2026-02-01", "--to", "2026-02-02"
    )
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["session", "card", "name", "bay", "start", "end", "reason", "kwh", "clock"]
    assert rows[1:] == [
        [
            "2",
            BOB,
            "Flat 2B",
            "pile-a/2",
            "2026-02-01T12:00:00+00:00",
            "2026-02-01T14:00:00+00:00",
            "user_stop",
            "0.250",
            "",
        ],
        [
            "3",
            ALICE,
            "Flat 1A",
            "pile-a/1",
            "2026-02-02T12:00:00+00:00",
            "2026-02-02T13:00:00+00:00",
            "unplugged",
            "0.300",
            "",
        ],
    ]


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        ("2026-02-30", "2026-03-01", "not a real date"),
        ("2026/02/01", "2026-03-01", "not YYYY-MM-DD"),
        ("2026-03-01", "2026-02-01", "before --from"),
    ],
)
def test_sessions_export_bad_dates(
    history: str, capsys: pytest.CaptureFixture[str], first: str, last: str, message: str
) -> None:
    code, _, err = cli(capsys, "sessions", "-c", history, "export", "--from", first, "--to", last)
    assert code == 2 and message in err


def test_energy_per_card(history: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "energy", "-c", history, "--month", "2026-02")
    assert code == 0
    assert list(csv.reader(io.StringIO(out))) == [
        ["card", "name", "sessions", "kwh"],
        [ALICE, "Flat 1A", "2", "0.700"],  # session 1 started in January
        [BOB, "Flat 2B", "1", "0.250"],
    ]
    code, out, _ = cli(capsys, "energy", "-c", history, "--month", "2026-01")
    assert list(csv.reader(io.StringIO(out)))[1:] == [[ALICE, "Flat 1A", "1", "1.500"]]


@pytest.mark.parametrize("month", ["2026-13", "2026-1", "26-01", "2026-01-01", "jan"])
def test_energy_bad_month(history: str, capsys: pytest.CaptureFixture[str], month: str) -> None:
    code, _, err = cli(capsys, "energy", "-c", history, "--month", month)
    assert code == 2 and "month" in err


class FakeDaemon:
    """The daemon's /sessions/stop, as api.py serves it."""

    def __init__(self) -> None:
        self.running = {"pile-a/1"}
        self.calls: list[dict[str, object]] = []
        daemon = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                daemon.calls.append({"path": self.path, **body})
                bay = body.get("bay")
                if bay == "pile-a/4":  # known to the config, not to this daemon
                    code, answer = 404, {"error": f"unknown bay {bay}"}
                elif bay == "pile-a/3":
                    code, answer = 500, {"error": "boom"}
                else:
                    code, answer = 200, {"stopped": bay in daemon.running}
                    daemon.running.discard(bay)
                data = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_sessions_stop_through_the_daemon(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon = FakeDaemon()
    try:
        cfg = make_config(tmp_path, daemon.port)
        code, out, _ = cli(capsys, "sessions", "-c", cfg, "stop", "pile-a/1")
        assert (code, out.strip()) == (0, "stopped the session at pile-a/1")
        assert daemon.calls == [{"path": "/sessions/stop", "bay": "pile-a/1"}]
        code, out, _ = cli(capsys, "sessions", "-c", cfg, "stop", "pile-a/1")
        assert (code, out.strip()) == (0, "no session running at pile-a/1")
        code, _, err = cli(capsys, "sessions", "-c", cfg, "stop", "pile-a/4")
        assert code == 2 and "does not know bay 'pile-a/4'" in err
        code, _, err = cli(capsys, "sessions", "-c", cfg, "stop", "pile-a/3")
        assert code == 1 and "500" in err and "boom" in err
        code, _, err = cli(capsys, "sessions", "-c", cfg, "stop", "pile-a/9")
        assert code == 2 and "unknown bay 'pile-a/9'" in err
        assert len(daemon.calls) == 4  # the unknown bay never reached the daemon
    finally:
        daemon.close()


def test_sessions_stop_without_a_daemon(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    daemon = FakeDaemon()
    port = daemon.port
    daemon.close()  # a port nothing listens on any more
    cfg = make_config(tmp_path, port)
    code, _, err = cli(capsys, "sessions", "-c", cfg, "stop", "wb-1")
    assert code == 1 and "daemon is not running" in err and str(port) in err
