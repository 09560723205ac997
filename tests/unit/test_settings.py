"""Settings per process: a shared base, and what each process reads."""

from __future__ import annotations

import pytest

from shared.settings import (
    AutorestartWorkerSettings,
    CommonSettings,
    GatewaySettings,
    LogJanitorSettings,
    QueueWorkerSettings,
    Settings,
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
