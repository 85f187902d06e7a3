"""Who calls an agent's API and what they may do: identities, roles, permissions.

Why: an approval anyone can give and a per-user limit anyone can dodge are not governance. Every
call to ``/v1/`` and ``/agent/`` is made by an :class:`Identity`, established by an
:class:`Authenticator` at the HTTP edge (:mod:`pilothouse.runtime.edge`) and checked against a
:class:`Permission` by the routes (:mod:`pilothouse.runtime.api`,
:mod:`pilothouse.runtime.api_escalations`). Two authenticators exist:

* :class:`pilothouse.runtime.tokens.TokenFile`: a file of ``token identity roles`` lines, for
  running without Kubernetes; roles map to permissions through :data:`ROLE_PERMISSIONS`.
* :class:`pilothouse.runtime.kubeauth.KubernetesAuth`: ServiceAccount and user tokens checked
  with a TokenReview, each permission checked with a SubjectAccessReview on a subresource of
  the AgentDeployment (:data:`KUBERNETES_ATTRIBUTES`), so plain RBAC grants it.

Without either, :data:`NO_AUTHENTICATION` lets everyone do everything, as the identity
``anonymous``; the runtime says so loudly at start and in ``/readyz``.

The roles:

========== =========================================================================
``submit``  send requests; read the results and decisions of its own requests
``read``    read every result and the decision history of the agent
``approve`` list, approve and deny escalations (never of a request it submitted)
``delegate`` send requests on behalf of end users (the body's ``user``)
``admin``   all of the above
========== =========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Protocol

from pilothouse.runtime import errors

__all__ = [
    "ANONYMOUS",
    "KUBERNETES_ATTRIBUTES",
    "NO_AUTHENTICATION",
    "ROLE_PERMISSIONS",
    "AuthenticationUnavailable",
    "Authenticator",
    "Identity",
    "NoAuthentication",
    "Permission",
    "Role",
    "bearer_token",
    "parse_roles",
]


class Role(StrEnum):
    """A named set of permissions a token file grants (see the module docstring)."""

    SUBMIT = "submit"
    READ = "read"
    APPROVE = "approve"
    DELEGATE = "delegate"
    ADMIN = "admin"


class Permission(StrEnum):
    """What a call needs."""

    SUBMIT = "submit"
    """Send a request (``POST /v1/requests``, ``POST /agent/process``)."""
    READ = "read"
    """Read any request's result and decisions (without it: only one's own)."""
    APPROVE = "approve"
    """List, approve and deny escalations."""
    DELEGATE = "delegate"
    """Name an end user (``user``) on a request."""


ROLE_PERMISSIONS: Final[dict[Role, frozenset[Permission]]] = {
    Role.SUBMIT: frozenset({Permission.SUBMIT}),
    Role.READ: frozenset({Permission.READ}),
    Role.APPROVE: frozenset({Permission.APPROVE}),
    Role.DELEGATE: frozenset({Permission.SUBMIT, Permission.DELEGATE}),
    Role.ADMIN: frozenset(Permission),
}

KUBERNETES_ATTRIBUTES: Final[dict[Permission, tuple[str, str]]] = {
    Permission.SUBMIT: ("create", "agentdeployments/requests"),
    Permission.READ: ("get", "agentdeployments/history"),
    Permission.APPROVE: ("update", "agentdeployments/approvals"),
    Permission.DELEGATE: ("impersonate", "agentdeployments/endusers"),
}
"""The SubjectAccessReview (verb, resource/subresource) in ``pilothouse.dev`` that grants each
permission on one AgentDeployment (the review names the agent and its namespace)."""


def parse_roles(text: str, *, where: str) -> frozenset[Role]:
    """Comma-separated role names; a usage error naming ``where`` and the unknown name."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise errors.ConfigError(f"{where}: no roles (use {', '.join(Role)})")
    out = set()
    for n in names:
        try:
            out.add(Role(n))
        except ValueError:
            raise errors.ConfigError(
                f"{where}: unknown role {n!r} (use {', '.join(Role)})"
            ) from None
    return frozenset(out)


@dataclass(frozen=True)
class Identity:
    """An authenticated caller: ``name`` is what the audit trail records."""

    name: str
    """``alice`` (token file), ``system:serviceaccount:team:chat`` (Kubernetes)."""
    roles: frozenset[Role] = frozenset()
    """Roles from a token file (empty for Kubernetes identities: RBAC decides per call)."""
    groups: tuple[str, ...] = ()
    """Kubernetes groups (sent with each SubjectAccessReview)."""
    uid: str = ""
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False, compare=False)

    def granted(self, permission: Permission) -> bool:
        """Whether this identity's roles grant ``permission`` (token-file identities)."""
        return any(permission in ROLE_PERMISSIONS[r] for r in self.roles)


ANONYMOUS: Final = Identity("anonymous", frozenset({Role.ADMIN}))
"""Every caller when no authentication is configured."""


class AuthenticationUnavailable(errors.DependencyUnavailable):
    """Credentials could not be checked now (the Kubernetes API is away): 503, retry."""


class Authenticator(Protocol):
    """Establishes who calls and decides what they may do."""

    mode: str
    """``tokens``, ``kubernetes`` or ``none`` (shown in ``/readyz`` and the start log)."""

    async def authenticate(self, authorization: bytes | str | None) -> Identity | None:
        """The identity of an ``Authorization`` header, or None when it proves none (401)."""
        ...

    async def allowed(self, identity: Identity, permission: Permission) -> bool:
        """Whether ``identity`` holds ``permission`` on this agent."""
        ...


class NoAuthentication:
    """Every caller is :data:`ANONYMOUS` with every permission."""

    mode = "none"

    async def authenticate(self, authorization: bytes | str | None) -> Identity | None:
        return ANONYMOUS

    async def allowed(self, identity: Identity, permission: Permission) -> bool:
        return True


NO_AUTHENTICATION: Final = NoAuthentication()


def bearer_token(authorization: bytes | str | None) -> str | None:
    """The token of a ``Bearer <token>`` header value, or None."""
    if not authorization:
        return None
    value = authorization.decode("latin-1") if isinstance(authorization, bytes) else authorization
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
