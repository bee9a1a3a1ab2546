"""The shipped dashboard and alert rules against a real Prometheus scraping a running shed.

The daemon runs on the simulator over Modbus TCP (the small shed plus a wallbox, two sockets
charging, one socket with a short circuit). A real Prometheus (Debian's `prometheus`) scrapes
its metrics every second with deploy/prometheus/prometheus.yml's job (honor_labels, the
target's `shed` label) and evaluates deploy/prometheus/alerts.yml. Then every query of every
panel of deploy/grafana/chargectl.json and every alert expression goes through
/api/v1/query: each must parse, and each that describes a running shed must return series.

An alert expression is a condition (`x > 0.8`): on a shed that is fine it holds nowhere, and
an empty answer would not tell a misspelt label from a cool breaker. So each alert is asked
twice: as written (it must parse, and only the alerts this shed's state explains may hold),
and with `bool` on its comparisons (`x > bool 0.8`), which keeps every series the condition
looks at, 0 or 1: that answer must not be empty.

Grafana's variables are resolved the way Grafana would: `$shed` and `$circuit` from the
dashboard's own `label_values(...)` queries, asked of the same Prometheus (the circuit panel
repeats per circuit, so its queries run once per circuit); `$__interval` is 1 s (a few
minutes over a panel's width, raised to the data source's minimum, which is the 1 s scrape
here) and `$__rate_interval` is Grafana's max($__interval + scrape, 4 x scrape) = 4 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from chargectl.sim.actions import apply
from tests.deploy.test_prometheus_grafana import (
    PROM,
    alert_rules,
    dashboard,
    dashboard_exprs,
    panels,
)
from tests.mqtt.broker import stop_process
from tests.rig import CARD, OTHER_CARD, Rig, free_port, running_shed
from tests.sessions_e2e.shed import SPEED, e2e_config, until_charging, until_running

pytestmark = pytest.mark.timeout(120)

SCRAPE_S = 1
GRAFANA_INTERVALS = {"__interval": "1s", "__rate_interval": f"{4 * SCRAPE_S}s"}
CHARGING = ("pile-a/1", "pile-a/2")
SHORTED = "pile-a/3"  # no charger, no session: a short circuit in the socket

# Queries that may rightly answer nothing on this shed, each with why. A query not named here
# must return series; one named here must still parse.
NO_SERIES: dict[str, str] = {
    # The welded-relay alert looks at chargectl_bay_fault{fault="welded"}: a fault's series
    # appears the first time that fault is seen on a bay (the metric's help), and no relay
    # here is welded. The other faults' alert (BayFault) has the short circuit's series.
    "alert BayRelayWelded (bool)": "no relay has welded, so no welded-fault series exists",
}
# Alerts whose condition may hold on this shed: the short circuit is a bay fault; a busy test
# machine can make the 99th percentile tick slower than 100 ms. Any other alert holding is a
# rule (or a daemon) that is wrong about a running shed.
MAY_FIRE = {"BayFault", "ChargectlTickSlow"}
MUST_FIRE = {"BayFault"}


def prometheus_binary() -> str:
    found = shutil.which("prometheus", path="/usr/local/bin:/usr/bin:/usr/sbin:/bin")
    # No skip: the Makefile's system-deps installs the Debian package `prometheus`.
    assert found, "prometheus not found: apt-get install prometheus (make system-deps)"
    return found


def prometheus_config(shed: str, metrics_port: int, folder: Path) -> Path:
    """deploy/prometheus/prometheus.yml as shipped, scraping the test's daemon every second
    and loading the shipped alerts.yml."""
    cfg = yaml.safe_load((PROM / "prometheus.yml").read_text())
    cfg["global"]["scrape_interval"] = f"{SCRAPE_S}s"
    cfg["global"]["evaluation_interval"] = f"{SCRAPE_S}s"
    cfg["rule_files"] = [str(PROM / name) for name in cfg["rule_files"]]
    (job,) = [j for j in cfg["scrape_configs"] if j["job_name"] == "chargectl"]
    job["scrape_interval"] = f"{SCRAPE_S}s"
    job["scrape_timeout"] = f"{SCRAPE_S}s"
    (static,) = job["static_configs"]
    static["targets"] = [f"127.0.0.1:{metrics_port}"]
    static["labels"]["shed"] = shed
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@dataclass
class Prometheus:
    """A Prometheus on a free loopback port, its storage and log in `folder`."""

    folder: Path
    port: int

    def get(self, path: str, **params: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return dict(json.loads(r.read()))
        except urllib.error.HTTPError as e:  # a bad query is a 400 with a JSON error
            return dict(json.loads(e.read()))

    def query(self, expr: str, at: float) -> dict[str, Any]:
        return self.get("/api/v1/query", query=expr, time=f"{at:.3f}")

    def log(self) -> str:
        return (self.folder / "prometheus.log").read_text()[-3000:]

    def wait_ready(self, proc: subprocess.Popen[bytes], within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while True:
            assert proc.poll() is None, f"prometheus exited:\n{self.log()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2):
                    return
            except OSError:
                assert time.monotonic() < deadline, f"prometheus not ready:\n{self.log()}"
                time.sleep(0.1)

    def wait_for(self, expr: str, what: str, within: float = 30.0) -> None:
        """Until `expr` returns a series (e.g. enough scrapes, a series seen)."""
        deadline = time.monotonic() + within
        while not self.query(expr, time.time()).get("data", {}).get("result"):
            assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{self.log()}"
            time.sleep(0.2)

    def wait_rules_evaluated(self, within: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + within
        while True:
            rules = [r for g in self.get("/api/v1/rules")["data"]["groups"] for r in g["rules"]]
            if rules and all(r["health"] != "unknown" for r in rules):
                return rules
            assert time.monotonic() < deadline, f"rules never evaluated:\n{self.log()}"
            time.sleep(0.2)


@contextlib.contextmanager
def prometheus(folder: Path, shed: str, metrics_port: int) -> Iterator[Prometheus]:
    binary = prometheus_binary()
    folder.mkdir()
    config = prometheus_config(shed, metrics_port, folder)
    prom = Prometheus(folder, free_port())
    log = (folder / "prometheus.log").open("a")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom.port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    try:
        prom.wait_ready(proc)
        yield prom
    finally:
        stop_process(proc)


# ---- the queries ----


def substitute(expr: str, values: dict[str, str]) -> str:
    """Grafana's `$name` / `${name}` replaced; a variable with no value is an error."""

    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        assert name in values, f"no value for ${name} in {expr!r}"
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, expr)


def with_bool(expr: str) -> str:
    """`bool` on every comparison outside label matchers: `a > 1` -> `a > bool 1`."""
    parts = re.split(r"(\{[^}]*\})", expr)
    for i in range(0, len(parts), 2):  # the even parts are outside braces
        parts[i] = re.sub(r"(==|!=|>=|<=|>(?!=)|<(?!=))(?!\s*bool\b)", r"\1 bool", parts[i])
    return "".join(parts)


def label_names(expr: str) -> set[str]:
    """The label names an expression groups, matches or filters by."""
    names = set()
    for group in re.findall(r"\b(?:by|on|without|ignoring)\s*\(([^)]*)\)", expr):
        names |= {n.strip() for n in group.split(",") if n.strip()}
    for matchers in re.findall(r"\{([^}]*)\}", expr):
        names |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
    return names


def variable_values(prom: Prometheus, definition: str, values: dict[str, str]) -> list[str]:
    """A dashboard variable's `label_values(selector, label)` answered by Prometheus."""
    m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", substitute(definition, values))
    assert m, f"not a label_values query: {definition!r}"
    found = prom.get(f"/api/v1/label/{m.group(2)}/values", **{"match[]": m.group(1)})
    assert found["status"] == "success", found
    return sorted(found["data"])


def dashboard_queries(prom: Prometheus, shed: str) -> list[tuple[str, str]]:
    """(name, expr) for every panel target, variables resolved; a repeated panel once per
    value of its variable."""
    dash = dashboard()
    values = dict(GRAFANA_INTERVALS)
    options: dict[str, list[str]] = {}
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            options[var["name"]] = variable_values(prom, var["definition"], values)
            assert options[var["name"]], f"${var['name']}: no values"
            # the first value, as Grafana picks with nothing saved; the shed is ours
            values[var["name"]] = shed if var["name"] == "shed" else options[var["name"]][0]
    assert shed in options["shed"], options["shed"]
    out = []
    for p in panels(dash):
        repeat = p.get("repeat")
        for choice in options[repeat] if repeat else [None]:
            here = values if choice is None else {**values, repeat: choice}
            for t in p.get("targets", []):
                suffix = "" if choice is None else f" [{repeat}={choice}]"
                name = f"panel {p['id']} {p['title']!r} {t['refId']}{suffix}"
                out.append((name, substitute(t["expr"], here)))
    return out


def alert_queries() -> list[tuple[str, str]]:
    """Each alert as written (`alert X`: held to MAY_FIRE, not to returning series) and with
    `bool` (`alert X (bool)`: must return series)."""
    out = []
    for r in alert_rules():
        out.append((f"alert {r['alert']}", r["expr"]))
        out.append((f"alert {r['alert']} (bool)", with_bool(r["expr"])))
    return out


def as_written(name: str) -> bool:
    return name.startswith("alert ") and not name.endswith(" (bool)")


# ---- the test ----


async def sessions_and_a_fault(rig: Rig) -> None:
    for bay, card in zip(CHARGING, (CARD, OTHER_CARD), strict=True):
        rig.tap(bay, card)
        await until_running(rig, bay)
        await until_charging(rig, bay)
    apply(rig.sim, {"do": "short", "bay": SHORTED})
    await rig.wait_for(lambda: rig.bay(SHORTED)["state"] == "fault", 10, "the short's fault")


def test_with_bool_leaves_label_matchers_alone() -> None:
    assert (
        with_bool('a{x!="y", z=~"w"} == 1 and on(s) b > c')
        == 'a{x!="y", z=~"w"} == bool 1 and on(s) b > bool c'
    )
    assert with_bool("a >= bool 1") == "a >= bool 1"


def test_label_names_reads_groupings_and_matchers() -> None:
    expr = 'sum by (circuit, le) (a{shed="x", kind!~"y|z"}) and on(shed) b{fault!="w"}'
    assert label_names(expr) == {"circuit", "le", "shed", "kind", "fault"}


async def test_dashboard_and_alerts_on_a_live_prometheus(tmp_path: Path) -> None:
    chargers = tuple({"bay": bay, "profile": "li48", "soc": 0.3} for bay in CHARGING)
    cfg = e2e_config(tmp_path, chargers=chargers)
    async with running_shed(cfg, speed=SPEED) as rig:
        shed = rig.shed.shed.name
        port = rig.daemon.metrics_port
        assert port, "the daemon serves no metrics"
        with prometheus(tmp_path / "prometheus", shed, port) as prom:
            await sessions_and_a_fault(rig)
            fault = f'chargectl_bay_fault{{shed="{shed}", bay="{SHORTED}"}} == 1'
            await asyncio.to_thread(prom.wait_for, fault, "the fault scraped")
            # rates and increases need a few samples in their window
            scraped = f'count_over_time(up{{job="chargectl", shed="{shed}"}}[1m]) >= 6'
            await asyncio.to_thread(prom.wait_for, scraped, "six scrapes")
            rules = await asyncio.to_thread(prom.wait_rules_evaluated)
            queries = await asyncio.to_thread(dashboard_queries, prom, shed)
            at = time.time()
            answers = {
                name: (expr, await asyncio.to_thread(prom.query, expr, at))
                for name, expr in [*queries, *alert_queries()]
            }
            known_labels = set((await asyncio.to_thread(prom.get, "/api/v1/labels"))["data"])
            log = prom.log()

    assert all(r["health"] == "ok" for r in rules), [
        (r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"
    ]
    n_panels = sum(1 for n in answers if n.startswith("panel "))
    n_alerts = len(alert_rules())
    assert n_panels >= len(dashboard_exprs()), n_panels  # a repeated panel counts per value
    assert len(answers) == n_panels + 2 * n_alerts
    assert set(NO_SERIES) <= set(answers), set(NO_SERIES) - set(answers)

    failed = [
        f"{name}: {a.get('errorType')}: {a.get('error')}\n  {expr}"
        for name, (expr, a) in answers.items()
        if a.get("status") != "success"
    ]
    assert not failed, "queries Prometheus refused:\n" + "\n".join(failed) + f"\n{log}"
    # A label no series has would still leave `sum by (typo)` an answer: name them all.
    unknown = [
        f"{name}: {sorted(label_names(expr) - known_labels)}"
        for name, (expr, _) in answers.items()
        if label_names(expr) - known_labels
    ]
    assert not unknown, "labels no scraped series has:\n" + "\n".join(unknown)
    empty = [
        f"{name}\n  {expr}"
        for name, (expr, a) in answers.items()
        if not a["data"]["result"] and name not in NO_SERIES and not as_written(name)
    ]
    assert not empty, "queries with no series on a running shed:\n" + "\n".join(empty)
    # An entry that answers after all is stale: the list stays what is really empty.
    stale = [n for n in NO_SERIES if answers[n][1]["data"]["result"]]
    assert not stale, f"NO_SERIES entries that return series: {stale}"

    holding = {
        name.removeprefix("alert ")
        for name, (_, a) in answers.items()
        if as_written(name) and a["data"]["result"]
    }
    assert MUST_FIRE <= holding <= MAY_FIRE, holding
