"""``luna-streams tokens``: make, list and revoke API tokens from the command line.

Talks to MongoDB directly (``LUNA_STREAMS_MONGO_URI``, else the embedded server of a running
``luna-streams all`` on ``LUNA_STREAMS_EMBEDDED_PORT``), so the first admin token can be made
before any token exists. ``create`` prints the token as its last line, once: only its hash is
stored.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys

from shared.core.errors import BackendUnavailable, InvalidValue
from shared.core.settings import Settings, load_settings, mask_uri
from shared.domain.models.common import UUID_PATTERN
from shared.domain.roles import Role
from shared.services.access.credentials import TokenStore, token_view
from shared.store.embedded_mongo import embedded_uri
from shared.store.mongo import Database, open_database


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="luna-streams tokens",
        description="Make, list and revoke the API tokens of LUNA_STREAMS_AUTH=on.",
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = sub.add_parser("create", help="make a token; it is printed once, as the last line")
    create.add_argument("--role", required=True, choices=[role.value for role in Role])
    create.add_argument(
        "--account", help="the one account a viewer or operator token reaches (a uuid)"
    )
    create.add_argument("--name", help="who or what uses the token")
    sub.add_parser("list", help="list the tokens (never the tokens themselves)")
    revoke = sub.add_parser("revoke", help="revoke a token by its token_id")
    revoke.add_argument("token_id")
    return parser


def _fail(message: str) -> None:
    print(f"luna-streams tokens: {message}", file=sys.stderr)
    raise SystemExit(2)


async def _run(args: argparse.Namespace, database: Database) -> int:
    store = TokenStore(database)
    if args.action == "create":
        try:
            doc, token = await store.create(Role(args.role), args.account, args.name)
        except InvalidValue as exc:
            _fail(str(exc))
        view = token_view(doc)
        for key in ("token_id", "role", "account_id", "name", "create_time"):
            print(f"{key}: {view[key] if view[key] is not None else '-'}")
        print("token (shown once, keep it secret):")
        print(token)
        return 0
    if args.action == "list":
        for doc in await store.list():
            view = token_view(doc)
            print(
                f"{view['token_id']}  {view['role']:<8}  {view['account_id'] or '*':<36}  "
                f"{view['create_time']}  {view['name'] or ''}"
            )
        return 0
    if not await store.revoke(args.token_id):
        _fail(f"no token with id {args.token_id}")
    print(f"revoked {args.token_id}")
    return 0


def main(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    if getattr(args, "account", None) is not None and not re.fullmatch(UUID_PATTERN, args.account):
        _fail(f"--account {args.account!r} is not a lowercase uuid")
    settings = load_settings(Settings)
    uri = settings.mongo_uri or embedded_uri(settings.embedded_port)

    async def run() -> int:
        try:
            database = await open_database(uri, settings.db_name, timeout_ms=3000)
        except BackendUnavailable:
            _fail(
                f"MongoDB is not reachable at {mask_uri(uri)}: start the stack "
                "(`luna-streams all`) or set LUNA_STREAMS_MONGO_URI"
            )
            raise
        try:
            return await _run(args, database)
        finally:
            await database.close()

    raise SystemExit(asyncio.run(run()))
