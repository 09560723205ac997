"""``luna-streams``: the whole stack as child processes, and clear start-up failures."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pytest

from tests.processes import ROOT, free_port
from tests.waits import wait_until

CLI = [sys.executable, "-m", "cli.main"]


@pytest.fixture(autouse=True)
def delete_cli_queues(amqp_url: str) -> Iterator[None]:
    yield
    asyncio.run(_delete_queues(amqp_url, _PREFIXES))
    _PREFIXES.clear()


_PREFIXES: list[str] = []


async def _delete_queues(amqp_url: str, prefixes: list[str]) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        for prefix in prefixes:
            for name in ("streams", "feedback", "jobs.autorestart", "jobs.janitor"):
                for suffix in ("", ".DQ", ".XQ"):
                    await channel.queue_delete(f"{prefix}.{name}{suffix}")


def cli_env(tmp_path: Path, amqp_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUNA_STREAMS_")}
    tag = uuid.uuid4().hex[:8]
    _PREFIXES.append(f"test_cli_{tag}")
    env.update(
        PYTHONPATH=str(ROOT),
        LUNA_STREAMS_AMQP_URL=amqp_url,
        LUNA_STREAMS_QUEUE_PREFIX=f"test_cli_{tag}",
        LUNA_STREAMS_QUEUE_TYPE="classic",
        LUNA_STREAMS_EMBEDDED_DATA_DIR=str(tmp_path / "mongo"),
        LUNA_STREAMS_EMBEDDED_PORT=str(free_port()),
        LUNA_STREAMS_PORT=str(free_port()),
        LUNA_STREAMS_HOST="127.0.0.1",
        LUNA_STREAMS_SHUTDOWN_TIMEOUT="3",
        # free ports: the gateway's port + 1, + 2, + 3 (the defaults) may be someone's
        **{variable: str(free_port()) for variable in METRICS_PORTS.values()},
    )
    env.update(extra)
    return env


#: each worker's metrics port setting
METRICS_PORTS = {
    "queue-worker": "LUNA_STREAMS_QUEUE_WORKER_METRICS_PORT",
    "autorestart-worker": "LUNA_STREAMS_AUTORESTART_METRICS_PORT",
    "log-janitor": "LUNA_STREAMS_JANITOR_METRICS_PORT",
}


def children(pid: int) -> dict[int, str]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    found = {}
    for line in out.split():
        try:
            cmd = Path(f"/proc/{line}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        found[int(line)] = cmd
    return found


def answers_version(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/version", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def wait_version(port: int, timeout: float) -> None:
    wait_until(lambda: answers_version(port), timeout, what="GET /version answered")


@contextlib.contextmanager
def serving_all(env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """``luna-streams all`` with ``env``, once it answers ``GET /version`` (its output
    captured); killed at the end if it still runs."""
    proc = subprocess.Popen(
        [*CLI, "all"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_version(int(env["LUNA_STREAMS_PORT"]), 60)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_all_serves_and_stops_when_a_component_dies(tmp_path: Path, amqp_url: str) -> None:
    env = cli_env(tmp_path, amqp_url)
    with serving_all(env) as proc:
        kids = children(proc.pid)
        names = " ".join(kids.values())
        for module in (
            "gateway",
            "queue_worker",
            "autorestart_worker",
            "log_janitor",
            "embedded-mongo",
        ):
            assert module in names, names
        gateway_pid = next(pid for pid, cmd in kids.items() if "-m gateway" in cmd)
        os.kill(gateway_pid, signal.SIGKILL)
        code = proc.wait(30)
        assert code != 0
        out, err = proc.communicate()
        assert f"API on http://127.0.0.1:{env['LUNA_STREAMS_PORT']}" in out
        assert "gateway exited" in err
        for pid in kids:
            assert (
                not Path(f"/proc/{pid}").exists()
                or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
            )


@pytest.mark.slow
def test_all_stops_gracefully_on_sigterm(tmp_path: Path, amqp_url: str) -> None:
    env = cli_env(tmp_path, amqp_url)
    with serving_all(env) as proc:
        kids = children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(40) == 0
        _, err = proc.communicate()
        assert "stopped" in err
        for pid in kids:
            assert not Path(f"/proc/{pid}").exists()
        # the embedded data survives the run
        assert any((tmp_path / "mongo").iterdir())


def test_all_without_rabbitmq_exits_at_once(tmp_path: Path) -> None:
    dead = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    started = time.monotonic()
    result = subprocess.run(
        [*CLI, "all"], env=cli_env(tmp_path, dead), capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    assert time.monotonic() - started < 15
    assert "RabbitMQ is not reachable" in result.stderr
    assert "rabbitmq-server -detached" in result.stderr
    assert "guest:********@" in result.stderr


def test_invalid_setting_names_the_variable(tmp_path: Path, amqp_url: str) -> None:
    env = cli_env(tmp_path, amqp_url, LUNA_STREAMS_PORT="not-a-port")
    result = subprocess.run([*CLI, "gateway"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert lines[0].startswith("luna-streams: invalid setting LUNA_STREAMS_PORT=not-a-port")


COMPONENTS = ("embedded-mongo", "gateway", "queue-worker", "autorestart-worker", "log-janitor")


@pytest.mark.slow
def test_one_ctrl_c_stops_every_component_cleanly(tmp_path: Path, amqp_url: str) -> None:
    """A terminal's Ctrl-C: SIGINT to the whole foreground process group at once."""
    env = cli_env(tmp_path, amqp_url)
    proc = subprocess.Popen(
        [*CLI, "all"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        port = int(env["LUNA_STREAMS_PORT"])
        wait_version(port, 60)
        kids = children(proc.pid)
        # the workers are at work: each serves its metrics, the autorestart sweep has run
        for variable in METRICS_PORTS.values():
            scrape_until(int(env[variable]), r"^process_cpu_seconds_total ")
        scrape_until(
            int(env[METRICS_PORTS["autorestart-worker"]]),
            r'^luna_streams_jobs_total\{job="autorestart_sweep"\} [1-9]',
        )
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(60) == 0
        out, _ = proc.communicate()
        lines = out.splitlines()
        for name in COMPONENTS:
            mine = [line for line in lines if line.startswith(f"luna-streams: {name} stopped")]
            assert len(mine) == 1, (name, out)
        stopped = [line for line in lines if re.match(r"luna-streams: \S+ stopped", line)]
        assert [line.split()[1] for line in stopped] == list(reversed(COMPONENTS))
        assert "Traceback" not in out, out
        assert " ERROR " not in out, out
        assert "[None]" not in out
        for pid in kids:
            assert not Path(f"/proc/{pid}").exists()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_cli(*args: str) -> str:
    result = subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=30, env={**os.environ}
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_help_says_what_each_command_does() -> None:
    from cli.main import COMMANDS

    text = run_cli("--help")
    assert "``" not in text
    for name, command in COMMANDS.items():
        assert name in text
        assert not command.summary.startswith(("run ", name))
    assert "simulate stream-handler agents" in text


def test_command_help_lists_its_environment_with_defaults() -> None:
    from pydantic import AliasChoices

    from shared.core.settings import Settings

    text = run_cli("all", "--help")
    assert "Ctrl-C" in text
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        assert isinstance(alias, AliasChoices)
        assert str(alias.choices[0]) in text
    assert re.search(r"LUNA_STREAMS_PORT\s+default: 5160\n", text)
    assert re.search(r"LUNA_STREAMS_MONGO_URI\s+default: not set\n", text)
    gateway = run_cli("gateway", "--help")
    assert re.search(r"LUNA_STREAMS_HOST\s+default: 127\.0\.0\.1\n", gateway)
    assert "LUNA_STREAMS_LOGS_CLEAR_INTERVAL" not in gateway
    janitor = run_cli("log-janitor", "--help")
    assert "LUNA_STREAMS_LOGS_CLEAR_INTERVAL" in janitor


def test_every_setting_is_read_by_some_command() -> None:
    from cli.main import COMMANDS
    from shared.core.settings import Settings

    own = [c.settings for name, c in COMMANDS.items() if c.settings and name != "all"]
    listed = {name for kind in own for name in kind.model_fields}
    assert listed == set(Settings.model_fields)
    assert COMMANDS["all"].settings is Settings


def test_agent_sim_help_shows_options_with_defaults() -> None:
    text = run_cli("agent-sim", "--help")
    text = text[text.index("options:") :]
    for option, default in (
        ("--url", "http://127.0.0.1:5160"),
        ("--agents", "2"),
        ("--duration", "60.0"),
        ("--feedback-period", "2.0"),
        ("--progress-period", "5.0"),
    ):
        block = text[text.index(f"  {option} ") :]
        assert f"(default: {default})" in block[:160], option
    assert "--quiet" in text
    assert "--json" in text


def test_every_password_of_an_amqp_list_stays_masked_at_start() -> None:
    """Given several AMQP URLs, the start-up error masks each password (the second one was
    printed in clear)."""
    urls = "amqp://guest:first-secret@127.0.0.1:1/,amqp://guest:second-secret@127.0.0.1:2/"
    result = subprocess.run(
        [*CLI, "all"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "LUNA_STREAMS_AMQP_URL": urls},
    )
    assert result.returncode == 1, result.stderr
    assert "RabbitMQ is not reachable at amqp://guest:********@" in result.stderr
    assert "first-secret" not in result.stderr
    assert "second-secret" not in result.stderr


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text: str = resp.read().decode()
        return text


def scrape_until(port: int, pattern: str, timeout: float = 30) -> str:
    """The metrics of ``port`` once ``pattern`` is in them (a worker's job has run)."""
    seen = ""

    def matched() -> bool:
        nonlocal seen
        try:
            seen = scrape(port)
        except OSError:  # not listening yet
            return False
        return re.search(pattern, seen, re.M) is not None

    wait_until(matched, timeout, interval=0.5, what=f"{pattern} in the metrics of {port}")
    return seen


@pytest.mark.slow
def test_all_serves_every_process_metrics_on_a_port_of_its_own(
    tmp_path: Path, amqp_url: str
) -> None:
    """The two job workers read one port setting, so ``luna-streams all`` with it died; now
    each worker has its own, and the stack says where each process's metrics are, and on
    which address the API listens (every interface here, not 127.0.0.1 as it said)."""
    env = cli_env(
        tmp_path,
        amqp_url,
        LUNA_STREAMS_HOST="0.0.0.0",
        LUNA_STREAMS_LOGS_CLEAR_INTERVAL='{"check_interval": 1}',
    )
    port = int(env["LUNA_STREAMS_PORT"])
    ports = {name: int(env[variable]) for name, variable in METRICS_PORTS.items()}
    with serving_all(env) as proc:
        assert "luna_streams_http_requests_total" in scrape(port)
        assert "process_cpu_seconds_total" in scrape_until(
            ports["queue-worker"], r"^process_cpu_seconds_total "
        )
        for name, job in (
            ("autorestart-worker", "autorestart_sweep"),
            ("log-janitor", "clear_logs"),
        ):
            text = scrape_until(ports[name], rf'^luna_streams_jobs_total\{{job="{job}"\}} ')
            assert re.search(rf'^luna_streams_jobs_total\{{job="{job}"\}} [1-9]', text, re.M), name
        assert proc.poll() is None  # nothing died
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(40) == 0
        out, err = proc.communicate()
        assert f"API on http://0.0.0.0:{port} (every interface)" in out
        shown = (
            f"metrics: gateway http://0.0.0.0:{port}/metrics (every interface), "
            f"queue-worker http://127.0.0.1:{ports['queue-worker']}/metrics, "
            f"autorestart-worker http://127.0.0.1:{ports['autorestart-worker']}/metrics, "
            f"log-janitor http://127.0.0.1:{ports['log-janitor']}/metrics"
        )
        assert shown in out, out
        assert f"listening on http://0.0.0.0:{port} (every interface)" in err
        assert " ERROR " not in err, err


def test_the_removed_worker_metrics_port_stops_the_start(tmp_path: Path, amqp_url: str) -> None:
    env = cli_env(tmp_path, amqp_url, LUNA_STREAMS_WORKER_METRICS_PORT="9464")
    for command in ("all", "autorestart-worker", "log-janitor"):
        result = subprocess.run(
            [*CLI, command], env=env, capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 2, (command, result.stderr)
        assert result.stderr.strip() == (
            "luna-streams: LUNA_STREAMS_WORKER_METRICS_PORT is no longer read: both job "
            "workers bound this one port; set LUNA_STREAMS_AUTORESTART_METRICS_PORT and "
            "LUNA_STREAMS_JANITOR_METRICS_PORT (one port each) instead"
        ), command
