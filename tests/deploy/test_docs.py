"""docs/operations.md stays in step with the metrics table and the alert rules."""

from __future__ import annotations

from pathlib import Path

import yaml

from chargectl.outputs.metrics import (
    ALARM_KINDS,
    BAY_FAULTS,
    DEVICE_ERRORS,
    END_REASONS,
    METRICS,
    TAP_RESULTS,
)

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "operations.md").read_text()


def doc_rows(first_cell_prefix: str) -> dict[str, str]:
    """Markdown table rows whose first cell is a code span starting with the prefix."""
    rows = {}
    for line in DOC.splitlines():
        if line.startswith(f"| `{first_cell_prefix}"):
            name = line.split("`")[1]
            rows[name] = line
    return rows


def test_every_metric_is_documented_with_its_type_and_labels() -> None:
    rows = doc_rows("chargectl_")
    assert set(rows) == {m.name for m in METRICS}
    for m in METRICS:
        cells = [c.strip() for c in rows[m.name].split("|")]
        assert cells[2] == m.kind, m.name
        assert cells[3] == ", ".join(m.labels), m.name


def test_documented_label_values_are_the_real_sets() -> None:
    rows = doc_rows("chargectl_")
    for metric, values in (
        ("chargectl_sessions_total", END_REASONS),
        ("chargectl_card_taps_total", TAP_RESULTS),
        ("chargectl_alarm", ALARM_KINDS),
        ("chargectl_bay_fault", BAY_FAULTS),
        ("chargectl_device_errors_total", DEVICE_ERRORS),
    ):
        for v in values:
            assert v in rows[metric], f"{metric}: {v} not documented"


def test_every_alert_has_a_runbook_row() -> None:
    doc = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    alerts = {r["alert"] for g in doc["groups"] for r in g["rules"]}
    documented = {
        line.split("`")[1] for line in DOC.splitlines() if line.startswith("| `") and "`" in line
    }
    assert alerts <= documented, alerts - documented
