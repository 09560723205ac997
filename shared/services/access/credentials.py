"""API tokens: made random, shown once, stored only as a hash.

A token is ``lst_`` and 43 URL-safe characters (32 random bytes). What is stored (collection
``api_tokens``) is its SHA-256, its role, account, name and creation time: a token has 256
bits of entropy, so a fast hash is enough (nobody can guess one to match a stolen hash), and a
request is checked by one hash and one lookup by index (or none, from the cache).

:class:`TokenStore` resolves what a client sends to a :class:`~shared.domain.roles.Principal`.
A gateway keeps a token it has resolved for :data:`CACHE_SECONDS`: a token revoked on another
gateway stops working here within that time, on this one at once.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections import OrderedDict
from typing import Final

from pymongo.errors import DuplicateKeyError

from shared.core import clock
from shared.core.errors import InvalidValue
from shared.core.types import Doc
from shared.domain.documents import format_time
from shared.domain.roles import SCOPABLE, VIA_TOKEN, Principal, Role
from shared.store.mongo import Database

PREFIX: Final = "lst_"
#: how long a gateway trusts a token it resolved, in seconds
CACHE_SECONDS: Final = 5.0
#: tokens a gateway keeps resolved at most
CACHE_SIZE: Final = 10_000
#: a longer string is not looked up (it is no token of ours)
MAX_TOKEN_LENGTH: Final = 256
#: what a token document shows (never its hash)
PUBLIC_FIELDS: Final = {"_id": 1, "role": 1, "account_id": 1, "name": 1, "create_time": 1}


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_scope(role: Role, account_id: str | None) -> None:
    """Only viewer and operator tokens can be scoped to one account."""
    if account_id is not None and role not in SCOPABLE:
        raise InvalidValue(
            f"a {role.value} token reaches every account: only viewer and operator tokens "
            "take an account"
        )


def principal_of(doc: Doc) -> Principal:
    return Principal(
        role=Role(doc["role"]),
        via=VIA_TOKEN,
        account_id=doc.get("account_id"),
        token_id=doc["_id"],
        name=doc.get("name"),
    )


def token_view(doc: Doc) -> Doc:
    """A token document as the API and the CLI show it (no hash)."""
    return {
        "token_id": doc["_id"],
        "role": doc["role"],
        "account_id": doc.get("account_id"),
        "name": doc.get("name"),
        "create_time": format_time(doc["create_time"]),
    }


class TokenStore:
    """Create, list, revoke and resolve API tokens."""

    def __init__(self, database: Database, cache_seconds: float = CACHE_SECONDS) -> None:
        self.database = database
        self.cache_seconds = cache_seconds
        self._cache: OrderedDict[str, tuple[float, Principal]] = OrderedDict()

    async def create(
        self, role: Role, account_id: str | None = None, name: str | None = None
    ) -> tuple[Doc, str]:
        """A new token: its document and the token itself (shown once, never stored)."""
        check_scope(role, account_id)
        while True:
            token = new_token()
            doc: Doc = {
                "_id": str(uuid.uuid4()),
                "hash": token_hash(token),
                "role": role.value,
                "account_id": account_id,
                "name": name,
                "create_time": clock.now_utc(),
            }
            try:
                await self.database.api_tokens.insert_one(doc)
            except DuplicateKeyError:  # 2**-256: a new token, not an error
                continue
            return doc, token

    async def list(self) -> list[Doc]:
        cursor = self.database.api_tokens.find({}, PUBLIC_FIELDS).sort("create_time", 1)
        return await cursor.to_list()

    async def get(self, token_id: str) -> Doc | None:
        return await self.database.api_tokens.find_one({"_id": token_id}, PUBLIC_FIELDS)

    async def revoke(self, token_id: str) -> bool:
        """Delete the token; False when there was none with this id."""
        result = await self.database.api_tokens.delete_one({"_id": token_id})
        for key, (_, principal) in list(self._cache.items()):
            if principal.token_id == token_id:
                del self._cache[key]
        return result.deleted_count == 1

    async def resolve(self, token: str) -> Principal | None:
        """Who ``token`` is; None when it is no valid token."""
        if not token.startswith(PREFIX) or len(token) > MAX_TOKEN_LENGTH:
            return None
        key = token_hash(token)
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        doc = await self.database.api_tokens.find_one({"hash": key})
        if doc is None:
            self._cache.pop(key, None)
            return None
        principal = principal_of(doc)
        self._cache[key] = (now + self.cache_seconds, principal)
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return principal
