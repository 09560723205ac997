"""A real Prometheus (Debian's, its own process, on a free port, with a temporary storage
folder) scrapes a running ``luna-streams all`` (every process on its metrics port) with the
bundle's configuration and alert rules. After claims, feedback, a failure, an error and a
handler-lost, every expression of every dashboard panel must be accepted by Prometheus and
return a series, and every alert rule's expression must be accepted and read only metrics
that exist in the scrape: a renamed metric breaks this test, not a dashboard or an alert.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest
import yaml

from cli.main import stop_child
from tests.integration.test_cli import _PREFIXES, delete_cli_queues, wait_version
from tests.observability import (
    PROMETHEUS_CONFIG,
    RULES,
    alert_rules,
    binary,
    dashboard,
    metric_names,
    panel_expressions,
)
from tests.processes import ROOT, free_port
from tests.services import port_open

pytestmark = pytest.mark.slow

__all__ = ["delete_cli_queues"]  # its autouse fixture deletes the stack's queues

Json = dict[str, Any]
JOBS = {
    "luna-streams-gateway": "LUNA_STREAMS_PORT",
    "luna-streams-queue-worker": "LUNA_STREAMS_QUEUE_WORKER_METRICS_PORT",
    "luna-streams-autorestart-worker": "LUNA_STREAMS_AUTORESTART_METRICS_PORT",
    "luna-streams-log-janitor": "LUNA_STREAMS_JANITOR_METRICS_PORT",
}
ACCOUNT = "557d54ec-29ad-4f3c-93b4-c9092ef12515"
HANDLER_ID = "ee4c42b6-23ae-410e-a2aa-a4220e64ba4b"
#: STREAM_STATUS_OBSOLETING_PERIOD of the stack: an agent silent this long loses its stream
SILENCE = 2.0


def http(url: str, body: Json | None = None) -> tuple[int, Json]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"} if data else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture
def stack(tmp_path: Path, amqp_url: str, mongo_uri: str) -> Iterator[dict[str, str]]:
    """``luna-streams all`` on free ports, against the session's MongoDB, with short periods."""
    tag = uuid.uuid4().hex[:8]
    prefix = f"test_obs_{tag}"
    _PREFIXES.append(prefix)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUNA_STREAMS_")}
    env.update(
        PYTHONPATH=str(ROOT),
        LUNA_STREAMS_AMQP_URL=amqp_url,
        LUNA_STREAMS_MONGO_URI=mongo_uri,
        LUNA_STREAMS_DB_NAME=prefix,
        LUNA_STREAMS_QUEUE_PREFIX=prefix,
        LUNA_STREAMS_QUEUE_TYPE="classic",
        LUNA_STREAMS_HOST="127.0.0.1",
        LUNA_STREAMS_SHUTDOWN_TIMEOUT="3",
        LUNA_STREAMS_FLEET_CENSUS_INTERVAL="1",
        LUNA_STREAMS_AUTORESTART_SWEEP_INTERVAL="1",
        LUNA_STREAMS_LOGS_CLEAR_INTERVAL='{"check_interval": 1}',
        STREAM_STATUS_OBSOLETING_PERIOD=str(SILENCE),
        STREAM_STATUS_OBSOLETING_INTERVAL="0.5",
        **{variable: str(free_port()) for variable in JOBS.values()},
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "all"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_version(int(env["LUNA_STREAMS_PORT"]), 60)
        yield env
    finally:
        stop_child(proc, signal.SIGTERM, 40)
        with pymongo.MongoClient(mongo_uri) as client:
            client.drop_database(prefix)


def prometheus_config(env: dict[str, str], storage: Path) -> tuple[Path, list[str]]:
    """The bundle's configuration, every 1 s, its targets this test's processes on loopback
    (RabbitMQ's plugin when it answers on 127.0.0.1:15692); the jobs it scrapes."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(RULES)]
    jobs = []
    for job in list(config["scrape_configs"]):
        name = job["job_name"]
        if name in JOBS:
            job["static_configs"] = [{"targets": [f"127.0.0.1:{env[JOBS[name]]}"]}]
        elif name == "rabbitmq" and port_open("http://127.0.0.1:15692", 15692):
            job["static_configs"] = [{"targets": ["127.0.0.1:15692"]}]
        else:
            config["scrape_configs"].remove(job)
            continue
        jobs.append(name)
    assert set(JOBS) <= set(jobs)
    path = storage / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path, jobs


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: str) -> Json:
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=15) as resp:
                answer: Json = json.loads(resp.read())
        except urllib.error.HTTPError as exc:  # a refused query: 400 with the reason
            answer = json.loads(exc.read())
        return answer

    def query(self, expr: str) -> Json:
        return self.get("/api/v1/query", query=expr)

    def series(self, expr: str) -> list[Json]:
        answer = self.query(expr)
        assert answer["status"] == "success", (expr, answer)
        result: list[Json] = answer["data"]["result"]
        return result

    def wait(self, expr: str, timeout: float = 60) -> list[Json]:
        """The series of ``expr`` once it has some."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.series(expr)
            if found:
                return found
            assert time.monotonic() < deadline, f"no series for {expr}"
            time.sleep(0.5)


@pytest.fixture
def prometheus(stack: dict[str, str], tmp_path: Path) -> Iterator[tuple[Prometheus, list[str]]]:
    config, jobs = prometheus_config(stack, tmp_path)
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.console.templates=/dev/null",
            "--web.console.libraries=/dev/null",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "Prometheus did not become ready"
            time.sleep(0.3)
        yield Prometheus(url), jobs
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def create(api: str, **fields: Any) -> str:
    body = {
        "account_id": ACCOUNT,
        "data": {"type": "tcp", "reference": "rtsp://camera/1"},
        "event_handler": {"bestshot_handler": {"handler_id": HANDLER_ID}},
        **fields,
    }
    status, answer = http(f"{api}/1/streams", body)
    assert status == 201, answer
    return str(answer["stream_id"])


def claim(api: str, limit: int = 10) -> list[str]:
    status, answer = http(f"{api}/1/streams/processing/queue", {"filters": {}, "limit": limit})
    assert status == 200, answer
    return [stream["stream_id"] for stream in answer["streams"]]


def report(api: str, stream_id: str, status: str, version: int = 1) -> Json:
    item = {"stream_id": stream_id, "status": status, "version": version}
    code, answer = http(f"{api}/1/streams/processing/feedback", {"streams": [item]})
    assert code == 200, answer
    return answer


def drive(api: str) -> None:
    """Claims (and an empty one), feedback of each kind, a failure with an autorestart, a
    client error, and an agent that goes silent (handler_lost)."""
    working = create(api)
    failing = create(api, autorestart={"restart": 1, "attempt_count": 2, "delay": 1})
    silent = create(api)
    assert sorted(claim(api)) == sorted([working, failing, silent])
    assert claim(api) == []
    report(api, working, "in_progress")
    report(api, working, "in_progress", version=9)  # unmodified
    report(api, failing, "failure")
    status, _ = http(f"{api}/1/streams", {"account_id": "not a uuid"})
    assert status == 400
    create(api)  # stays pending: the oldest pending stream has an age
    deadline = time.monotonic() + 30
    while True:  # the working agent keeps reporting; ``silent`` never does
        report(api, working, "in_progress")
        status, stream = http(f"{api}/1/streams/{silent}")
        if stream["status"] == "pending":
            break
        assert time.monotonic() < deadline, "the silent agent's stream was not taken back"
        time.sleep(0.5)


def test_prometheus_scrapes_every_process_and_every_panel_and_alert_reads_real_series(
    stack: dict[str, str], prometheus: tuple[Prometheus, list[str]]
) -> None:
    server, jobs = prometheus
    api = f"http://127.0.0.1:{stack['LUNA_STREAMS_PORT']}"
    drive(api)
    # every target up, and what was driven scraped
    server.wait('count(up{job=~"luna-streams-.+"} == 1) == 4')
    server.wait('luna_streams_stream_status_changes_total{status="handler_lost"} > 0')
    server.wait('luna_streams_stream_status_changes_total{status="failure"} > 0')
    server.wait('luna_streams_autorestarts_total{outcome="restarted"} > 0')
    server.wait('luna_streams_feedback_items_total{outcome="unmodified"} > 0')
    server.wait("luna_streams_feedback_lag_seconds_count > 0")
    server.wait('luna_streams_claims_total{outcome="empty"} > 0')
    server.wait('luna_streams_streams{status="pending"} > 0')
    server.wait("luna_streams_feedback_queue_consumers > 0")
    server.wait('luna_streams_dependency_up{job="luna-streams-log-janitor"} == 1')
    server.wait("luna_streams_consumer_up == 1")
    server.wait("luna_streams_log_rows_removed_total")
    time.sleep(3)  # a few more scrapes: every rate has two points in its window
    targets = server.get("/api/v1/targets")["data"]["activeTargets"]
    assert {t["labels"]["job"] for t in targets} == set(jobs)
    assert all(t["health"] == "up" for t in targets), targets

    names = set(server.get("/api/v1/label/__name__/values")["data"])
    for title, expr in panel_expressions(dashboard()):
        answer = server.query(expr)
        assert answer["status"] == "success", (title, expr, answer)
        assert answer["data"]["result"], f"panel {title!r}: no series for {expr}"
        assert metric_names(expr) <= names, (title, metric_names(expr) - names)

    rules = alert_rules()
    for rule in rules:
        answer = server.query(rule["expr"])
        assert answer["status"] == "success", (rule["alert"], answer)
        read = metric_names(rule["expr"])
        assert read, rule["alert"]
        assert read <= names, (rule["alert"], read - names)
    # and Prometheus loaded and evaluates every rule of the bundle
    loaded = [
        rule for group in server.get("/api/v1/rules")["data"]["groups"] for rule in group["rules"]
    ]
    assert len(loaded) == len(rules)
    assert all(rule["health"] in ("ok", "unknown") for rule in loaded), loaded
    # nothing is wrong with this stack: no alert fires but the ones that wait for time
    firing = {a["labels"]["alertname"] for a in server.get("/api/v1/alerts")["data"]["alerts"]}
    assert not firing & {
        "LunaStreamsProcessDown",
        "LunaStreamsDatabaseUnreachable",
        "LunaStreamsBrokerUnreachable",
        "LunaStreamsFeedbackQueueWithoutConsumer",
        "LunaStreamsComponentMissing",
    }, firing
