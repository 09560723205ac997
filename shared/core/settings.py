"""Settings: a shared base and the settings each process reads (arq's ``WorkerSettings``
is the model), validated at start, read-only after.

- :class:`CommonSettings`: MongoDB, RabbitMQ, logging and the shutdown bound, read by all four
  processes; :class:`GatewaySettings`, :class:`QueueWorkerSettings`,
  :class:`AutorestartWorkerSettings` and :class:`LogJanitorSettings` add what each one reads
  (the three workers through :class:`WorkerSettings`: each has a metrics port of its own).
- :class:`Settings` is all of them: what ``luna-streams all`` passes on to its children (and
  what the tests build); every process reads only its own class.

Environment names follow the real service where it has one (``STREAM_STATUS_OBSOLETING_PERIOD``,
``LUNA_STREAMS_LOGS_CLEAR_INTERVAL``); the rest carry the ``LUNA_STREAMS_`` prefix.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from ipaddress import ip_address
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MASK = "********"
_SECRET_WORDS = ("password", "token", "secret")

#: CIDRs, given comma-separated or as a JSON list (``10.0.0.0/8,192.168.1.7``)
Networks = Annotated[tuple[IPvAnyNetwork, ...], NoDecode]
#: host names, given comma-separated (``localhost,luna.example.com``)
HostNames = Annotated[tuple[str, ...], NoDecode]

IntervalType = Literal["weeks", "days", "hours", "minutes", "seconds"]
_INTERVAL_SECONDS: dict[str, int] = {
    "weeks": 7 * 86400,
    "days": 86400,
    "hours": 3600,
    "minutes": 60,
    "seconds": 1,
}


class LogsClearInterval(BaseModel):
    """``LUNA_STREAMS_LOGS_CLEAR_INTERVAL``: how old a stream log row may get."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    interval: int = Field(default=7, ge=1)
    interval_type: IntervalType = "days"
    check_interval: float = Field(default=180, gt=0)
    active: bool = True

    @property
    def max_age_seconds(self) -> int:
        return self.interval * _INTERVAL_SECONDS[self.interval_type]


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


def env_name(kind: type[BaseSettings], field_name: str) -> str:
    """The environment variable of a settings field (its first validation alias)."""
    alias = kind.model_fields[field_name].validation_alias
    return str(alias.choices[0]) if isinstance(alias, AliasChoices) else field_name.upper()


class LoggingSettings(BaseSettings):
    """Settings every process reads: how it logs."""

    model_config = SettingsConfigDict(
        frozen=True, extra="ignore", populate_by_name=True, case_sensitive=True
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", validation_alias=_env("LUNA_STREAMS_LOG_LEVEL")
    )
    log_format: Literal["text", "json"] = Field(
        default="text", validation_alias=_env("LUNA_STREAMS_LOG_FORMAT")
    )

    def masked(self, view: type[LoggingSettings] | None = None) -> dict[str, Any]:
        """Effective settings keyed by environment name, secrets replaced by ``MASK``: all
        of them, or those of ``view`` (one process's class)."""
        out: dict[str, Any] = {}
        dumped = self.model_dump(mode="json")
        kind = view or type(self)
        for name in kind.model_fields:
            variable = env_name(kind, name)
            out[variable] = mask_secrets(variable, dumped[name])
        return out


class CommonSettings(LoggingSettings):
    """What every component that serves reads: MongoDB, RabbitMQ, how long it may take to stop."""

    mongo_uri: str | None = Field(default=None, validation_alias=_env("LUNA_STREAMS_MONGO_URI"))
    db_name: str = Field(
        default="luna_streams", min_length=1, validation_alias=_env("LUNA_STREAMS_DB_NAME")
    )
    mongo_journal: bool = Field(default=True, validation_alias=_env("LUNA_STREAMS_MONGO_JOURNAL"))
    amqp_url: str = Field(
        default="amqp://guest:guest@127.0.0.1:5672/",
        validation_alias=_env("LUNA_STREAMS_AMQP_URL"),
    )

    @field_validator("amqp_url")
    @classmethod
    def _amqp_nodes(cls, value: str) -> str:
        """One AMQP URL, or the comma-separated URLs of a cluster's nodes."""
        nodes = node_urls(value)
        if not nodes:
            raise ValueError("give one amqp:// URL, or several separated by commas")
        for node in nodes:
            parts = urlsplit(node)
            if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
                raise ValueError(
                    f"{mask_uri(node)!r} is not an amqp:// or amqps:// URL with a host"
                )
        return value

    queue_prefix: str = Field(
        default="luna_streams",
        pattern=r"^[A-Za-z0-9_.\-]{1,64}$",
        validation_alias=_env("LUNA_STREAMS_QUEUE_PREFIX"),
    )
    queue_type: Literal["quorum", "classic"] = Field(
        default="quorum", validation_alias=_env("LUNA_STREAMS_QUEUE_TYPE")
    )
    feedback_delivery_limit: int = Field(
        default=5, ge=1, le=100, validation_alias=_env("LUNA_STREAMS_FEEDBACK_DELIVERY_LIMIT")
    )
    shutdown_timeout: float = Field(
        default=10.0, gt=0, validation_alias=_env("LUNA_STREAMS_SHUTDOWN_TIMEOUT")
    )
    #: internal addresses a webhook may call (the gateway checks a URL when it is
    #: registered, the autorestart worker again before each delivery)
    webhook_allowed_networks: Networks = Field(
        default=(), validation_alias=_env("LUNA_STREAMS_WEBHOOK_ALLOWED_NETWORKS")
    )

    @field_validator("webhook_allowed_networks", mode="before")
    @classmethod
    def _split_webhook_networks(cls, value: Any) -> Any:
        return split_networks(value)


class GatewaySettings(CommonSettings):
    """``luna-streams gateway``: the HTTP API (``/config`` shows these, masked)."""

    host: str = Field(default="127.0.0.1", validation_alias=_env("LUNA_STREAMS_HOST"))
    port: int = Field(default=5160, ge=1, le=65535, validation_alias=_env("LUNA_STREAMS_PORT"))
    allowed_hosts: HostNames = Field(
        default=(), validate_default=True, validation_alias=_env("LUNA_STREAMS_ALLOWED_HOSTS")
    )
    feedback_timeout: float = Field(
        default=10.0, gt=0, le=300, validation_alias=_env("LUNA_STREAMS_FEEDBACK_TIMEOUT")
    )
    claim_prefetch: int = Field(
        default=100, ge=1, le=1000, validation_alias=_env("LUNA_STREAMS_CLAIM_PREFETCH")
    )
    claim_hold: float = Field(
        default=1.0, gt=0, le=60, validation_alias=_env("LUNA_STREAMS_CLAIM_HOLD")
    )
    max_active_streams: int = Field(
        default=0, ge=0, validation_alias=_env("LUNA_STREAMS_MAX_ACTIVE_STREAMS")
    )
    max_body_size: int = Field(
        default=4 * 1024 * 1024, ge=1024, validation_alias=_env("LUNA_STREAMS_MAX_BODY_SIZE")
    )
    header_timeout: float = Field(
        default=15.0, gt=0, le=3600, validation_alias=_env("LUNA_STREAMS_HEADER_TIMEOUT")
    )
    body_timeout: float = Field(
        default=30.0, gt=0, le=3600, validation_alias=_env("LUNA_STREAMS_BODY_TIMEOUT")
    )
    max_connections: int = Field(
        default=1000, ge=1, validation_alias=_env("LUNA_STREAMS_MAX_CONNECTIONS")
    )
    preview_timeout: float = Field(
        default=5.0, gt=0, validation_alias=_env("LUNA_STREAMS_PREVIEW_TIMEOUT")
    )
    preview_max_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1, validation_alias=_env("LUNA_STREAMS_PREVIEW_MAX_BYTES")
    )
    preview_max_connections: int = Field(
        default=50, ge=1, le=10000, validation_alias=_env("LUNA_STREAMS_PREVIEW_MAX_CONNECTIONS")
    )
    preview_max_live: int = Field(
        default=20, ge=1, le=10000, validation_alias=_env("LUNA_STREAMS_PREVIEW_MAX_LIVE")
    )
    preview_live_max_duration: float = Field(
        default=300.0, gt=0, validation_alias=_env("LUNA_STREAMS_PREVIEW_LIVE_MAX_DURATION")
    )
    preview_agent_networks: Networks = Field(
        default=(), validation_alias=_env("LUNA_STREAMS_PREVIEW_AGENT_NETWORKS")
    )
    trusted_proxies: Networks = Field(
        default=(), validation_alias=_env("LUNA_STREAMS_TRUSTED_PROXIES")
    )
    events_max_connections: int = Field(
        default=0,
        ge=0,
        validate_default=True,
        validation_alias=_env("LUNA_STREAMS_EVENTS_MAX_CONNECTIONS"),
    )
    events_max_per_client: int = Field(
        default=20, ge=1, validation_alias=_env("LUNA_STREAMS_EVENTS_MAX_PER_CLIENT")
    )
    events_buffer: int = Field(
        default=256, ge=1, le=100_000, validation_alias=_env("LUNA_STREAMS_EVENTS_BUFFER")
    )
    events_history: int = Field(
        default=1024, ge=1, le=1_000_000, validation_alias=_env("LUNA_STREAMS_EVENTS_HISTORY")
    )
    events_keepalive: float = Field(
        default=15.0, gt=0, le=3600, validation_alias=_env("LUNA_STREAMS_EVENTS_KEEPALIVE")
    )
    auth: Literal["off", "on"] = Field(default="off", validation_alias=_env("LUNA_STREAMS_AUTH"))
    agent_networks: Networks = Field(
        default=(), validation_alias=_env("LUNA_STREAMS_AGENT_NETWORKS")
    )
    auth_max_failures: int = Field(
        default=20, ge=1, le=100_000, validation_alias=_env("LUNA_STREAMS_AUTH_MAX_FAILURES")
    )
    auth_failure_window: float = Field(
        default=60.0, gt=0, le=86400, validation_alias=_env("LUNA_STREAMS_AUTH_FAILURE_WINDOW")
    )
    audit_retention_days: float = Field(
        default=90.0, gt=0, validation_alias=_env("LUNA_STREAMS_AUDIT_RETENTION_DAYS")
    )

    @field_validator("auth", mode="before")
    @classmethod
    def _on_off(cls, value: Any) -> Any:
        """``on``/``off``, also as ``true``/``false``, ``1``/``0``, ``yes``/``no``."""
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, str):
            text = value.strip().lower()
            if text in ("1", "true", "yes"):
                return "on"
            if text in ("0", "false", "no", ""):
                return "off"
            return text
        return value

    @field_validator("preview_agent_networks", "trusted_proxies", "agent_networks", mode="before")
    @classmethod
    def _split_networks(cls, value: Any) -> Any:
        return split_networks(value)

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        """Comma-separated, or a JSON list (``[::1]`` alone is a host, not a list)."""
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                parsed = json.loads(value)
                if isinstance(parsed, list):
                    return parsed
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        """Host names (``[::1]`` for IPv6), ``*`` for any; when empty, the default of the
        address the gateway listens on (:func:`default_allowed_hosts`)."""
        if not value:
            return default_allowed_hosts(info.data.get("host", ""))
        names = tuple(name.lower().rstrip(".") for name in value)
        for name in names:
            if name != "*" and not _HOST_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a host name, an IP address or '*'")
        return names

    @field_validator("events_max_connections")
    @classmethod
    def _events_below_connections(cls, value: int, info: ValidationInfo) -> int:
        """0: a quarter of ``max_connections``; never all of them, or subscribers alone
        could hold every connection and lock every other client out."""
        connections = info.data.get("max_connections")
        if connections is None:  # invalid itself: that error is the one reported
            return value
        events = value or max(1, connections // 4)
        if events >= connections:
            raise ValueError(
                f"{events} event subscribers must be fewer than LUNA_STREAMS_MAX_CONNECTIONS "
                f"({connections}): subscribers could hold every connection"
            )
        return events


#: a DNS name, an IPv4 address, or an IPv6 address in brackets (as in a Host header)
_HOST_NAME = re.compile(r"[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?|\[[0-9a-f:.]+\]")
LOOPBACK_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "[::1]")


def default_allowed_hosts(bind_host: str) -> tuple[str, ...]:
    """``LUNA_STREAMS_ALLOWED_HOSTS`` when not set: bound to a loopback address, only the
    loopback names (a web page cannot reach the gateway by a name of its own: DNS
    rebinding); bound to another address, any host."""
    return LOOPBACK_HOSTS if is_loopback(bind_host) else ("*",)


def listen_address(host: str, port: int, path: str = "") -> str:
    """Where a server bound to ``host``:``port`` listens, said as it is: the URL of
    ``path`` there (an IPv6 address in brackets), then ``(every interface)`` for
    ``0.0.0.0``, ``::`` or an empty host."""
    shown = host or "*"
    url = f"http://[{shown}]:{port}{path}" if ":" in shown else f"http://{shown}:{port}{path}"
    return f"{url} (every interface)" if host in ("", "0.0.0.0", "::") else url


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address or host name) is this machine's loopback only."""
    if host.lower() == "localhost":
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class WorkerSettings(CommonSettings):
    """What every worker reads: the address of its Prometheus metrics (each worker has a
    port setting of its own, :data:`METRICS_PORT_FIELDS`)."""

    metrics_host: str = Field(
        default="127.0.0.1", min_length=1, validation_alias=_env("LUNA_STREAMS_METRICS_HOST")
    )


def _metrics_port(variable: str) -> Any:
    return Field(default=0, ge=0, le=65535, validation_alias=_env(variable))


class QueueWorkerSettings(WorkerSettings):
    """``luna-streams queue-worker``: the feedback consumer."""

    queue_worker_metrics_port: int = _metrics_port("LUNA_STREAMS_QUEUE_WORKER_METRICS_PORT")
    feedback_prefetch: int = Field(
        default=8, ge=1, le=1000, validation_alias=_env("LUNA_STREAMS_FEEDBACK_PREFETCH")
    )
    consumer_stall_timeout: float = Field(
        default=60.0, gt=0, validation_alias=_env("LUNA_STREAMS_CONSUMER_STALL_TIMEOUT")
    )


class JobWorkerSettings(WorkerSettings):
    """What both dramatiq workers read."""

    worker_threads: int = Field(
        default=4, ge=1, le=64, validation_alias=_env("LUNA_STREAMS_WORKER_THREADS")
    )


class AutorestartWorkerSettings(JobWorkerSettings):
    """``luna-streams autorestart-worker``: autorestart, handler-lost, reconciler, change sweep."""

    autorestart_metrics_port: int = _metrics_port("LUNA_STREAMS_AUTORESTART_METRICS_PORT")
    autorestart_sweep_interval: float = Field(
        default=5.0, gt=0, validation_alias=_env("LUNA_STREAMS_AUTORESTART_SWEEP_INTERVAL")
    )
    stream_status_obsoleting_period: float = Field(
        default=20.0, gt=0, le=3600, validation_alias=_env("STREAM_STATUS_OBSOLETING_PERIOD")
    )
    stream_status_obsoleting_interval: float = Field(
        default=5.0, gt=0, validation_alias=_env("STREAM_STATUS_OBSOLETING_INTERVAL")
    )
    reconcile_interval: float = Field(
        default=15.0, gt=0, validation_alias=_env("LUNA_STREAMS_RECONCILE_INTERVAL")
    )
    fleet_census_interval: float = Field(
        default=15.0, gt=0, le=3600, validation_alias=_env("LUNA_STREAMS_FLEET_CENSUS_INTERVAL")
    )
    change_sweep_delay: float = Field(
        default=10.0, gt=0, le=300, validation_alias=_env("LUNA_STREAMS_CHANGE_SWEEP_DELAY")
    )
    change_sweep_interval: float = Field(
        default=15.0, gt=0, le=3600, validation_alias=_env("LUNA_STREAMS_CHANGE_SWEEP_INTERVAL")
    )
    webhook_interval: float = Field(
        default=1.0, gt=0, le=60, validation_alias=_env("LUNA_STREAMS_WEBHOOK_INTERVAL")
    )
    webhook_timeout: float = Field(
        default=5.0, gt=0, le=60, validation_alias=_env("LUNA_STREAMS_WEBHOOK_TIMEOUT")
    )
    webhook_max_attempts: int = Field(
        default=8, ge=1, le=50, validation_alias=_env("LUNA_STREAMS_WEBHOOK_MAX_ATTEMPTS")
    )
    webhook_retry_delay: float = Field(
        default=10.0, gt=0, le=3600, validation_alias=_env("LUNA_STREAMS_WEBHOOK_RETRY_DELAY")
    )
    webhook_concurrency: int = Field(
        default=64, ge=1, le=1000, validation_alias=_env("LUNA_STREAMS_WEBHOOK_CONCURRENCY")
    )


class LogJanitorSettings(JobWorkerSettings):
    """``luna-streams log-janitor``."""

    janitor_metrics_port: int = _metrics_port("LUNA_STREAMS_JANITOR_METRICS_PORT")
    logs_clear_interval: LogsClearInterval = Field(
        default_factory=LogsClearInterval,
        validation_alias=_env("LUNA_STREAMS_LOGS_CLEAR_INTERVAL"),
    )


#: the field of each worker's metrics port, by component; 0 is off. ``luna-streams all``
#: gives them the gateway's port + 1, + 2, + 3 (in this order) unless set.
METRICS_PORT_FIELDS: dict[str, str] = {
    "queue-worker": "queue_worker_metrics_port",
    "autorestart-worker": "autorestart_metrics_port",
    "log-janitor": "janitor_metrics_port",
}

#: settings no longer read, with what replaced them, and the class that used to read them:
#: a process of that class refuses to start while one is set (rather than ignore it)
REMOVED_SETTINGS: dict[str, tuple[type[LoggingSettings], str]] = {
    "LUNA_STREAMS_WORKER_METRICS_PORT": (
        JobWorkerSettings,
        "both job workers bound this one port; set LUNA_STREAMS_AUTORESTART_METRICS_PORT "
        "and LUNA_STREAMS_JANITOR_METRICS_PORT (one port each) instead",
    ),
}


class EmbeddedSettings(LoggingSettings):
    """``luna-streams embedded-mongo``: the embedded MongoDB-wire server."""

    embedded_data_dir: str = Field(
        default="var/mongo", validation_alias=_env("LUNA_STREAMS_EMBEDDED_DATA_DIR")
    )
    embedded_port: int = Field(
        default=27018, ge=0, le=65535, validation_alias=_env("LUNA_STREAMS_EMBEDDED_PORT")
    )


class Settings(
    GatewaySettings,
    QueueWorkerSettings,
    AutorestartWorkerSettings,
    LogJanitorSettings,
    EmbeddedSettings,
):
    """Every setting: what ``luna-streams all`` reads and hands to its children."""


_URI_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:@/,\s]*):[^@/\s]*@")
_URI_SECRET_OPTION = re.compile(r"(?i)([?&][^=&]*(?:password|secret|token)[^=&]*=)[^&#]*")


def split_networks(value: Any) -> Any:
    """CIDRs given comma-separated or as a JSON list, as a list (other values unchanged)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def node_urls(url: str) -> list[str]:
    """The broker nodes of ``LUNA_STREAMS_AMQP_URL``: one URL, or several separated by
    commas (the nodes of one cluster)."""
    return [part.strip() for part in url.split(",") if part.strip()]


def mask_uri(uri: str) -> str:
    """Hide the password of every URI in ``uri`` (``amqp://user:pass@host/``, multi-host
    MongoDB URIs, comma-separated lists of AMQP URLs, URIs inside an error message) and the
    value of every option named like a password, secret or token."""
    masked = _URI_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", uri)
    return _URI_SECRET_OPTION.sub(lambda m: f"{m[1]}{MASK}", masked)


def mask_secrets(key: str, value: Any) -> Any:
    """Mask every password, token and secret in ``value``, recursively, URIs included."""
    if any(word in key.lower() for word in _SECRET_WORDS) and value not in (None, ""):
        return MASK
    if isinstance(value, dict):
        return {k: mask_secrets(str(k), v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(key, v) for v in value]
    if isinstance(value, str) and "://" in value:
        return mask_uri(value)
    return value


AnySettings = TypeVar("AnySettings", bound=LoggingSettings)


def load_settings(kind: type[AnySettings]) -> AnySettings:
    """Build ``kind`` from the environment; exit with one clear line when a setting is
    invalid."""
    for variable, (reader, replacement) in REMOVED_SETTINGS.items():
        if variable in os.environ and issubclass(kind, reader):
            print(f"luna-streams: {variable} is no longer read: {replacement}", file=sys.stderr)
            raise SystemExit(2)
    try:
        return kind()
    except ValidationError as exc:
        err = exc.errors()[0]
        name = ".".join(str(p) for p in err["loc"]) or "settings"
        value = err.get("input")
        shown = mask_secrets(name, value) if isinstance(value, str) else json.dumps(value)
        print(f"luna-streams: invalid setting {name}={shown!s}: {err['msg']}", file=sys.stderr)
        raise SystemExit(2) from None
