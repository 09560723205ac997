"""Settings per process: a shared base, and what each process reads."""

from __future__ import annotations

import pytest

from cli.main import worker_metrics_ports
from shared.core.settings import (
    METRICS_PORT_FIELDS,
    AutorestartWorkerSettings,
    CommonSettings,
    GatewaySettings,
    LogJanitorSettings,
    QueueWorkerSettings,
    Settings,
    env_name,
    listen_address,
    load_settings,
    mask_uri,
)

PROCESSES = (GatewaySettings, QueueWorkerSettings, AutorestartWorkerSettings, LogJanitorSettings)


def test_every_process_reads_the_common_base_and_nothing_of_the_others() -> None:
    common = set(CommonSettings.model_fields)
    for kind in PROCESSES:
        assert common <= set(kind.model_fields), kind
    assert "feedback_prefetch" not in GatewaySettings.model_fields
    assert "host" not in QueueWorkerSettings.model_fields
    assert "logs_clear_interval" not in AutorestartWorkerSettings.model_fields
    assert "stream_status_obsoleting_period" not in LogJanitorSettings.model_fields
    own = [set(kind.model_fields) - common for kind in (GatewaySettings, QueueWorkerSettings)]
    assert not own[0] & own[1]


def test_all_is_every_process_at_once() -> None:
    everything = set(Settings.model_fields)
    for kind in PROCESSES:
        assert set(kind.model_fields) <= everything
        assert issubclass(Settings, kind)


def test_a_process_ignores_an_invalid_setting_it_does_not_read(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LUNA_STREAMS_WORKER_THREADS", "0")
    assert load_settings(GatewaySettings).port == 5160
    assert load_settings(QueueWorkerSettings).feedback_prefetch == 8
    with pytest.raises(SystemExit) as stopped:
        load_settings(AutorestartWorkerSettings)
    assert stopped.value.code == 2
    assert "invalid setting LUNA_STREAMS_WORKER_THREADS=0" in capsys.readouterr().err


def test_config_shows_one_process_view_masked() -> None:
    settings = Settings(amqp_url="amqp://guest:secret@rabbit:5672/")
    shown = settings.masked(GatewaySettings)
    assert set(shown) >= {"LUNA_STREAMS_PORT", "LUNA_STREAMS_AMQP_URL"}
    assert "LUNA_STREAMS_WORKER_THREADS" not in shown
    assert "secret" not in shown["LUNA_STREAMS_AMQP_URL"]


def test_every_password_of_a_list_of_urls_is_masked() -> None:
    listed = "amqp://u:one@h1:5672/,amqp://v:two@h2:5672/vh, amqp://w:three@h3/"
    masked = mask_uri(listed)
    assert (
        masked == "amqp://u:********@h1:5672/,amqp://v:********@h2:5672/vh, amqp://w:********@h3/"
    )
    said = mask_uri(f"cannot connect to {listed}: refused")
    assert not any(secret in said for secret in ("one", "two", "three"))
    assert (
        mask_uri("mongodb://u:pw@a:1,b:2/?replicaSet=rs")
        == "mongodb://u:********@a:1,b:2/?replicaSet=rs"
    )


def test_the_broker_url_is_one_node_or_a_comma_separated_list_of_them(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    nodes = "amqp://guest:one@a:5672/, amqps://guest:two@b:5671/vh"
    assert CommonSettings(amqp_url=nodes).amqp_url == nodes
    for bad in ("", " , ", "http://a/", "amqp://g:secret@a/,rabbit-b"):
        monkeypatch.setenv("LUNA_STREAMS_AMQP_URL", bad)
        with pytest.raises(SystemExit):
            load_settings(CommonSettings)
        said = capsys.readouterr().err
        assert "LUNA_STREAMS_AMQP_URL" in said or "amqp_url" in said, said
        assert "secret" not in said, said


@pytest.mark.parametrize(("connections", "events"), [(1000, 1000), (100, 200), (1, 0)])
def test_the_events_cap_must_stay_below_the_connection_cap(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    connections: int,
    events: int,
) -> None:
    """Subscribers holding every connection lock every other client out (issue 19)."""
    monkeypatch.setenv("LUNA_STREAMS_MAX_CONNECTIONS", str(connections))
    monkeypatch.setenv("LUNA_STREAMS_EVENTS_MAX_CONNECTIONS", str(events))
    with pytest.raises(SystemExit) as stopped:
        load_settings(GatewaySettings)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"luna-streams: invalid setting LUNA_STREAMS_EVENTS_MAX_CONNECTIONS={events}"
    )
    assert f"must be fewer than LUNA_STREAMS_MAX_CONNECTIONS ({connections})" in err


def test_the_events_cap_is_a_quarter_of_the_connection_cap_unless_given() -> None:
    assert GatewaySettings().events_max_connections == 250
    assert GatewaySettings(max_connections=10).events_max_connections == 2
    assert GatewaySettings(max_connections=10, events_max_connections=9).events_max_connections == 9
    assert GatewaySettings().events_max_per_client == 20


def test_the_gateway_listens_on_loopback_and_answers_loopback_names_by_default() -> None:
    settings = GatewaySettings()
    assert settings.host == "127.0.0.1"
    assert settings.allowed_hosts == ("localhost", "127.0.0.1", "[::1]")
    assert GatewaySettings(host="::1").allowed_hosts == ("localhost", "127.0.0.1", "[::1]")
    assert GatewaySettings(host="0.0.0.0").allowed_hosts == ("*",)
    assert GatewaySettings(host="10.1.2.3").allowed_hosts == ("*",)
    given = GatewaySettings(host="0.0.0.0", allowed_hosts="Luna.Example.com., [::1],10.1.2.3")
    assert given.allowed_hosts == ("luna.example.com", "[::1]", "10.1.2.3")
    as_json = GatewaySettings(allowed_hosts='["luna.example.com", "[::1]"]')
    assert as_json.allowed_hosts == ("luna.example.com", "[::1]")


@pytest.mark.parametrize("hosts", ["luna example", "http://luna", "luna/x", "[::1"])
def test_an_allowed_host_must_be_a_host_name(hosts: str) -> None:
    with pytest.raises(ValueError, match="is not a host name"):
        GatewaySettings(allowed_hosts=hosts)


def test_each_worker_has_a_metrics_port_of_its_own() -> None:
    ports = {
        "queue-worker": (QueueWorkerSettings, "LUNA_STREAMS_QUEUE_WORKER_METRICS_PORT"),
        "autorestart-worker": (AutorestartWorkerSettings, "LUNA_STREAMS_AUTORESTART_METRICS_PORT"),
        "log-janitor": (LogJanitorSettings, "LUNA_STREAMS_JANITOR_METRICS_PORT"),
    }
    assert list(METRICS_PORT_FIELDS) == list(ports)
    for component, (kind, variable) in ports.items():
        (field,) = [name for name in kind.model_fields if name.endswith("metrics_port")]
        assert METRICS_PORT_FIELDS[component] == field
        assert env_name(kind, field) == variable
    assert set(METRICS_PORT_FIELDS.values()) == {
        name for name in Settings.model_fields if name.endswith("metrics_port")
    }
    assert "LUNA_STREAMS_WORKER_METRICS_PORT" not in Settings().masked()


def test_the_removed_worker_metrics_port_stops_the_job_workers_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LUNA_STREAMS_WORKER_METRICS_PORT", "9464")
    assert load_settings(GatewaySettings).port == 5160
    assert load_settings(QueueWorkerSettings).queue_worker_metrics_port == 0
    for kind in (AutorestartWorkerSettings, LogJanitorSettings, Settings):
        with pytest.raises(SystemExit) as stopped:
            load_settings(kind)
        assert stopped.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("luna-streams: LUNA_STREAMS_WORKER_METRICS_PORT is no longer read")
        assert "LUNA_STREAMS_AUTORESTART_METRICS_PORT" in err


def test_all_gives_each_worker_the_next_ports_unless_set() -> None:
    settings = Settings(port=5160)
    assert worker_metrics_ports(settings, {}) == {
        "LUNA_STREAMS_QUEUE_WORKER_METRICS_PORT": "5161",
        "LUNA_STREAMS_AUTORESTART_METRICS_PORT": "5162",
        "LUNA_STREAMS_JANITOR_METRICS_PORT": "5163",
    }
    given = {"LUNA_STREAMS_AUTORESTART_METRICS_PORT": "0"}  # off, as asked
    assert worker_metrics_ports(settings, given) == {
        "LUNA_STREAMS_QUEUE_WORKER_METRICS_PORT": "5161",
        "LUNA_STREAMS_JANITOR_METRICS_PORT": "5163",
    }
    assert worker_metrics_ports(Settings(port=65534), {}) == {
        "LUNA_STREAMS_QUEUE_WORKER_METRICS_PORT": "65535"
    }


def test_a_bind_address_is_said_as_it_is() -> None:
    assert listen_address("127.0.0.1", 5160) == "http://127.0.0.1:5160"
    assert listen_address("0.0.0.0", 5160) == "http://0.0.0.0:5160 (every interface)"
    assert listen_address("::", 1, "/metrics") == "http://[::]:1/metrics (every interface)"
    assert listen_address("::1", 1) == "http://[::1]:1"
