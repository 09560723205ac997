"""``luna-streams``: run one component, or the whole stack as child processes."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from types import FrameType

from shared.embedded_mongo import EmbeddedUnavailable, embedded_uri, serve_embedded
from shared.log_setup import setup_logging
from shared.settings import Settings, load_settings, mask_uri

MODULES = {
    "gateway": "gateway",
    "queue-worker": "queue_worker",
    "autorestart-worker": "autorestart_worker",
    "log-janitor": "log_janitor",
}


def _run_module(module: str) -> None:
    """Become the component (exec), so that it gets SIGTERM directly, also as PID 1."""
    os.execv(sys.executable, [sys.executable, "-m", module])


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def check_rabbitmq(settings: Settings) -> str | None:
    """None when RabbitMQ answers at ``LUNA_STREAMS_AMQP_URL``, else a one-line reason."""
    from urllib.parse import urlsplit

    url = urlsplit(settings.amqp_url)
    host, port = url.hostname or "127.0.0.1", url.port or 5672
    if _port_open(host, port, timeout=2.0):
        return None
    return (
        f"luna-streams: RabbitMQ is not reachable at {mask_uri(settings.amqp_url)}; "
        "start one (`rabbitmq-server -detached`, or `docker compose up rabbitmq`) "
        "or set LUNA_STREAMS_AMQP_URL"
    )


class Stack:
    """Child processes started in order, stopped in reverse order."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.stopping = False

    def start(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.children.append((name, subprocess.Popen(args, env=env)))

    def stop(self, timeout: float = 15.0) -> None:
        self.stopping = True
        for _, child in reversed(self.children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(timeout)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()

    def dead(self) -> tuple[str, int] | None:
        for name, child in self.children:
            code = child.poll()
            if code is not None:
                return name, code
        return None


def run_all(settings: Settings) -> int:
    problem = check_rabbitmq(settings)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    env = dict(os.environ)
    stack = Stack()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stack.stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        if not settings.mongo_uri:
            port = settings.embedded_port
            if _port_open("127.0.0.1", port):
                print(
                    f"luna-streams: port {port} is taken; set LUNA_STREAMS_EMBEDDED_PORT",
                    file=sys.stderr,
                )
                return 1
            stack.start(
                "embedded-mongo", [sys.executable, "-m", "shared.cli", "embedded-mongo"], env
            )
            deadline = time.monotonic() + 60
            while not _port_open("127.0.0.1", port):
                if stack.dead() or time.monotonic() > deadline or stack.stopping:
                    print(
                        "luna-streams: the embedded MongoDB server did not start", file=sys.stderr
                    )
                    return 1
                time.sleep(0.1)
            env["LUNA_STREAMS_MONGO_URI"] = embedded_uri(port)
        for name, module in MODULES.items():
            stack.start(name, [sys.executable, "-m", module], env)
        print(
            f"luna-streams: API on http://{_shown_host(settings.host)}:{settings.port} "
            f"(Ctrl-C stops everything)",
            flush=True,
        )
        while not stack.stopping:
            dead = stack.dead()
            if dead:
                print(
                    f"luna-streams: {dead[0]} exited with code {dead[1]}; stopping the rest",
                    file=sys.stderr,
                )
                return dead[1] or 1
            time.sleep(0.2)
        return 0
    finally:
        stack.stop(settings.shutdown_timeout + 5)


def _shown_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="luna-streams", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in (*MODULES, "embedded-mongo", "all"):
        sub.add_parser(name, help=f"run {name}")
    sub.add_parser(
        "agent-sim", help="simulate stream-handler agents (see agent-sim --help)", add_help=False
    )
    args, rest = parser.parse_known_args(argv)
    if args.command == "agent-sim":
        from shared.agent_sim import main as agent_sim

        agent_sim(rest)
        return
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    settings = load_settings()
    setup_logging(settings.log_level, settings.log_format, args.command)
    if args.command in MODULES:
        _run_module(MODULES[args.command])
    if args.command == "embedded-mongo":
        try:
            serve_embedded(settings.embedded_data_dir, settings.embedded_port)
        except EmbeddedUnavailable as exc:
            print(f"luna-streams: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        return
    raise SystemExit(run_all(settings))


if __name__ == "__main__":
    main()
