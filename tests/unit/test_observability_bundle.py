"""deploy/observability as Prometheus' own tools read it (Debian's ``promtool``): the
configuration, the alert rules and their unit tests; and the dashboard and Grafana's
provisioning, statically. tests/integration/test_observability.py runs the bundle against
a real Prometheus scraping a running stack."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.observability import (
    DATASOURCES,
    PROMETHEUS_CONFIG,
    RULE_TESTS,
    RULES,
    alert_rules,
    binary,
    dashboard,
    metric_names,
    panel_expressions,
    panels,
)

#: what an operator is promised an alert for (issue 21), by the alert that does it
PROMISED_ALERTS = {
    "feedback queue without consumer": "LunaStreamsFeedbackQueueWithoutConsumer",
    "oldest pending stream too old": "LunaStreamsOldestPendingStreamTooOld",
    "a surge of handler_lost": "LunaStreamsHandlerLostSurge",
    "dead letters present": "LunaStreamsDeadLetters",
    "a process down": "LunaStreamsProcessDown",
    "error rate": "LunaStreamsHighErrorRate",
    "database unreachable": "LunaStreamsDatabaseUnreachable",
    "broker unreachable": "LunaStreamsBrokerUnreachable",
}


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def test_promtool_accepts_the_configuration_and_its_rules() -> None:
    result = promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "1 rule files found" in result.stdout


def test_the_configuration_with_authentication_on_is_valid(tmp_path: Path) -> None:
    """The gateway's /metrics needs a token with LUNA_STREAMS_AUTH=on: the commented
    ``authorization`` block, uncommented, is a valid configuration."""
    text = PROMETHEUS_CONFIG.read_text(encoding="utf-8")
    block = [line for line in text.splitlines() if line.startswith("    # ") and ":" in line]
    assert [line.split(":")[0].strip("# ") for line in block[-3:]] == [
        "authorization",
        "type",
        "credentials_file",
    ]
    secret = tmp_path / "luna-streams-token"
    secret.write_text("a-token\n")
    for line in block[-3:]:
        text = text.replace(line, line.replace("# ", "", 1))
    text = text.replace("/etc/prometheus/secrets/luna-streams-token", str(secret))
    config = yaml.safe_load(text)
    (gateway,) = [j for j in config["scrape_configs"] if j["job_name"] == "luna-streams-gateway"]
    assert gateway["authorization"] == {"type": "Bearer", "credentials_file": str(secret)}
    config["rule_files"] = []
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = promtool("check", "config", "--syntax-only", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_rules_and_every_alert_says_what_to_do() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = {rule["alert"] for rule in alert_rules()}
    assert set(PROMISED_ALERTS.values()) <= alerts
    for rule in alert_rules():
        annotations = rule["annotations"]
        assert len(annotations["summary"]) > 20, rule["alert"]
        assert len(annotations["description"]) > 80, rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]


def test_promtool_unit_tests_cover_every_alert_and_pass() -> None:
    files = sorted(RULE_TESTS.glob("*.yml"))
    assert files
    tested = set()
    for path in files:
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for case in test.get("alert_rule_test", []):
                if case["exp_alerts"]:  # a test that expects it to fire
                    tested.add(case["alertname"])
    assert tested == {rule["alert"] for rule in alert_rules()}
    result = promtool("test", "rules", *(str(p) for p in files))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_a_broken_alert_fails_its_promtool_test(tmp_path: Path) -> None:
    """The rule tests can fail: with a threshold changed, promtool says so."""
    rules = tmp_path / "rules"
    tests = tmp_path / "tests"
    rules.mkdir()
    tests.mkdir()
    text = RULES.read_text(encoding="utf-8")
    broken = text.replace("max(luna_streams_feedback_dead_letter_messages) > 0", "vector(0) > 1")
    assert broken != text
    (rules / RULES.name).write_text(broken)
    for path in RULE_TESTS.glob("*.yml"):
        (tests / path.name).write_text(path.read_text(encoding="utf-8"))
    result = promtool("test", "rules", *(str(p) for p in tests.glob("*.yml")))
    assert result.returncode != 0
    assert "LunaStreamsDeadLetters" in result.stdout + result.stderr


def test_the_dashboard_reads_the_provisioned_prometheus_and_covers_each_area() -> None:
    board = dashboard()
    (source,) = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    shown = panels(board)
    assert len(shown) >= 20
    for panel in shown:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == source["uid"], panel["title"]
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert rows == ["Fleet overview", "Queue and claims", "Feedback", "Workers", "Errors"]
    read = set().union(*(metric_names(expr) for _, expr in panel_expressions(board)))
    for needed in (
        "luna_streams_streams",
        "luna_streams_oldest_pending_age_seconds",
        "luna_streams_stream_status_changes_total",
        "luna_streams_autorestarts_total",
        "luna_streams_claims_total",
        "luna_streams_claim_duration_seconds_bucket",
        "luna_streams_feedback_items_total",
        "luna_streams_feedback_lag_seconds_bucket",
        "luna_streams_feedback_dead_letter_messages",
        "luna_streams_feedback_backlog_messages",
        "luna_streams_dependency_up",
        "luna_streams_consumer_up",
        "luna_streams_jobs_total",
        "luna_streams_log_rows_removed_total",
        "luna_streams_event_subscribers",
        "luna_streams_http_errors_total",
    ):
        assert needed in read, needed
    # RabbitMQ's own dashboards are referenced by their grafana.com ids, not copied
    links = " ".join(link["url"] for link in board["links"])
    assert "grafana.com/grafana/dashboards/10991" in links
    assert "grafana.com/grafana/dashboards/11340" in links
    assert not any("rabbitmq_" in expr for _, expr in panel_expressions(board))


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (status) (rate(luna_streams_x_total{status=~"a|b"}[5m])) * 60',
            {"luna_streams_x_total"},
        ),
        ('time() - max by (exported_job) (a_seconds{exported_job=~"x"}) > 300', {"a_seconds"}),
        (
            "histogram_quantile(0.99, sum by (le) (rate(b_bucket[1m]))) / on(job) c offset 5m",
            {"b_bucket", "c"},
        ),
        ('(sum(rate(r{code=~"5.."}[1m])) or vector(0)) / sum(rate(r[1m])) > 1e3', {"r"}),
        ('absent(up{job="luna-streams-gateway"})', {"up"}),
    ],
)
def test_metric_names_are_read_from_an_expression(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names
