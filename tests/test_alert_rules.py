"""deploy/prometheus/alerts.yml and deploy/grafana/plait.json: the rules pass their unit tests under Debian's
promtool (each alert has a case where it fires and one where it does not), a broken rule fails them, and every
series the rules and the dashboard query is one a running ``plait serve`` exposes on /metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.databases import IN_CI
from tests.support.metrics import delta, scrape
from tests.support.node import wait_until
from tests.support.server import SECRET, ProcessServer, free_port
from tests.support.users import create_workspace, register

ROOT = Path(__file__).resolve().parent.parent
PROM = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "plait.json"
# Series Prometheus itself makes (not the node's /metrics)
PROMETHEUS_OWN = {"up"}
# Suffixes a family's samples carry in the exposition and in queries
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created")}


def _promtool() -> str:
    exe = shutil.which("promtool")
    if exe is None:
        if IN_CI:
            pytest.fail("promtool (Debian package prometheus, make system-deps) is required in CI")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return exe


def _run(*args: str, cwd: Path = PROM) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_promtool(), *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=120)


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROM / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_alert_rules_are_valid_and_pass_their_unit_tests() -> None:
    checked = _run("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _run("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    tests = yaml.safe_load((PROM / "alerts_test.yml").read_text())["tests"]
    cases: dict[str, list[bool]] = {}
    for t in tests:
        for case in t.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], []).append(bool(case["exp_alerts"]))
    for t in tests:  # a quiet case: an eval with no alert, or a node of the input that does not alert
        fired = {a["exp_labels"]["instance"] for c in t.get("alert_rule_test", []) for a in c["exp_alerts"]}
        nodes = {m for s in t["input_series"] for m in re.findall(r'instance="(\w+)"', s["series"])}
        if nodes - fired:
            cases.setdefault(t["alert_rule_test"][0]["alertname"], []).append(False)
    names = [rule["alert"] for rule in _rules()]
    assert len(names) == len(set(names)) >= 10
    for name in names:
        assert True in cases.get(name, []), f"{name}: no case where it fires"
        assert False in cases.get(name, []), f"{name}: no case where it stays quiet"
    for rule in _rules():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_a_broken_rule_fails_its_unit_test(tmp_path: Path) -> None:
    """The unit tests have teeth: a threshold raised past the test's data makes them fail."""
    rules = (PROM / "alerts.yml").read_text()
    assert "increase(plait_send_queue_overflows_total[10m]) > 10" in rules
    (tmp_path / "alerts.yml").write_text(
        rules.replace(
            "increase(plait_send_queue_overflows_total[10m]) > 10",
            "increase(plait_send_queue_overflows_total[10m]) > 100",
        )
    )
    shutil.copy(PROM / "alerts_test.yml", tmp_path / "alerts_test.yml")
    broken = _run("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert broken.returncode != 0 and "PlaitSendQueueOverflows" in broken.stdout + broken.stderr


# ---- the series they query exist on a running node ------------------------------------------------------------


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessServer]:
    """A ``plait serve`` of its own: its /metrics is what a scrape of a deployed node returns."""
    tmp = tmp_path_factory.mktemp("alerts-node")
    env = {
        "PLAIT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'plait.db'}",
        "PLAIT_DATA_DIR": str(tmp),
        "PLAIT_SECRET_KEY": SECRET,
        "PLAIT_MIGRATE_ON_START": "true",
        "PLAIT_ENV": "test",
        # webhooks that fail fast, for the webhook series
        "PLAIT_WEBHOOK_ALLOW_PRIVATE": "true",
        "PLAIT_WEBHOOK_RETRY_BASE_SECONDS": "0.05",
        "PLAIT_WEBHOOK_MAX_ATTEMPTS": "2",
        "PLAIT_WEBHOOK_MAX_CONSECUTIVE_FAILURES": "3",
    }
    srv = ProcessServer(env, log_path=tmp / "server.log").start()
    try:
        yield srv
    finally:
        srv.stop()


def _exposed(base_url: str) -> set[str]:
    """Every series name /metrics can show: each family's samples' names, including those of labelled families
    that have no child yet (only their HELP and TYPE lines appear until a label value is first used)."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ()))
        names.update(s.name for s in family.samples)
    return names


def _queried(expr: str) -> set[str]:
    """The series names a PromQL expression selects (metric names; not functions, labels or keywords)."""
    names = set(re.findall(r"\b(plait_[a-z0-9_]+)\b", expr))
    names |= {n for n in PROMETHEUS_OWN if re.search(rf"\b{n}\{{", expr)}
    return names


@pytest.mark.slow  # a plait serve of its own (about 3 s to start, once for the module)
def test_every_series_the_alerts_query_is_on_metrics(node: ProcessServer) -> None:
    exposed = _exposed(node.base_url) | PROMETHEUS_OWN
    queried = set().union(*(_queried(rule["expr"]) for rule in _rules()))
    assert len(queried) >= 10
    assert not queried - exposed, f"alerts query series /metrics does not have: {sorted(queried - exposed)}"


@pytest.mark.slow  # a plait serve of its own (about 3 s to start, once for the module)
def test_every_series_the_dashboard_queries_is_on_metrics(node: ProcessServer) -> None:
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in board["panels"] for t in panel.get("targets", [])]
    assert len(exprs) >= 15
    queried = set().union(*(_queried(e) for e in exprs))
    exposed = _exposed(node.base_url) | PROMETHEUS_OWN
    assert not queried - exposed, f"the dashboard queries series /metrics does not have: {sorted(queried - exposed)}"
    # Every series of the node is on the dashboard, so a new metric is not forgotten there.
    families = {f.name for f in text_string_to_metric_families(httpx.get(f"{node.base_url}/metrics").text)}
    plait = {f for f in families if f.startswith("plait_") and not f.endswith("_created")}  # creation times
    shown = {q for q in queried if any(q == f or q.startswith(f + "_") for f in plait)}
    missing = sorted(f for f in plait if not any(s == f or s.startswith(f + "_") for s in shown))
    assert not missing, f"metrics with no panel: {missing}"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))


@pytest.mark.slow  # a plait serve of its own (about 3 s to start, once for the module)
def test_the_readiness_series_count_the_probes(node: ProcessServer) -> None:
    before = scrape(node.base_url)
    assert httpx.get(f"{node.base_url}/readyz").status_code == 200
    after = scrape(node.base_url)
    assert delta(before, after, "plait_readiness_checks_total", result="ok") == 1
    assert after[("plait_derivation_lag_seconds", ())] == 0


@pytest.mark.slow  # a plait serve of its own (about 3 s to start, once for the module)
def test_the_webhook_series_count_attempts_and_disabling(node: ProcessServer) -> None:
    """A webhook to a closed port: each delivery is retried once then given up; the third failure in a row
    disables the hook (PLAIT_WEBHOOK_MAX_ATTEMPTS=2, _MAX_CONSECUTIVE_FAILURES=3)."""
    before = scrape(node.base_url)
    with httpx.Client(base_url=node.base_url, timeout=30) as client:
        owner = register(client, "hooks")
        wid = create_workspace(client, owner)
        url = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens: connection refused
        r = client.post(
            f"/api/workspaces/{wid}/webhooks", json={"url": url, "events": ["task.created"]}, headers=owner.headers
        )
        assert r.status_code == 201, r.text
        for title in ("one", "two"):
            assert client.post(f"/api/workspaces/{wid}/tasks", json={"title": title}, headers=owner.headers).is_success

        def disabled() -> bool:
            return delta(before, scrape(node.base_url), "plait_webhooks_disabled_total") >= 1

        wait_until(disabled, 20, message="the failing webhook was never disabled")
    after = scrape(node.base_url)
    assert delta(before, after, "plait_webhook_attempts_total", outcome="retry") >= 1
    assert delta(before, after, "plait_webhook_attempts_total", outcome="failed") >= 1
    assert delta(before, after, "plait_webhook_attempts_total", outcome="delivered") == 0
