"""The access rules without a server: grants, account scope, the failure throttle."""

from __future__ import annotations

import pytest

from shared.core.errors import InvalidValue
from shared.domain.roles import GRANTS, Access, Principal, Role, refusal, scope_refusal
from shared.services.access.credentials import PREFIX, check_scope, new_token, token_hash
from shared.services.access.throttle import MAX_ADDRESSES, FailureThrottle

ACCOUNT = "557d54ec-29ad-4f3c-93b4-c9092ef12515"
OTHER = "8950722f-3fd4-4223-b48f-03f95f0e8dfb"


def test_roles_grant_what_the_security_page_says() -> None:
    assert GRANTS[Role.VIEWER] == {Access.READ, Access.QUEUE, Access.PREVIEW}
    assert GRANTS[Role.OPERATOR] == {Access.READ, Access.WRITE, Access.QUEUE, Access.PREVIEW}
    assert GRANTS[Role.AGENT] == {Access.QUEUE, Access.PROCESS, Access.PREVIEW}
    assert GRANTS[Role.ADMIN] == set(Access)


def test_refusal_by_role_and_by_account_scope() -> None:
    viewer = Principal(role=Role.VIEWER, via="token")
    scoped = Principal(role=Role.OPERATOR, via="token", account_id=ACCOUNT)
    assert refusal(viewer, Access.READ, takes_account=True) is None
    assert "viewer" in (refusal(viewer, Access.WRITE, takes_account=True) or "")
    assert refusal(scoped, Access.WRITE, takes_account=True) is None
    assert refusal(scoped, Access.QUEUE, takes_account=False) is not None
    assert refusal(scoped, Access.SIGNED_IN, takes_account=False) is None
    assert scope_refusal(scoped, ACCOUNT) is None
    assert scope_refusal(scoped, OTHER) is not None
    assert scope_refusal(viewer, OTHER) is None


def test_only_viewer_and_operator_tokens_take_an_account() -> None:
    check_scope(Role.VIEWER, ACCOUNT)
    check_scope(Role.ADMIN, None)
    for role in (Role.ADMIN, Role.AGENT):
        with pytest.raises(InvalidValue):
            check_scope(role, ACCOUNT)


def test_tokens_are_random_and_stored_as_their_hash() -> None:
    first, second = new_token(), new_token()
    assert first != second and first.startswith(PREFIX) and len(first) == len(PREFIX) + 43
    assert token_hash(first) != first and len(token_hash(first)) == 64


def test_the_throttle_blocks_an_address_for_the_rest_of_its_window() -> None:
    throttle = FailureThrottle(max_failures=3, window=60)
    for _ in range(3):
        assert throttle.retry_after("10.0.0.1", now=100.0) is None
        throttle.failed("10.0.0.1", now=100.0)
    assert throttle.retry_after("10.0.0.1", now=110.0) == 50
    assert throttle.retry_after("10.0.0.2", now=110.0) is None  # others are not
    assert throttle.retry_after("10.0.0.1", now=160.0) is None  # a new window


def test_the_throttle_keeps_a_bounded_number_of_addresses() -> None:
    throttle = FailureThrottle(max_failures=1, window=60)
    for n in range(MAX_ADDRESSES + 10):
        throttle.failed(f"a{n}", now=1.0)
    assert len(throttle._windows) == MAX_ADDRESSES
    assert throttle.retry_after("a0", now=2.0) is None  # the oldest went first
    assert throttle.retry_after(f"a{MAX_ADDRESSES + 9}", now=2.0) == 59
