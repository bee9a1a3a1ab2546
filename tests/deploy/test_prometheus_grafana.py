"""deploy/prometheus and deploy/grafana: checked with the real promtool, and against the
metrics table (a dashboard or rule that names a metric the daemon does not export is a bug)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from chargectl.outputs.metrics import METRICS, all_series_names

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
METRIC_REF = re.compile(r"\bchargectl_[a-z0-9_]+")
# Series Prometheus itself makes for every target.
SCRAPE_SERIES = {"up"}


def promtool() -> str:
    found = shutil.which("promtool")
    # No skip: the Makefile installs the Debian package `prometheus`, which ships promtool.
    assert found, "promtool not found: apt-get install prometheus"
    return found


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((PROM / "alerts.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def dashboard() -> dict[str, Any]:
    return dict(json.loads((GRAFANA / "chargectl.json").read_text()))


def panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in dash["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in panels(dashboard()) for t in p.get("targets", [])]


# ---- prometheus ----


def test_promtool_checks_the_config_and_its_rules() -> None:
    res = run_promtool("check", "config", "prometheus.yml", cwd=PROM)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 rule files found" in res.stdout


def test_promtool_checks_the_rules() -> None:
    res = run_promtool("check", "rules", "alerts.yml", cwd=PROM)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{len(alert_rules())} rules found" in res.stdout


def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    res = run_promtool("test", "rules", "alerts_test.yml", cwd=PROM)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    # The same tests against rules with a threshold moved must fail: they test something.
    rules = (PROM / "alerts.yml").read_text()
    moved = rules.replace(
        "chargectl_breaker_thermal_ratio > 0.8", "chargectl_breaker_thermal_ratio > 0.9"
    )
    assert moved != rules
    (tmp_path / "alerts.yml").write_text(moved)
    shutil.copy(PROM / "alerts_test.yml", tmp_path / "alerts_test.yml")
    res = run_promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert res.returncode != 0
    assert "BreakerThermalHigh" in res.stdout + res.stderr


def test_every_alert_is_tested_firing() -> None:
    tests = yaml.safe_load((PROM / "alerts_test.yml").read_text())["tests"]
    fired = {
        case["alertname"]
        for t in tests
        for case in t.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    names = {r["alert"] for r in alert_rules()}
    assert names == fired


def test_alerts_cover_what_staff_must_hear_about() -> None:
    exprs = " ".join(r["expr"] for r in alert_rules())
    for needed in (
        "chargectl_breaker_thermal_ratio",
        "chargectl_circuit_current_amperes",
        "chargectl_circuit_limit_amperes",
        "chargectl_device_up",
        "chargectl_overload_events_total",
        "chargectl_alarm",
        "chargectl_bay_fault",
        "chargectl_tick_duration_seconds_bucket",
        'up{job="chargectl"}',
    ):
        assert needed in exprs, needed
    for r in alert_rules():
        assert r["labels"]["severity"] in ("critical", "warning"), r["alert"]
        assert r["annotations"]["summary"], r["alert"]


def test_rules_name_only_exported_metrics() -> None:
    known = all_series_names()
    for r in alert_rules():
        for name in METRIC_REF.findall(r["expr"]):
            assert name in known, f"alert {r['alert']}: {name} is not in the metrics table"


def test_scrape_target_is_the_daemons_default_endpoint() -> None:
    cfg = yaml.safe_load((PROM / "prometheus.yml").read_text())
    (job,) = [j for j in cfg["scrape_configs"] if j["job_name"] == "chargectl"]
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == ["127.0.0.1:9464"]  # chargectl.config.schema.Shed.metrics default
    assert job["honor_labels"] is True
    assert all("shed" in sc["labels"] for sc in job["static_configs"])


# ---- grafana ----


def test_dashboard_names_only_exported_metrics_and_filters_by_shed() -> None:
    known = all_series_names() | SCRAPE_SERIES
    exprs = dashboard_exprs()
    assert exprs
    for expr in exprs:
        names = METRIC_REF.findall(expr) + re.findall(r"\bup\{", expr)
        assert names, f"no metric in {expr!r}"
        for name in METRIC_REF.findall(expr):
            assert name in known, f"{name} (in {expr!r}) is not in the metrics table"
        # every selector of the expression is limited to the chosen shed
        selectors = re.findall(r"\b(?:chargectl_[a-z0-9_]+|up)(\{[^}]*\})?", expr)
        assert all('shed="$shed"' in s for s in selectors), expr


def test_dashboard_shows_what_the_brief_lists() -> None:
    text = " ".join(dashboard_exprs())
    for name in (
        "chargectl_circuit_current_amperes",
        "chargectl_circuit_limit_amperes",
        "chargectl_circuit_planned_amperes",
        "chargectl_breaker_thermal_ratio",
        "chargectl_bay_state",
        "chargectl_device_up",
        "chargectl_overload_events_total",
        "chargectl_tick_duration_seconds_bucket",
        "chargectl_sessions_active",
        "chargectl_sessions_total",
        "chargectl_card_taps_total",
        "chargectl_session_energy_joules_bucket",
        "chargectl_bay_energy_joules_total",
        "chargectl_alarm",
        "chargectl_bay_fault",
    ):
        assert name in text, name
    # everything in the table is at least available on the dashboard, except per-bay detail
    # that staff read from the bay panels
    shown = set(METRIC_REF.findall(text))
    table = {n for m in METRICS for n in m.series_names()}
    assert table - shown <= {"chargectl_tick_duration_seconds_sum"}, table - shown


def test_dashboard_structure() -> None:
    dash = dashboard()
    ids = [p["id"] for p in panels(dash)]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["shed"]["type"] == "query"
    assert "label_values(chargectl_build_info, shed)" in variables["shed"]["definition"]
    assert variables["datasource"]["query"] == "prometheus"
    assert dash["uid"] and dash["title"]
    for p in panels(dash):
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
            refs = [t["refId"] for t in p["targets"]]
            assert len(refs) == len(set(refs)), p["title"]
    # no two panels overlap on the grid (repeated panels are laid out by Grafana)
    cells: set[tuple[int, int]] = set()
    for p in panels(dash):
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps at {(x, y)}"
                cells.add((x, y))


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    # promtool parses every expression when it checks a rule file: make each query a
    # recording rule, with Grafana's variables replaced by plausible values.
    subst = {
        "$__rate_interval": "1m",
        '"$shed"': '"campus"',
        '"$circuit"': '"main"',
    }
    rules = []
    for i, query in enumerate(dashboard_exprs()):
        expr = query
        for k, v in subst.items():
            expr = expr.replace(k, v)
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:query{i}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    res = run_promtool("check", "rules", str(path), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr


def test_provisioning_points_at_the_dashboard_folder() -> None:
    dashboards = yaml.safe_load((GRAFANA / "dashboards.yaml").read_text())
    assert dashboards["apiVersion"] == 1
    (provider,) = dashboards["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")
    sources = yaml.safe_load((GRAFANA / "datasources.yaml").read_text())
    assert [d["type"] for d in sources["datasources"]] == ["prometheus"]


@pytest.mark.parametrize("path", ["prometheus.yml", "alerts.yml", "alerts_test.yml"])
def test_prometheus_files_are_plain_yaml(path: str) -> None:
    assert isinstance(yaml.safe_load((PROM / path).read_text()), dict)
