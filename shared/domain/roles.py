"""Roles, what each one is granted, and the principal a request acts as.

Every operation of the API requires one :class:`Access`; a role holds a set of them
(:data:`GRANTS`). An account-scoped principal (a ``viewer`` or ``operator`` token made for one
account) reaches only the operations that take an ``account_id``, and only with its own
account (:func:`scope_refusal`); everything else it may only do if the operation is
:attr:`Access.PUBLIC` or :attr:`Access.SIGNED_IN`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"
    AGENT = "agent"


class Access(StrEnum):
    """What an operation needs."""

    #: anyone, without a credential: the console's files, the docs, /version, /healthcheck
    PUBLIC = "public"
    #: any valid credential (who am I)
    SIGNED_IN = "signed_in"
    #: read streams, groups, logs, events, metrics
    READ = "read"
    #: create, change and delete streams and groups
    WRITE = "write"
    #: see the pending streams in queue order (GET .../processing/queue)
    QUEUE = "queue"
    #: claim streams and send feedback
    PROCESS = "process"
    #: a stream's previews, relayed from its agent
    PREVIEW = "preview"
    #: every account, the effective settings, API tokens and the audit trail
    ADMIN = "admin"


GRANTS: Final[dict[Role, frozenset[Access]]] = {
    Role.VIEWER: frozenset({Access.READ, Access.QUEUE, Access.PREVIEW}),
    Role.OPERATOR: frozenset({Access.READ, Access.WRITE, Access.QUEUE, Access.PREVIEW}),
    Role.AGENT: frozenset({Access.QUEUE, Access.PROCESS, Access.PREVIEW}),
    Role.ADMIN: frozenset(Access),
}

#: the roles a token may be scoped to one account for
SCOPABLE: Final = frozenset({Role.VIEWER, Role.OPERATOR})

#: how a principal proved itself
VIA_TOKEN: Final = "token"
VIA_NETWORK: Final = "agent network"
VIA_OPEN: Final = "authentication off"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as."""

    role: Role
    via: str
    #: the one account this principal may reach (None: every account)
    account_id: str | None = None
    token_id: str | None = None
    name: str | None = None

    def may(self, access: Access) -> bool:
        return access in (Access.PUBLIC, Access.SIGNED_IN) or access in GRANTS[self.role]


#: with authentication off, every request acts as an unscoped admin (the reference service)
OPEN: Final = Principal(role=Role.ADMIN, via=VIA_OPEN)


def refusal(principal: Principal, access: Access, takes_account: bool) -> str | None:
    """Why ``principal`` may not call an operation that needs ``access``; None: it may."""
    if not principal.may(access):
        return f"the role {principal.role.value} may not do this ({access.value} access needed)"
    if (
        principal.account_id is not None
        and not takes_account
        and access not in (Access.PUBLIC, Access.SIGNED_IN)
    ):
        return "a token of one account may not use an operation without an account scope"
    return None


def scope_refusal(principal: Principal, account_id: str | None) -> str | None:
    """Why ``principal`` may not name ``account_id``; None: it may."""
    if principal.account_id is None or account_id is None or account_id == principal.account_id:
        return None
    return "this token is for another account"
