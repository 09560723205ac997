"""Access routes: who am I, the console's session, API tokens and the audit trail (admin).

Thin: the rules live in :mod:`shared.services.access` and :mod:`gateway.gatekeeper`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from gateway.api import Api, Response
from gateway.auth import end_session, session_cookies
from gateway.keys import GATE, PRINCIPAL
from gateway.parsing import json_response, parse_body, parse_query, path_uuid
from shared.core.errors import BadInputJson, InvalidValue, TokenNotFound, Unauthorized
from shared.domain.filters import Page, QueryUUID
from shared.domain.models.common import QueryTime, StrictModel, UUIDStr
from shared.domain.roles import OPEN, Access, Principal, Role
from shared.services.access.audit import AuditQuery, audit_view
from shared.services.access.credentials import MAX_TOKEN_LENGTH, token_view

api = Api(tag="access")

TokenName = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class Identity(BaseModel):
    auth: str = Field(description="`on` or `off` (LUNA_STREAMS_AUTH)")
    role: Role
    account_id: str | None = Field(description="The one account this credential reaches")
    token_id: str | None
    name: str | None
    via: str = Field(description="token, agent network, or authentication off")


class SessionRequest(StrictModel):
    token: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TOKEN_LENGTH)]


class TokenCreate(StrictModel):
    role: Literal["viewer", "operator", "admin", "agent"]
    account_id: UUIDStr | None = Field(
        default=None,
        description="Only viewer and operator tokens take one: they then reach this account only.",
    )
    name: TokenName | None = Field(default=None, description="Who or what uses it")


class TokenView(BaseModel):
    token_id: str
    role: Role
    account_id: str | None
    name: str | None
    create_time: str


class TokenCreated(TokenView):
    token: str = Field(description="The token: shown this once, stored only as a hash")


class TokenList(BaseModel):
    tokens: list[TokenView]


class AuditListQuery(Page):
    model_config = ConfigDict(extra="ignore")

    account_id: QueryUUID | None = Field(default=None, description="Changes of this account.")
    token_id: QueryUUID | None = Field(default=None, description="Changes by this token.")
    time__gte: QueryTime | None = Field(default=None, description="From this time.")
    time__lt: QueryTime | None = Field(default=None, description="Before this time.")


class AuditEntry(BaseModel):
    audit_id: str
    time: str
    token_id: str | None
    token_name: str | None
    role: Role
    via: str
    address: str | None
    request_id: str | None
    method: str
    route: str = Field(description="The operation's path template")
    target: dict[str, str] = Field(description="The ids in the path, and those a create made")
    account_id: str | None
    status: int


class AuditList(BaseModel):
    entries: list[AuditEntry]


def identity(enabled: bool, principal: Principal) -> dict[str, object]:
    return {
        "auth": "on" if enabled else "off",
        "role": principal.role.value,
        "account_id": principal.account_id,
        "token_id": principal.token_id,
        "name": principal.name,
        "via": principal.via,
    }


async def create_session(request: web.Request) -> web.StreamResponse:
    body = await parse_body(request, SessionRequest)
    gate = request.app[GATE]
    if not gate.enabled:
        return json_response(identity(False, OPEN))
    principal = await gate.sign_in(request, body.token)
    response = json_response(identity(True, principal))
    session_cookies(response, body.token, secure=request.secure)
    return response


async def delete_session(request: web.Request) -> web.StreamResponse:
    response = web.Response(status=204)
    end_session(response)
    return response


api.add(
    "POST",
    "/console/session",
    create_session,
    summary="Sign the console in with an API token (sets its session cookies)",
    description="The token goes into an HttpOnly, SameSite=Strict cookie; a second, "
    "readable cookie holds a CSRF token the console sends back in `X-CSRF-Token` with "
    "every request that changes something. With authentication off, nothing is set.",
    body=SessionRequest,
    responses={200: Response("Signed in as", Identity)},
    errors=(Unauthorized,),
    access=Access.PUBLIC,
    operation_id="createConsoleSession",
)
api.add(
    "DELETE",
    "/console/session",
    delete_session,
    summary="Sign the console out (removes its session cookies)",
    responses={204: Response("Signed out")},
    access=Access.PUBLIC,
    operation_id="deleteConsoleSession",
)


def add_access_routes(version: int) -> None:
    async def who_am_i(request: web.Request) -> web.StreamResponse:
        gate = request.app[GATE]
        return json_response(identity(gate.enabled, request.get(PRINCIPAL, OPEN)))

    async def create_token(request: web.Request) -> web.StreamResponse:
        body = await parse_body(request, TokenCreate)
        try:
            doc, token = await request.app[GATE].tokens.create(
                Role(body.role), body.account_id, body.name
            )
        except InvalidValue as exc:
            raise BadInputJson(path="account_id", message=str(exc)) from None
        return json_response({**token_view(doc), "token": token}, status=201)

    async def list_tokens(request: web.Request) -> web.StreamResponse:
        docs = await request.app[GATE].tokens.list()
        return json_response({"tokens": [token_view(doc) for doc in docs]})

    async def get_token(request: web.Request) -> web.StreamResponse:
        token_id = path_uuid(request, "token_id")
        doc = await request.app[GATE].tokens.get(token_id)
        if doc is None:
            raise TokenNotFound(token_id=token_id)
        return json_response(token_view(doc))

    async def delete_token(request: web.Request) -> web.StreamResponse:
        token_id = path_uuid(request, "token_id")
        if not await request.app[GATE].tokens.revoke(token_id):
            raise TokenNotFound(token_id=token_id)
        return web.Response(status=204)

    async def list_audit(request: web.Request) -> web.StreamResponse:
        query = parse_query(request, AuditListQuery)
        docs = await request.app[GATE].audit.find(
            AuditQuery(
                account_id=query.account_id,
                token_id=query.token_id,
                since=query.time__gte,
                until=query.time__lt,
                skip=query.skip,
                limit=query.page_size,
            )
        )
        return json_response({"entries": [audit_view(doc) for doc in docs]})

    api.add(
        "GET",
        f"/{version}/auth/me",
        who_am_i,
        summary="The credential this request was made with: role, account, token",
        responses={200: Response("Who am I", Identity)},
        access=Access.SIGNED_IN,
        operation_id=f"getAuthMeV{version}",
    )
    api.add(
        "POST",
        f"/{version}/tokens",
        create_token,
        summary="Make an API token (admin); the token is shown in this answer only",
        body=TokenCreate,
        responses={201: Response("The new token", TokenCreated)},
        access=Access.ADMIN,
        operation_id=f"createTokenV{version}",
    )
    api.add(
        "GET",
        f"/{version}/tokens",
        list_tokens,
        summary="List the API tokens (admin; never the tokens themselves)",
        responses={200: Response("Tokens", TokenList)},
        access=Access.ADMIN,
        operation_id=f"getTokensV{version}",
    )
    api.add(
        "GET",
        f"/{version}/tokens/{{token_id}}",
        get_token,
        summary="One API token (admin)",
        responses={200: Response("The token", TokenView)},
        errors=(TokenNotFound,),
        access=Access.ADMIN,
        operation_id=f"getTokenV{version}",
    )
    api.add(
        "DELETE",
        f"/{version}/tokens/{{token_id}}",
        delete_token,
        summary="Revoke an API token (admin): it stops working at once on this gateway, "
        "within 5 s on the others",
        responses={204: Response("Revoked")},
        errors=(TokenNotFound,),
        access=Access.ADMIN,
        operation_id=f"deleteTokenV{version}",
    )
    api.add(
        "GET",
        f"/{version}/audit",
        list_audit,
        summary="The audit trail (admin): who changed what, newest first",
        query=AuditListQuery,
        responses={200: Response("Audit rows", AuditList)},
        access=Access.ADMIN,
        operation_id=f"getAuditV{version}",
    )


for _version in (1, 2):
    add_access_routes(_version)
