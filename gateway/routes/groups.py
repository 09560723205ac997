"""Group and linker routes (v1 and v2 share them)."""

from __future__ import annotations

from aiohttp import web

from gateway.api import Api, Response
from gateway.keys import GROUPS
from gateway.parsing import json_response, parse_body, parse_query, path_uuid
from gateway.responses import GroupCountResponse, GroupCreated, GroupList, GroupView
from shared.core.errors import GroupExists, GroupNotFound, StreamNotFound
from shared.domain.filters import AccountQuery
from shared.domain.models import GroupCreate, GroupPatch, LinkerRequest
from shared.services.groups import GroupFilters, GroupListQuery, group_view

api = Api(tag="groups")


def add_group_routes(version: int) -> None:
    prefix = f"/{version}/groups"

    async def create_group(request: web.Request) -> web.StreamResponse:
        body = await parse_body(request, GroupCreate)
        doc = await request.app[GROUPS].create(body.account_id, body.group_name, body.description)
        return json_response({"group_id": doc["_id"], "group_name": doc["group_name"]}, 201)

    async def list_groups(request: web.Request) -> web.StreamResponse:
        query = parse_query(request, GroupListQuery)
        docs = await request.app[GROUPS].page(query)
        return json_response([group_view(doc) for doc in docs])

    async def count_groups(request: web.Request) -> web.StreamResponse:
        filters = parse_query(request, GroupFilters)
        return json_response({"groups_count": await request.app[GROUPS].count(filters)})

    async def get_group(request: web.Request) -> web.StreamResponse:
        group_id = path_uuid(request, "group_id")
        query = parse_query(request, AccountQuery)
        return json_response(group_view(await request.app[GROUPS].get(group_id, query.account_id)))

    async def patch_group(request: web.Request) -> web.StreamResponse:
        group_id = path_uuid(request, "group_id")
        query = parse_query(request, AccountQuery)
        body = await parse_body(request, GroupPatch)
        await request.app[GROUPS].patch(group_id, query.account_id, body.description)
        return web.Response(status=204)

    async def delete_group(request: web.Request) -> web.StreamResponse:
        group_id = path_uuid(request, "group_id")
        query = parse_query(request, AccountQuery)
        await request.app[GROUPS].delete(group_id, query.account_id)
        return web.Response(status=204)

    async def link(request: web.Request) -> web.StreamResponse:
        query = parse_query(request, AccountQuery)
        body = await parse_body(request, LinkerRequest)
        await request.app[GROUPS].link(
            query.account_id, body.group_id, body.action, body.stream_ids
        )
        return web.Response(status=204)

    one = f"{prefix}/{{group_id}}"
    api.add(
        "POST",
        prefix,
        create_group,
        summary="Create group",
        body=GroupCreate,
        responses={201: Response("Group created", GroupCreated)},
        errors=(GroupExists,),
    )
    api.add(
        "GET",
        prefix,
        list_groups,
        summary="Get groups (a bare array, oldest first)",
        query=GroupListQuery,
        responses={200: Response("Groups", GroupList)},
    )
    api.add(
        "GET",
        f"{prefix}/count",
        count_groups,
        summary="Count groups",
        query=GroupFilters,
        responses={200: Response("Count", GroupCountResponse)},
    )
    api.add(
        "GET",
        one,
        get_group,
        summary="Get the group by ID",
        query=AccountQuery,
        responses={200: Response("Group", GroupView)},
        errors=(GroupNotFound,),
    )
    api.add(
        "PATCH",
        one,
        patch_group,
        summary="Update group description",
        query=AccountQuery,
        body=GroupPatch,
        responses={204: Response("Group updated")},
        errors=(GroupNotFound,),
    )
    api.add(
        "DELETE",
        one,
        delete_group,
        summary="Remove the group (its streams stay, unlinked)",
        query=AccountQuery,
        responses={204: Response("Group removed")},
        errors=(GroupNotFound,),
    )
    api.add(
        "PATCH",
        f"/{version}/linker",
        link,
        summary="Attach streams to, or detach them from, a group (idempotent)",
        query=AccountQuery,
        body=LinkerRequest,
        responses={204: Response("Done")},
        errors=(GroupNotFound, StreamNotFound),
    )


for _version in (1, 2):
    add_group_routes(_version)
