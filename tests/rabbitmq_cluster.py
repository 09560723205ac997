"""A RabbitMQ cluster on this machine, for tests and benchmarks: three nodes (by default)
of Debian's ``rabbitmq-server``, each with its own node name, ports and data folder, joined
with ``rabbitmqctl join_cluster``.

    python -m tests.rabbitmq_cluster start [--dir DIR] [--nodes 3]   # prints the URL list
    python -m tests.rabbitmq_cluster stop --dir DIR

The nodes run as the current user, with a cookie of their own (``HOME`` is a folder of the
cluster's), so they never meet the machine's own RabbitMQ. Tests use :class:`Cluster` to
kill a node (``kill -9``), find which node leads a quorum queue, and restart a node (it
rejoins the cluster by itself).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.services import free_port

SBIN = Path(os.environ.get("LUNA_STREAMS_RABBITMQ_SBIN", "/usr/lib/rabbitmq/bin"))
STATE = "cluster.json"


def available() -> bool:
    return (SBIN / "rabbitmq-server").exists() and (SBIN / "rabbitmqctl").exists()


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    port: int
    dist_port: int
    base: Path

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def pid_file(self) -> Path:
        return self.base / "pid"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.base / "home"),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.pid_file),
        }

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None


class Cluster:
    def __init__(self, base: Path, nodes: list[Node]) -> None:
        self.base = base
        self.nodes = nodes

    @classmethod
    def create(cls, size: int = 3, base: Path | None = None) -> Cluster:
        base = base or Path(tempfile.mkdtemp(prefix="luna-streams-rabbit-"))
        tag = secrets.token_hex(3)
        nodes = [
            Node(f"luna_{tag}_{n}@localhost", free_port(), free_port(), base / f"node{n}")
            for n in range(1, size + 1)
        ]
        cookie = secrets.token_hex(16).upper()
        for node in nodes:
            (node.base / "home").mkdir(parents=True, exist_ok=True)
            (node.base / "log").mkdir(exist_ok=True)
            cookie_file = node.base / "home" / ".erlang.cookie"
            cookie_file.write_text(cookie)
            cookie_file.chmod(0o400)
            (node.base / "rabbitmq.conf").write_text(
                f"listeners.tcp.local = 127.0.0.1:{node.port}\nloopback_users = none\n"
            )
            (node.base / "enabled_plugins").write_text("[].\n")
        cluster = cls(base, nodes)
        cluster._save()
        return cluster

    @classmethod
    def load(cls, base: Path) -> Cluster:
        state = json.loads((base / STATE).read_text())
        return cls(
            base, [Node(n["name"], n["port"], n["dist_port"], Path(n["base"])) for n in state]
        )

    def _save(self) -> None:
        state = [
            {"name": n.name, "port": n.port, "dist_port": n.dist_port, "base": str(n.base)}
            for n in self.nodes
        ]
        (self.base / STATE).write_text(json.dumps(state))

    @property
    def url(self) -> str:
        """``LUNA_STREAMS_AMQP_URL`` for the whole cluster."""
        return ",".join(node.url for node in self.nodes)

    def ctl(self, node: Node, *args: str, timeout: float = 60) -> str:
        done = subprocess.run(
            [str(SBIN / "rabbitmqctl"), "-n", node.name, *args],
            env=node.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} on {node.name}: {done.stderr}")
        return done.stdout

    def start_node(self, node: Node) -> None:
        with contextlib.suppress(FileNotFoundError):
            node.pid_file.unlink()
        subprocess.run(
            [str(SBIN / "rabbitmq-server"), "-detached"],
            env=node.env(),
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.ctl(node, "wait", str(node.pid_file), "--timeout", "60", timeout=90)

    def start(self) -> Cluster:
        for node in self.nodes:
            self.start_node(node)
        first = self.nodes[0]
        for node in self.nodes[1:]:
            self.ctl(node, "stop_app")
            self.ctl(node, "join_cluster", first.name)
            self.ctl(node, "start_app")
        return self

    def running(self) -> list[Node]:
        return [n for n in self.nodes if (pid := n.pid()) is not None and _alive(pid)]

    def kill(self, node: Node) -> None:
        """``kill -9`` the node (its Erlang VM), and wait until it is gone."""
        pid = node.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def leader(self, queue: str) -> Node:
        """The node that leads a quorum queue now."""
        alive = self.running()
        out = self.ctl(alive[0], "list_queues", "name", "leader", "--quiet", "--no-table-headers")
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == queue:
                return next(n for n in self.nodes if n.name == parts[1])
        raise LookupError(f"no quorum queue {queue} (or no leader)")

    def node_of(self, port: int) -> Node:
        return next(n for n in self.nodes if n.port == port)

    def stop(self) -> None:
        for node in self.nodes:
            pid = node.pid()
            if pid is None or not _alive(pid):
                continue
            try:
                self.ctl(node, "stop", str(node.pid_file), timeout=60)
            except (RuntimeError, subprocess.TimeoutExpired):
                self.kill(node)
        shutil.rmtree(self.base, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is gone for our purpose (a detached node is not our child: rarely one)
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


@contextlib.contextmanager
def running_cluster(size: int = 3) -> Iterator[Cluster]:
    cluster = Cluster.create(size)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--dir", type=Path, help="the cluster's folder (stop: required)")
    parser.add_argument("--nodes", type=int, default=3)
    args = parser.parse_args()
    if args.action == "start":
        if args.dir is not None:
            args.dir.mkdir(parents=True, exist_ok=True)
        cluster = Cluster.create(args.nodes, args.dir).start()
        print(f"# stop with: python -m tests.rabbitmq_cluster stop --dir {cluster.base}")
        print(f"LUNA_STREAMS_AMQP_URL={cluster.url}")
    else:
        if args.dir is None:
            parser.error("stop needs --dir")
        Cluster.load(args.dir).stop()


if __name__ == "__main__":
    main()
