"""What monitoring/ ships: the alert rules pass `promtool check rules` and their unit tests
(`promtool test rules`), the example configuration passes `promtool check config`, and the
Grafana dashboard is importable as is (a datasource variable that every panel uses) and asks
only for series the agent exports. The lab side (a real Prometheus scraping a real agent, each
dashboard query returning data) is tests/lab/test_monitoring.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from netpath.agent import metrics

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
DASHBOARD = MONITORING / "grafana-dashboard.json"
NAME = re.compile(r"\b((?:netpath|process)_[a-z_]+)\b")


def promtool(*args) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus; scripts/setup.sh does)")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, cwd=MONITORING)


def exported_families() -> set:
    """Every family name the agent's exposition declares (HELP lines are there even without samples)."""
    text = metrics.prometheus_text({"version": "0.1.0", "bundle": "x", "kernel_repairs": {}})
    return {line.split()[2] for line in text.splitlines() if line.startswith("# HELP ")}


def base_name(name: str) -> str:
    return re.sub(r"_(bucket|sum|count)$", "", name) if name.startswith("netpath_state_swap_duration") else name


def test_promtool_checks_the_rules_and_their_unit_tests_pass():
    checked = promtool("check", "rules", "netpath.rules.yml")
    assert checked.returncode == 0 and "SUCCESS: 9 rules found" in checked.stdout, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "netpath.rules.test.yml")
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_every_alert_has_a_unit_test_that_fires_it_and_one_that_stays_silent():
    rules = (MONITORING / "netpath.rules.yml").read_text()
    tests = (MONITORING / "netpath.rules.test.yml").read_text()
    alerts = re.findall(r"^\s+- alert: (\w+)$", rules, re.M)
    assert len(alerts) == 9
    for alert in alerts:
        cases = re.findall(rf"alertname: {alert}\n\s+exp_alerts:( \[\])?", tests)
        assert any(c == " []" for c in cases) and any(c == "" for c in cases), (alert, cases)


def test_promtool_checks_the_example_configuration():
    checked = promtool("check", "config", "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_rules_and_the_dashboard_ask_only_for_exported_series():
    known = exported_families() | {"up", "ALERTS"}
    rules = (MONITORING / "netpath.rules.yml").read_text()
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [dashboard["templating"]["list"][1]["query"]["query"]]
    exprs += re.findall(r"^\s+expr: (.*)$", rules, re.M)
    asked = {base_name(n) for e in exprs for n in NAME.findall(e)}
    assert asked <= known, asked - known
    assert "netpath_kernel_repairs_total" in asked and "netpath_interface_state" in asked


def test_the_dashboard_is_importable_as_is():
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert dashboard["__inputs"] == []  # nothing to map on import: the variable picks the data source
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    titles = {p["title"] for p in dashboard["panels"]}
    assert {"Uplink states", "Latency per target", "Loss per target", "Traffic per uplink", "Policy shares",
            "State changes", "State swap duration", "Kernel repairs and failures"} <= titles
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert 'instance=~"$instance"' in target["expr"], (panel["title"], target["expr"])
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
