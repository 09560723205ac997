"""The gatekeeper: who a request is, whether it may, and the audit of what it changed
(:mod:`gateway.auth` explains the rules)."""

from __future__ import annotations

import hmac
import json
from ipaddress import IPv4Network, IPv6Network
from typing import Final

from aiohttp import hdrs, web

from gateway.api import Operation
from shared.core.errors import Forbidden, TooManyAuthFailures, Unauthorized
from shared.core.settings import GatewaySettings
from shared.domain.preview_policy import Address, PreviewPolicy
from shared.domain.roles import OPEN, VIA_NETWORK, Access, Principal, Role, refusal
from shared.services.access.audit import AuditTrail
from shared.services.access.credentials import TokenStore
from shared.services.access.throttle import FailureThrottle
from shared.store.mongo import Database
from shared.telemetry.log_setup import request_id_var

TOKEN_COOKIE: Final = "luna_streams_token"
CSRF_COOKIE: Final = "luna_streams_csrf"
CSRF_HEADER: Final = "X-CSRF-Token"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
#: a created object's id, read from a 2xx answer of at most this many bytes, for the audit
_AUDIT_BODY_LIMIT: Final = 4096
_NO_CREDENTIAL: Final = (
    "authentication is on: send 'Authorization: Bearer <token>' "
    "(tokens: `luna-streams tokens create`)"
)


class Gatekeeper:
    """Who a request is, whether it may, and the audit of what it changed.

    Made with the app (with authentication off it needs nothing more); :meth:`open` gives it
    the database its tokens and audit trail live in, once the database is open."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.enabled = settings.auth == "on"
        self.audit_retention_days = settings.audit_retention_days
        self._tokens: TokenStore | None = None
        self._audit: AuditTrail | None = None
        self.throttle = FailureThrottle(settings.auth_max_failures, settings.auth_failure_window)
        self.agent_networks: tuple[IPv4Network | IPv6Network, ...] = tuple(settings.agent_networks)
        self.policy = PreviewPolicy(trusted_proxies=tuple(settings.trusted_proxies))

    def open(self, database: Database) -> None:
        self._tokens = TokenStore(database)
        self._audit = AuditTrail(database, self.audit_retention_days)

    async def close(self) -> None:
        if self._audit is not None:
            await self._audit.close()

    @property
    def tokens(self) -> TokenStore:
        if self._tokens is None:
            raise RuntimeError("the gatekeeper has no database yet")
        return self._tokens

    @property
    def audit(self) -> AuditTrail:
        if self._audit is None:
            raise RuntimeError("the gatekeeper has no database yet")
        return self._audit

    def address(self, request: web.Request) -> Address | None:
        """The client's address (``X-Forwarded-For`` only from a trusted proxy)."""
        return self.policy.sender(request.remote, request.headers.getall("X-Forwarded-For", []))

    def _check_throttle(self, address: str) -> None:
        retry_after = self.throttle.retry_after(address)
        if retry_after is not None:
            raise TooManyAuthFailures(retry_after=retry_after)

    async def sign_in(self, request: web.Request, token: str) -> Principal:
        """The principal of a token given to sign in; a wrong one counts as a failure."""
        address = str(self.address(request))
        self._check_throttle(address)
        principal = await self.tokens.resolve(token)
        if principal is None:
            self.throttle.failed(address)
            raise Unauthorized(reason="the token is not valid (revoked, or never made)")
        return principal

    async def admit(self, request: web.Request, op: Operation) -> Principal | None:
        """Who ``request`` acts as; raises 401, 403 or 429. None: a public operation
        called without a credential."""
        if not self.enabled:
            return OPEN
        access = op.required_access
        if access is Access.PUBLIC:
            return None
        address = self.address(request)
        self._check_throttle(str(address))
        principal = await self._principal(request, address)
        reason = refusal(principal, access, op.takes_account)
        if reason is not None:
            raise Forbidden(reason=reason)
        return principal

    async def _principal(self, request: web.Request, address: Address | None) -> Principal:
        header = request.headers.get(hdrs.AUTHORIZATION)
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                self.throttle.failed(str(address))
                raise Unauthorized(reason="expected 'Authorization: Bearer <token>'")
            return await self._resolve(token.strip(), address)
        cookie = request.cookies.get(TOKEN_COOKIE)
        if cookie:
            principal = await self._resolve(cookie, address)
            if request.method not in SAFE_METHODS and not _csrf_ok(request):
                raise Forbidden(
                    reason=f"a console request that changes something needs the "
                    f"{CSRF_HEADER} header (sign in again)"
                )
            return principal
        if address is not None and any(address in net for net in self.agent_networks):
            return Principal(role=Role.AGENT, via=VIA_NETWORK)
        raise Unauthorized(reason=_NO_CREDENTIAL)

    async def _resolve(self, token: str, address: Address | None) -> Principal:
        principal = await self.tokens.resolve(token)
        if principal is None:
            self.throttle.failed(str(address))
            raise Unauthorized(reason="the token is not valid (revoked, or never made)")
        return principal

    async def record(
        self,
        request: web.Request,
        op: Operation,
        principal: Principal,
        response: web.StreamResponse,
        account_named: str | None,
    ) -> None:
        """The audit row of a change answered with a 2xx."""
        target = dict(request.match_info)
        target.update(_created_ids(response))
        await self.audit.record(
            principal,
            address=str(self.address(request)),
            request_id=request_id_var.get(),
            method=request.method,
            route=op.path,
            target=target,
            account_id=principal.account_id or account_named,
            status=response.status,
        )


def _csrf_ok(request: web.Request) -> bool:
    expected = request.cookies.get(CSRF_COOKIE, "")
    given = request.headers.get(CSRF_HEADER, "")
    return bool(expected) and hmac.compare_digest(expected.encode(), given.encode())


def _created_ids(response: web.StreamResponse) -> dict[str, str]:
    """The ``*_id`` strings at the top of a small JSON answer (what a create made)."""
    if not isinstance(response, web.Response) or response.content_type != "application/json":
        return {}
    body = response.body
    if not isinstance(body, bytes) or len(body) > _AUDIT_BODY_LIMIT:
        return {}
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if k.endswith("_id") and isinstance(v, str)}
