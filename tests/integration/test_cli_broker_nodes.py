"""``luna-streams all`` given the nodes of a RabbitMQ cluster: it starts when any node answers,
and when none does its error names every node it tried (passwords masked)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from cli.main import check_rabbitmq
from shared.core.settings import Settings
from tests.integration.test_cli import (  # the fixture removes the queues of cli_env's prefixes
    CLI,
    children,
    cli_env,
    delete_cli_queues,  # noqa: F401
    wait_version,
)
from tests.processes import free_port


def _dead_node(password: str = "guest") -> str:
    return f"amqp://guest:{password}@127.0.0.1:{free_port()}/"  # nothing listens there


def test_the_check_passes_when_a_later_node_answers(amqp_url: str) -> None:
    assert check_rabbitmq(Settings(amqp_url=f"{_dead_node()},{_dead_node()},{amqp_url}")) is None


def test_the_check_names_every_node_tried_and_no_password() -> None:
    nodes = [_dead_node("first-secret"), _dead_node("second-secret"), _dead_node("third")]
    problem = check_rabbitmq(Settings(amqp_url=",".join(nodes)))
    assert problem is not None
    for node in nodes:
        port = node.rsplit(":", 1)[1].rstrip("/")
        assert f"amqp://guest:********@127.0.0.1:{port}/" in problem, problem
    assert "secret" not in problem
    assert "third" not in problem
    assert problem.startswith("luna-streams: RabbitMQ is not reachable at amqp://guest:********@")
    assert "no node of LUNA_STREAMS_AMQP_URL answered" in problem


@pytest.mark.slow
def test_all_starts_when_the_first_node_is_down(tmp_path: Path, amqp_url: str) -> None:
    """Each process fails over to the next node; the supervisor's start-up check did not."""
    env = cli_env(tmp_path, amqp_url, LUNA_STREAMS_AMQP_URL=f"{_dead_node()},{amqp_url}")
    proc = subprocess.Popen(
        [*CLI, "all"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_version(int(env["LUNA_STREAMS_PORT"]), 60)
        names = " ".join(children(proc.pid).values())
        for module in ("gateway", "queue_worker", "autorestart_worker", "log_janitor"):
            assert module in names, names
        time.sleep(1.0)  # every component has connected (to the second node)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(40) == 0
        _, err = proc.communicate()
        assert "not reachable" not in err
        assert "exited with code" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_all_with_no_node_answering_names_each_one(tmp_path: Path) -> None:
    nodes = [_dead_node("first-secret"), _dead_node("second-secret")]
    result = subprocess.run(
        [*CLI, "all"],
        env=cli_env(tmp_path, ",".join(nodes)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    for node in nodes:
        port = node.rsplit(":", 1)[1].rstrip("/")
        assert f"amqp://guest:********@127.0.0.1:{port}/" in result.stderr, result.stderr
    assert "secret" not in result.stderr
