"""Authentication and authorization of every request (``LUNA_STREAMS_AUTH=on``).

:func:`access_middleware` finds the operation a request was routed to and asks the
:class:`Gatekeeper` who the caller is and whether it may:

- ``Authorization: Bearer <token>`` (an API token, :mod:`shared.services.access.credentials`);
- else the console's session cookie, set by ``POST /console/session``: HttpOnly,
  ``SameSite=Strict``, and every request that changes something must also carry the
  ``X-CSRF-Token`` header equal to the readable CSRF cookie (double submit), so that no
  other site can make a signed-in browser change anything;
- else an address inside ``LUNA_STREAMS_AGENT_NETWORKS`` acts as an ``agent`` (unmodified
  FaceStream sends no token);
- else nothing: 401 (12040), unless the operation is public (the console's files, the
  docs, ``/version``, ``/healthcheck``).

A role that does not reach the operation, an account-scoped token on an operation without an
account scope, or one naming another account (:mod:`gateway.parsing`) is 403 (12041). More
than ``LUNA_STREAMS_AUTH_MAX_FAILURES`` wrong credentials from one address within
``LUNA_STREAMS_AUTH_FAILURE_WINDOW`` seconds: that address gets 429 (12042) until the
window ends. A change answered with a 2xx is written to the audit trail before the answer
goes out (:mod:`shared.services.access.audit`).

With authentication off every request acts as an unscoped admin and nothing is checked or
audited: the reference service trusts whoever reaches it.
"""

from __future__ import annotations

import secrets

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.api import operation_of
from gateway.gatekeeper import CSRF_COOKIE, SAFE_METHODS, TOKEN_COOKIE
from gateway.keys import ACCOUNT_NAMED, GATE, PRINCIPAL
from shared.domain.roles import Access


def session_cookies(response: web.StreamResponse, token: str, secure: bool) -> None:
    """Sign the console in: the token (HttpOnly) and a CSRF token the page echoes."""
    response.set_cookie(
        TOKEN_COOKIE, token, httponly=True, samesite="Strict", path="/", secure=secure
    )
    response.set_cookie(
        CSRF_COOKIE, secrets.token_urlsafe(32), samesite="Strict", path="/", secure=secure
    )


def end_session(response: web.StreamResponse) -> None:
    response.del_cookie(TOKEN_COOKIE, path="/")
    response.del_cookie(CSRF_COOKIE, path="/")


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Inside the error middleware: its 401/403/429 are LUNA error bodies."""
    op = operation_of(request)
    if op is None:  # the router's 404 or 405
        return await handler(request)
    gate = request.app[GATE]
    principal = await gate.admit(request, op)
    if principal is not None:
        request[PRINCIPAL] = principal
    response = await handler(request)
    if (
        gate.enabled
        and principal is not None
        and request.method not in SAFE_METHODS
        and op.required_access is not Access.PROCESS  # claims and feedback: the stream logs
        and 200 <= response.status < 300
    ):
        await gate.record(request, op, principal, response, request.get(ACCOUNT_NAMED))
    return response
