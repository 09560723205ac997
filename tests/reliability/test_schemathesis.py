"""schemathesis against the spec the gateway serves (``GET /docs/spec``), every operation.

The gateway runs on a real port (:class:`tests.reliability.conftest.LiveGateway`) with a
feedback worker and the heartbeats of the other workers, so that no operation answers a 5xx
by design: every 5xx is a failure, and every answer must match the spec (status code, content
type, body schema). A second, smaller run has the gateway alone: feedback then times out into
504 (error code 3) and the healthcheck that includes the workers fails with 502 (error code
2), both documented; those two are the only 5xx allowed there.

Left out: request lines over the gateway's request-line limit (see
:func:`fits_the_request_line`);
and schemathesis' invalid ``Luna-Request-Id`` in cases that are not about it (see
:func:`drop_seeded_request_id`). Nothing else. The endless event streams are read up to
their first event.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err, Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.schemas import OpenApiSchema

from gateway.api import all_operations
from gateway.app import APIS, MAX_REQUEST_LINE
from shared.domain.request_id import HEADER, is_valid_request_id
from tests.reliability.conftest import LiveGateway

CONFORMANCE = [response_schema_conformance, status_code_conformance, content_type_conformance]
#: examples per operation: 20 in `make test`, more with `make reliability`
EXAMPLES = int(os.environ.get("LUNA_STREAMS_FUZZ_EXAMPLES", "20"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
SPEC_HEADERS = {"Accept": "application/x-yaml"}
#: the embedded database can take seconds on a large generated request (e.g. deleting every
#: stream the run created); slow is not a conformance failure, a hang still is
CALL_TIMEOUT = 60

#: a fuzzed operation makes many calls, each of which may take CALL_TIMEOUT
pytestmark = pytest.mark.timeout(600)
AIOHTTP_MAX_LINE = MAX_REQUEST_LINE
#: without workers, the answers that are a 5xx by design (documented in the spec)
#: no worker: a batch times out (504, 3); with one in flight or queued after that, the
#: overload is said at once (503, 4)
NO_WORKER = {(504, 3), (503, 4)}
BY_DESIGN = {
    "/1/streams/processing/feedback": NO_WORKER,
    "/2/streams/processing/feedback": NO_WORKER,
    "/healthcheck": {(502, 2)},
}


def fits_the_request_line(case: schemathesis.Case) -> bool:
    """Whether the request line fits the gateway's limit (``MAX_REQUEST_LINE``, 1 MiB:
    the documented maximum query lists fit; aiohttp itself answers longer lines)."""
    kwargs = case.as_transport_kwargs(base_url="http://127.0.0.1")
    prepared = requests.Request(
        method=kwargs["method"], url=kwargs["url"], params=kwargs.get("params")
    ).prepare()
    return len(f"{prepared.method} {prepared.path_url} HTTP/1.1") <= AIOHTTP_MAX_LINE


def load_schema(live: LiveGateway) -> OpenApiSchema:
    """The spec as the gateway serves it. Read by hand: schemathesis leaves out the
    operation that serves the schema it loaded from a URL, and /docs/spec is fuzzed too."""
    resp = requests.get(f"{live.url}/docs/spec", headers=SPEC_HEADERS, timeout=30)
    assert resp.status_code == 200, resp.text[:300]
    assert resp.headers["Content-Type"].startswith("application/x-yaml")
    schema = schemathesis.openapi.from_dict(yaml.safe_load(resp.text))
    schema.config.update(base_url=live.url)
    # an event stream never ends: its answer is read up to its first event (``ready``)
    schema.config.max_stream_events = 1
    return schema


def drop_seeded_request_id(case: schemathesis.Case) -> None:
    """Send ``Luna-Request-Id`` only when it is valid or the case is about it.

    schemathesis' coverage phase makes header values of ``[A-Za-z0-9]`` only, finds none for
    the ``<unix time>,<uuid>`` pattern, and seeds the optional header with an invalid value
    ('0') in every coverage case: the gateway would answer all of them 12029 before reading
    anything else. Cases that mutate the header itself keep it.
    """
    value = (case.headers or {}).get(HEADER)
    if value is None or is_valid_request_id(str(value)):
        return
    phase = case.meta.phase if case.meta is not None else None
    if phase is not None and getattr(phase.data, "parameter", None) == HEADER:
        return
    del case.headers[HEADER]


@pytest.fixture(autouse=True)
def _lazy_schema_node_id(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32's lazy schemas read and rename ``node._nodeid``, gone in pytest 9.2
    (the name only labels the per-operation subtests)."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture(scope="module")
def api_schema(live_gateway: LiveGateway) -> OpenApiSchema:
    return load_schema(live_gateway)


@pytest.fixture(scope="module")
def api_schema_alone(live_gateway_without_worker: LiveGateway) -> OpenApiSchema:
    return load_schema(live_gateway_without_worker)


schema = schemathesis.pytest.from_fixture("api_schema")
alone_schema = schemathesis.pytest.from_fixture("api_schema_alone").include(
    path_regex="^(" + "|".join(BY_DESIGN) + ")$"
)


@schema.parametrize()
@FUZZ
def test_every_operation_conforms(case: schemathesis.Case, http: requests.Session) -> None:
    drop_seeded_request_id(case)
    if not fits_the_request_line(case):
        return
    case.call_and_validate(
        session=http, checks=[not_a_server_error, *CONFORMANCE], timeout=CALL_TIMEOUT
    )


@alone_schema.parametrize()
@settings(FUZZ, max_examples=10)
def test_gateway_alone_conforms(case: schemathesis.Case, http: requests.Session) -> None:
    """No worker: feedback times out into 504 (error code 3) or, behind a batch that does,
    is refused at once (503, error code 4); the healthcheck that includes the workers fails
    with 502 (error code 2); any other 5xx is a failure."""
    drop_seeded_request_id(case)
    response = case.call_and_validate(session=http, checks=CONFORMANCE, timeout=CALL_TIMEOUT)
    if response.status_code >= 500:
        answer = (response.status_code, response.json()["error_code"])
        assert answer in BY_DESIGN[case.operation.path], answer


def test_every_operation_is_fuzzed(api_schema: OpenApiSchema) -> None:
    """schemathesis reads every operation of the served spec, and the spec has every route
    of the app: the run above leaves none out."""
    results = list(api_schema.get_all_operations())
    errors = [result.err() for result in results if isinstance(result, Err)]
    assert not errors
    loaded = [result.ok() for result in results if isinstance(result, Ok)]
    fuzzed = {(operation.method.upper(), operation.path) for operation in loaded}
    assert fuzzed == {(op.method, op.path) for op in all_operations(APIS)}
