"""The URI of the embedded server: how every process and test reaches it."""

from __future__ import annotations

from pymongo.uri_parser import parse_uri

from shared.store.embedded_mongo import embedded_uri


def test_the_embedded_server_is_reached_without_retryable_writes() -> None:
    # SecantusDB's record of retryable writes makes every write slower, up to 15x after
    # 10,000 writes (docs/running.md); one local node gains nothing from a retried write
    options = parse_uri(embedded_uri(27018))["options"]
    assert options["retryWrites"] is False
    assert options["directConnection"] is True
