"""The stack as users run it, for benchmarks: ``luna-streams all`` as a child process.

Every component is its own process and, unless ``LUNA_STREAMS_MONGO_URI`` names a MongoDB,
the embedded server is its own process too (with its data in a fresh folder). The stack
gets its own port, database and queue prefix, so it shares the RabbitMQ with nobody's
queues; it is stopped with SIGINT, as Ctrl-C stops it, and killed if it does not stop.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.request import urlopen

from cli.main import stop_child
from shared.core.settings import METRICS_PORT_FIELDS, Settings, env_name, node_urls
from shared.messaging.broker import QueueNames
from shared.runtime.job_worker import AUTORESTART, JANITOR
from shared.store.embedded_mongo import embedded_uri
from tests.services import free_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Stack:
    url: str
    mongo_uri: str
    db_name: str
    queue_prefix: str
    amqp_url: str
    pid: int


@contextlib.contextmanager
def running_stack(**env_extra: str) -> Iterator[Stack]:
    tag = uuid.uuid4().hex[:8]
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="luna-streams-bench-")
    mongo_port = free_port()
    mongo_uri = os.environ.get("LUNA_STREAMS_MONGO_URI") or embedded_uri(mongo_port)
    amqp_url = os.environ.get("LUNA_STREAMS_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    env = {
        **os.environ,
        "LUNA_STREAMS_PORT": str(port),
        "LUNA_STREAMS_HOST": "127.0.0.1",
        "LUNA_STREAMS_DB_NAME": f"bench_{tag}",
        "LUNA_STREAMS_QUEUE_PREFIX": f"bench_{tag}",
        "LUNA_STREAMS_EMBEDDED_PORT": str(mongo_port),
        "LUNA_STREAMS_EMBEDDED_DATA_DIR": os.path.join(data_dir, "mongo"),
        "LUNA_STREAMS_LOG_LEVEL": "WARNING",
        # free ports: the defaults (the gateway's port + 1, + 2, + 3) may be someone's,
        # the embedded server's among them
        **{env_name(Settings, field): str(free_port()) for field in METRICS_PORT_FIELDS.values()},
        **env_extra,
    }
    log_path = os.environ.get("LUNA_STREAMS_BENCH_LOG") or os.path.join(data_dir, "stack.log")
    with open(log_path, "wb") as log_file:
        child = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "all"],
            env=env,
            cwd=ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", child, log_path)
        yield Stack(
            url=f"http://127.0.0.1:{port}",
            mongo_uri=mongo_uri,
            db_name=f"bench_{tag}",
            queue_prefix=f"bench_{tag}",
            amqp_url=amqp_url,
            pid=child.pid,
        )
    finally:
        stop_child(child, signal.SIGINT, 60)
        shutil.rmtree(data_dir, ignore_errors=True)
        delete_queues(amqp_url, f"bench_{tag}")


def delete_queues(amqp_url: str, prefix: str) -> None:
    """Remove the stack's queues from the broker (quorum queues cost it even when idle).
    Group queues are left to the groups' deletion; benchmarks make none."""
    import pika

    names = QueueNames(prefix)
    jobs = [
        f"{prefix}.jobs.{kind}{suffix}"
        for kind in (AUTORESTART, JANITOR)
        for suffix in ("", ".DQ", ".XQ")
    ]
    connection = pika.BlockingConnection([pika.URLParameters(u) for u in node_urls(amqp_url)])
    try:
        channel = connection.channel()
        for name in [*names.every([]), *jobs]:
            channel.queue_delete(name)
    finally:
        connection.close()


def _wait_healthy(url: str, child: subprocess.Popen[bytes], log_path: str) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"the stack exited: {Path(log_path).read_text()[-3000:]}")
        try:
            with urlopen(f"{url}/healthcheck?include_luna_services=1", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"the stack did not become healthy: {Path(log_path).read_text()[-3000:]}")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mib(pid: int) -> float:
    """The most memory a process has held resident so far (``VmHWM``), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (``/proc/PID/stat``: utime, stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: how the benchmarks name the stack's processes (``python -m <module>``)
COMPONENT_NAMES = {"cli.main": "embedded-mongo"}


class CpuMeter:
    """CPU seconds each component process of a stack spends between two :meth:`lap` calls."""

    def __init__(self, stack_pid: int) -> None:
        self.pids = {
            COMPONENT_NAMES.get(module, module): pid
            for module, pid in children_of(stack_pid).items()
        }
        self._last = self._read()

    def _read(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def lap(self) -> dict[str, float]:
        now = self._read()
        spent = {name: now[name] - self._last[name] for name in now}
        self._last = now
        return spent


def children_of(pid: int) -> dict[str, int]:
    """The stack's component processes by module name (``python -m <module>``)."""
    found: dict[str, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) != pid:
            continue
        if b"-m" in cmdline:
            found[cmdline[cmdline.index(b"-m") + 1].decode()] = int(proc.name)
    return found
