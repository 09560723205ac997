"""The luna-streams command: run one component, or the whole stack as child processes."""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Any

from shared.core.errors import EmbeddedUnavailable
from shared.core.settings import (
    METRICS_PORT_FIELDS,
    AutorestartWorkerSettings,
    CommonSettings,
    EmbeddedSettings,
    GatewaySettings,
    LoggingSettings,
    LogJanitorSettings,
    QueueWorkerSettings,
    Settings,
    env_name,
    listen_address,
    load_settings,
    mask_uri,
    node_urls,
)
from shared.store.embedded_mongo import embedded_uri, serve_embedded
from shared.telemetry.log_setup import setup_logging

MODULES = {
    "gateway": "gateway",
    "queue-worker": "queue_worker",
    "autorestart-worker": "autorestart_worker",
    "log-janitor": "log_janitor",
}


@dataclass(frozen=True, slots=True)
class Command:
    summary: str
    description: str
    #: the settings the command reads (``None``: none, it takes options)
    settings: type[LoggingSettings] | None


COMMANDS: dict[str, Command] = {
    "all": Command(
        "the whole stack on this machine (what `make run` starts)",
        "Start the embedded MongoDB-wire server (unless LUNA_STREAMS_MONGO_URI is set), the "
        "gateway, the queue worker, the autorestart worker and the log janitor as child "
        "processes. Ctrl-C (or SIGTERM) stops them all, the workers first, and prints one "
        "line per component; a second Ctrl-C kills what is still running. Each worker "
        "serves its metrics on the gateway's port + 1, + 2, + 3 unless its own port is set; "
        "the stack prints where. RabbitMQ must answer at LUNA_STREAMS_AMQP_URL.",
        Settings,
    ),
    "gateway": Command(
        "the HTTP API on LUNA_STREAMS_HOST:LUNA_STREAMS_PORT",
        "Serve the LUNA Streams HTTP API (v1 and v2) until SIGTERM or SIGINT, then stop "
        "answering readiness, drain the requests in flight and stop.",
        GatewaySettings,
    ),
    "queue-worker": Command(
        "apply the feedback agents send (consumer of the feedback queue)",
        "Consume feedback batches from RabbitMQ, apply them to MongoDB and answer the "
        "gateway that sent them. Run as many as needed: they compete for the queue.",
        QueueWorkerSettings,
    ),
    "autorestart-worker": Command(
        "restart failed streams, take streams back from silent agents",
        "Run the periodic jobs of the stream life cycle (dramatiq): autorestart of failed "
        "streams, the handler-lost watchdog, the dispatch reconciler. Replicas share the "
        "work through leases in MongoDB.",
        AutorestartWorkerSettings,
    ),
    "log-janitor": Command(
        "delete old stream logs (LUNA_STREAMS_LOGS_CLEAR_INTERVAL)",
        "Delete the stream log rows older than LUNA_STREAMS_LOGS_CLEAR_INTERVAL, keeping "
        "each stream's newest row, every check_interval seconds.",
        LogJanitorSettings,
    ),
    "embedded-mongo": Command(
        "the embedded MongoDB-wire server (SecantusDB; development only)",
        "Serve the embedded MongoDB-wire server on 127.0.0.1:LUNA_STREAMS_EMBEDDED_PORT "
        "with its data in LUNA_STREAMS_EMBEDDED_DATA_DIR (kept across runs), until SIGTERM "
        "or SIGINT.",
        EmbeddedSettings,
    ),
    "tokens": Command(
        "make, list and revoke API tokens (LUNA_STREAMS_AUTH=on)",
        "See `luna-streams tokens --help`.",
        None,
    ),
    "export": Command(
        "write an account's streams as JSON lines (through the HTTP API)",
        "See `luna-streams export --help`.",
        None,
    ),
    "import": Command(
        "make streams from JSON lines, all or nothing (through the HTTP API)",
        "See `luna-streams import --help`.",
        None,
    ),
    "agent-sim": Command(
        "simulate stream-handler agents against a running API",
        "See `luna-streams agent-sim --help`.",
        None,
    ),
}

SETTINGS_HELP = (
    "Meanings and allowed values: docs/configuration.md (served at\n"
    "/docs/dev/configuration); GET /config shows the effective values."
)


def _default(field_name: str, kind: type[LoggingSettings]) -> str:
    field = kind.model_fields[field_name]
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "not set"
    if hasattr(value, "model_dump_json"):
        return str(value.model_dump_json())
    return str(value)


def environment_help(kind: type[LoggingSettings] | None) -> str:
    """``NAME  (default: value)`` for each setting a command reads, from its class."""
    if kind is None:
        return ""
    names = list(kind.model_fields)
    width = max(len(env_name(kind, name)) for name in names)
    lines = [
        f"  {env_name(kind, name):<{width}}  default: {_default(name, kind)}" for name in names
    ]
    return "environment variables:\n" + "\n".join(lines) + "\n\n" + SETTINGS_HELP


def _die_with_parent() -> None:
    """In a child: get SIGTERM when the supervisor dies (Linux), so no component is orphaned."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _run_module(module: str) -> None:
    """Become the component (exec), so that it gets SIGTERM directly, also as PID 1."""
    os.execv(sys.executable, [sys.executable, "-m", module])


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def check_rabbitmq(settings: CommonSettings) -> str | None:
    """None when RabbitMQ answers at ``LUNA_STREAMS_AMQP_URL`` (at any of its nodes, when it
    names a cluster's: each process connects to the first that answers), else a one-line
    reason naming every node tried."""
    from urllib.parse import urlsplit

    nodes = node_urls(settings.amqp_url)
    for node in nodes:
        url = urlsplit(node)
        default_port = 5671 if url.scheme == "amqps" else 5672
        if _port_open(url.hostname or "127.0.0.1", url.port or default_port, timeout=2.0):
            return None
    tried = ", ".join(mask_uri(node) for node in nodes)
    which = " (no node of LUNA_STREAMS_AMQP_URL answered)" if len(nodes) > 1 else ""
    return (
        f"luna-streams: RabbitMQ is not reachable at {tried}{which}; "
        "start one (`rabbitmq-server -detached`, or `docker compose up rabbitmq`) "
        "or set LUNA_STREAMS_AMQP_URL"
    )


def _say(message: str, err: bool = False) -> None:
    print(f"luna-streams: {message}", file=sys.stderr if err else sys.stdout, flush=True)


def stop_child(child: subprocess.Popen[Any], sig: int, timeout: float) -> bool:
    """Send ``sig`` to ``child`` and wait up to ``timeout`` seconds for it to exit; kill it
    (and reap it) if it does not. True: it had to be killed."""
    child.send_signal(sig)
    try:
        child.wait(timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        return True
    return False


class Stack:
    """Child processes started in order, stopped one by one in reverse order.

    Each child runs in its own process group: a Ctrl-C in the terminal reaches only this
    supervisor, which then stops the workers before the gateway and the database they use,
    instead of every process getting SIGINT at once.
    """

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.stopping = False
        self.hurry = False

    def start(self, name: str, args: list[str], env: dict[str, str]) -> None:
        child = subprocess.Popen(args, env=env, process_group=0, preexec_fn=_die_with_parent)
        self.children.append((name, child))

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping and not self.hurry:
            self.hurry = True
            self.kill()
        self.stopping = True

    def kill(self) -> None:
        for _, child in self.children:
            if child.poll() is None:
                child.kill()

    def stop(self, timeout: float = 15.0, report: Callable[[str], None] = _say) -> None:
        self.stopping = True
        for name, child in reversed(self.children):
            started = time.monotonic()
            if child.poll() is None:
                if stop_child(child, signal.SIGTERM, timeout):
                    report(f"{name} killed after {timeout:.0f} s")
                    continue
                how = "killed" if child.returncode == -signal.SIGKILL else "stopped"
                code = "" if child.returncode == 0 else f", exit code {child.returncode}"
                report(f"{name} {how} ({time.monotonic() - started:.1f} s{code})")
            else:
                report(f"{name} had exited (exit code {child.returncode})")

    def dead(self) -> tuple[str, int] | None:
        for name, child in self.children:
            code = child.poll()
            if code is not None:
                return name, code
        return None


def _start_embedded(stack: Stack, settings: Settings, env: dict[str, str]) -> int | None:
    """Start the embedded server and wait for it; an exit code when that failed."""
    port = settings.embedded_port
    if _port_open("127.0.0.1", port):
        _say(f"port {port} is taken; set LUNA_STREAMS_EMBEDDED_PORT", err=True)
        return 1
    stack.start("embedded-mongo", [sys.executable, "-m", "cli.main", "embedded-mongo"], env)
    deadline = time.monotonic() + 60
    while not _port_open("127.0.0.1", port):
        if stack.stopping:
            return 0
        if stack.dead() or time.monotonic() > deadline:
            _say("the embedded MongoDB server did not start", err=True)
            return 1
        time.sleep(0.1)
    env["LUNA_STREAMS_MONGO_URI"] = embedded_uri(port)
    return None


def run_all(settings: Settings) -> int:
    problem = check_rabbitmq(settings)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    env = dict(os.environ)
    stack = Stack()
    signal.signal(signal.SIGTERM, stack.on_signal)
    signal.signal(signal.SIGINT, stack.on_signal)
    try:
        if not settings.mongo_uri:
            failed = _start_embedded(stack, settings, env)
            if failed is not None:
                return failed
        env.update(worker_metrics_ports(settings, env))
        for name, module in MODULES.items():
            stack.start(name, [sys.executable, "-m", module], env)
        _say(f"API on {listen_address(settings.host, settings.port)} (Ctrl-C stops everything)")
        _say(f"metrics: {', '.join(metrics_locations(settings, env))}")
        while not stack.stopping:
            dead = stack.dead()
            if dead:
                _say(f"{dead[0]} exited with code {dead[1]}; stopping the rest", err=True)
                return dead[1] or 1
            time.sleep(0.2)
        _say("stopping (Ctrl-C again to kill)")
        return 0
    finally:
        stack.stop(settings.shutdown_timeout + 5)


def worker_metrics_ports(settings: Settings, env: Mapping[str, str]) -> dict[str, str]:
    """The metrics port of each worker not set in ``env``: the gateway's port + 1, + 2, + 3
    (:data:`~shared.core.settings.METRICS_PORT_FIELDS` in order), so that no two bind one."""
    ports = {}
    for offset, field in enumerate(METRICS_PORT_FIELDS.values(), start=1):
        variable = env_name(Settings, field)
        if variable not in env and settings.port + offset <= 65535:
            ports[variable] = str(settings.port + offset)
    return ports


def metrics_locations(settings: Settings, env: Mapping[str, str]) -> list[str]:
    """Where each process of the stack serves its metrics (``off`` for port 0)."""
    shown = [f"gateway {listen_address(settings.host, settings.port, '/metrics')}"]
    for component, field in METRICS_PORT_FIELDS.items():
        port = int(env.get(env_name(Settings, field), "0"))
        where = listen_address(settings.metrics_host, port, "/metrics") if port else "off"
        shown.append(f"{component} {where}")
    return shown


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="luna-streams",
        description="Run a component of luna-streams (an open implementation of the "
        "VisionLabs LUNA Streams API), or the whole stack.",
        epilog="`luna-streams COMMAND --help` shows what a command does and the environment "
        "variables it reads.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub.add_parser(
            name,
            help=command.summary,
            description=textwrap.fill(command.description, 79),
            epilog=environment_help(command.settings),
            formatter_class=argparse.RawDescriptionHelpFormatter,
            add_help=name not in ("agent-sim", "tokens", "export", "import"),
        )
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "tokens":
        from cli.tokens import main as tokens

        tokens(rest)
        return
    if args.command in ("export", "import"):
        from cli.transfer import main as transfer

        transfer(args.command, rest)
        return
    if args.command == "agent-sim":
        from cli.agent_sim import main as agent_sim

        agent_sim(rest)
        return
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    kind = COMMANDS[args.command].settings
    assert kind is not None
    if args.command in MODULES:
        load_settings(kind)  # one clear line for an invalid setting, before the exec
        _run_module(MODULES[args.command])
    if args.command == "embedded-mongo":
        embedded = load_settings(EmbeddedSettings)
        setup_logging(embedded.log_level, embedded.log_format, args.command)
        try:
            serve_embedded(embedded.embedded_data_dir, embedded.embedded_port)
        except EmbeddedUnavailable as exc:
            print(f"luna-streams: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        return
    settings = load_settings(Settings)
    setup_logging(settings.log_level, settings.log_format, args.command)
    raise SystemExit(run_all(settings))


if __name__ == "__main__":
    main()
