"""deploy/fleet: the configs `chargectl fleet` makes, the shipped examples made by it, the
central Prometheus's config checked by `promtool`, and bad input refused with what and where."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from chargectl.cli import main
from chargectl.outputs.fleet import (
    Central,
    Edge,
    FleetError,
    bridge_config,
    command_families,
    parse_address,
    prometheus_config,
    published,
)
from chargectl.outputs.mqtt_topics import COMMANDS, TOPICS
from tests.deploy.test_prometheus_grafana import promtool
from tests.rig import write_config

ROOT = Path(__file__).resolve().parents[2]
FLEET = ROOT / "deploy" / "fleet"
EDGE_EXAMPLE = bridge_config("campus", Central("broker.vpn.example.net"), "CHANGE-ME")
CENTRAL_EXAMPLE = prometheus_config([Edge("campus", "10.8.0.2"), Edge("north", "10.8.0.3")])


def test_the_shipped_examples_are_what_the_generator_makes() -> None:
    # A new topic or command family changes them: make them again (docs/fleet.md).
    assert (FLEET / "edge-campus.conf").read_text() == EDGE_EXAMPLE
    assert (FLEET / "prometheus-central.yml").read_text() == CENTRAL_EXAMPLE


def _topics(conf: str) -> list[tuple[str, str, str]]:
    return [tuple(line.split()[1:4]) for line in conf.splitlines() if line.startswith("topic ")]  # type: ignore[misc]


def test_the_bridge_carries_every_topic_out_and_every_command_in() -> None:
    topics = _topics(EDGE_EXAMPLE)
    out = [t for t, d, _ in topics if d == "out"]
    for t in TOPICS.values():
        filt = published([t.suffix])[0]
        assert f"chargectl/campus/{filt}" in out, t.suffix
    assert "chargectl/campus/#" not in out  # the bridge's own notification stays home
    ins = {t: int(q) for t, d, q in topics if d == "in"}
    for path in COMMANDS:
        family = path.split("/")[0]
        want = 1 if family == "cards" else 0
        assert ins[f"chargectl/campus/cmd/{family}/#"] == want, path
    # Card lists are queued even before the daemon knows a card command.
    assert ins["chargectl/campus/cmd/cards/#"] == 1
    assert command_families(["sessions/stop", "cards/block", "bays/start"]) == (
        ["cards"],
        ["sessions", "bays"],
    )
    for line in ("cleansession false", "local_cleansession false", "persistence true"):
        assert line in EDGE_EXAMPLE.splitlines()
    assert "bridge_cafile" not in EDGE_EXAMPLE
    tls = bridge_config("campus", Central("b.example.net", 8883, "/etc/ca.pem"), "pw")
    assert "bridge_cafile /etc/ca.pem" in tls and "address b.example.net:8883" in tls


def test_promtool_accepts_the_central_config(tmp_path: Path) -> None:
    made = tmp_path / "central.yml"
    made.write_text(prometheus_config([Edge("a", "edge-a.vpn", 9090), Edge("b-2", "10.0.0.9")]))
    for path in (FLEET / "prometheus-central.yml", made):
        r = subprocess.run(
            [promtool(), "check", "config", str(path)],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stdout + r.stderr


def test_every_central_series_has_a_shed_label() -> None:
    config = yaml.safe_load(CENTRAL_EXAMPLE)
    (job,) = config["scrape_configs"]
    assert job["honor_labels"] is True  # the daemon's own `shed` stays
    assert job["params"] == {"match[]": ['{job="chargectl"}']}
    sheds = [g["labels"]["shed"] for g in job["static_configs"]]
    assert sheds == ["campus", "north"]  # and `up` and the scrape's series get the target's


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: bridge_config("a/b", Central("h"), "pw"), "shed name must be letters"),
        (lambda: bridge_config("a", Central("bad host"), "pw"), "central broker: must be a host"),
        (lambda: bridge_config("a", Central("h", 0), "pw"), "central broker: port must be"),
        (lambda: bridge_config("a", Central("h"), "two words"), "password must be one word"),
        (lambda: bridge_config("a", Central("h"), ""), "password must be one word"),
        (lambda: bridge_config("a", Central("h"), "pw", restart_s=(9, 2)), "restart_s"),
        (lambda: prometheus_config([]), "no edge boxes"),
        (lambda: prometheus_config([Edge("a", "h"), Edge("a", "i")]), "named twice"),
        (lambda: prometheus_config([Edge("a", "h", 70000)]), "edge box of a: port"),
        (lambda: prometheus_config([Edge("a", "h")], interval_s=1), "5..600"),
        (lambda: parse_address("h:x", 1, "--central"), "--central: the port must be a number"),
    ],
)
def test_bad_input_is_refused_saying_what(call: object, message: str) -> None:
    with pytest.raises(FleetError, match=message):
        call()  # type: ignore[operator]


def test_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    remote = write_config(tmp_path, "small", edit=lambda d: d.update(mqtt={"host": "b.example"}))
    args = ["fleet", "bridge", str(remote), "--central", "b.example", "--password-file", str(pw)]
    assert main(args) == 2
    assert "mqtt must name the edge broker on this box" in capsys.readouterr().err

    local = write_config(tmp_path, "small", edit=lambda d: d.update(mqtt={"host": "127.0.0.1"}))
    args[2] = str(local)
    assert main([*args, "--ca", "/etc/ca.pem"]) == 0
    out = capsys.readouterr().out
    assert "connection chargectl-small" in out and "address b.example:8883" in out
    assert "remote_password s3cret" in out

    assert main(["fleet", "prometheus", "small=10.8.0.2", "north=h:9091"]) == 0
    assert "10.8.0.2:9090" in capsys.readouterr().out
    assert main(["fleet", "prometheus", "small"]) == 2
    assert "expected SHED=HOST[:PORT]" in capsys.readouterr().err
