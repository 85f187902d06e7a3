"""Kubernetes-native authentication and authorisation of the agent's API callers.

Why: in a cluster, who may send requests to an agent or approve its escalations should be
granted the way everything else is: with a Role and a RoleBinding. So a caller presents a
ServiceAccount (or user) token; :class:`KubernetesAuth` asks the API server who that is (a
TokenReview) and, for each call, whether that identity may do it (a SubjectAccessReview on a
subresource of the agent's AgentDeployment, :data:`identities.KUBERNETES_ATTRIBUTES`), as
kube-rbac-proxy does. Answers are cached briefly (:class:`TtlCache`): granted ones for
``cacheSeconds``, refusals for ``deniedCacheSeconds``, so a new RoleBinding takes effect
quickly and a busy agent makes a review per caller and minute, not per request.

The reviews are made with the agent's own ServiceAccount token (re-read from its file, which
the kubelet rotates); the operator grants that ServiceAccount ``create`` on
``tokenreviews`` and ``subjectaccessreviews`` and nothing else. When the API server cannot be
asked, the caller gets 503 (:class:`identities.AuthenticationUnavailable`), never access.
This is the runtime's only client of the Kubernetes API; used by
:mod:`pilothouse.runtime.serving`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

import httpx

from pilothouse.runtime import config, errors, identities

__all__ = ["API_GROUP", "KubernetesAuth", "TtlCache", "review_attributes"]

log = logging.getLogger(__name__)

API_GROUP: Final = "pilothouse.dev"
RESOURCE: Final = "agentdeployments"
MAX_CACHED: Final = 10_000
"""Most tokens (and, separately, permission answers) remembered."""
TOKEN_REREAD_SECONDS: Final = 60.0
"""How often the agent's own (rotated) ServiceAccount token is re-read."""
REVIEW_TIMEOUT_SECONDS: Final = 5.0

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Values that expire; the clock is passed in. Bounded: the oldest entry goes first."""

    def __init__(self, *, clock: Callable[[], float], max_entries: int = MAX_CACHED) -> None:
        self._clock = clock
        self._max = max_entries
        self._data: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        found = self._data.get(key)
        if found is None:
            return None
        if found[0] <= self._clock():
            del self._data[key]
            return None
        return found[1]

    def put(self, key: K, value: V, ttl: float) -> None:
        if ttl <= 0:
            return
        self._data.pop(key, None)
        while len(self._data) >= self._max:
            del self._data[next(iter(self._data))]
        self._data[key] = (self._clock() + ttl, value)


def review_attributes(
    permission: identities.Permission, *, namespace: str, agent: str
) -> dict[str, str]:
    """The ``resourceAttributes`` of the SubjectAccessReview that decides ``permission``."""
    verb, resource = identities.KUBERNETES_ATTRIBUTES[permission]
    _, _, subresource = resource.partition("/")
    return {
        "namespace": namespace,
        "verb": verb,
        "group": API_GROUP,
        "resource": RESOURCE,
        "subresource": subresource,
        "name": agent,
    }


def _api_server(cfg: config.KubernetesAuthConfig, env: Mapping[str, str]) -> str:
    if cfg.api_server:
        return cfg.api_server.rstrip("/")
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise errors.ConfigError(
            "server.kubernetesAuth: no apiServer given and KUBERNETES_SERVICE_HOST is not set "
            "(not running in a pod?)"
        )
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}:{port}"


class KubernetesAuth:
    """TokenReview + SubjectAccessReview, cached (see the module docstring)."""

    mode = "kubernetes"

    def __init__(
        self,
        cfg: config.KubernetesAuthConfig,
        *,
        namespace: str,
        agent: str,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        env = os.environ if environ is None else environ
        self.cfg = cfg
        self.namespace = namespace
        self.agent = agent
        self.server = _api_server(cfg, env)
        self._clock = clock
        self._token_path = Path(cfg.token_file)
        self._own_token = ""
        self._own_token_read = float("-inf")
        self._read_own_token()  # fail at start, naming the file, when it is missing
        verify: Any = True
        if cfg.ca_file and self.server.startswith("https:"):
            if not Path(cfg.ca_file).is_file():
                raise errors.ConfigError(f"server.kubernetesAuth.caFile: no file {cfg.ca_file}")
            verify = cfg.ca_file
        self._client = httpx.AsyncClient(
            base_url=self.server, verify=verify, timeout=REVIEW_TIMEOUT_SECONDS
        )
        self._identities: TtlCache[bytes, identities.Identity | bool] = TtlCache(clock=clock)
        self._answers: TtlCache[tuple[Any, ...], bool] = TtlCache(clock=clock)
        self.reviews = {"tokenreviews": 0, "subjectaccessreviews": 0}
        """Reviews made (not answered from the cache), for tests and debugging."""

    def _read_own_token(self) -> str:
        now = self._clock()
        if now - self._own_token_read < TOKEN_REREAD_SECONDS and self._own_token:
            return self._own_token
        try:
            token = self._token_path.read_text(encoding="utf-8").strip()
        except OSError as e:
            if self._own_token:
                log.warning("cannot re-read the ServiceAccount token, keeping the last: %s", e)
                return self._own_token
            raise errors.ConfigError(
                f"server.kubernetesAuth.tokenFile: cannot read {self._token_path}: {e.strerror}"
            ) from e
        if not token:
            where = "server.kubernetesAuth.tokenFile"
            raise errors.ConfigError(f"{where}: {self._token_path} is empty")
        self._own_token, self._own_token_read = token, now
        return token

    async def _review(self, kind: str, path: str, spec: dict[str, Any]) -> dict[str, Any]:
        group = path.split("/")[2]
        body = {"apiVersion": f"{group}/v1", "kind": kind, "spec": spec}
        try:
            headers = {"Authorization": f"Bearer {self._read_own_token()}"}
            r = await self._client.post(path, json=body, headers=headers)
        except (httpx.HTTPError, errors.ConfigError) as e:
            raise identities.AuthenticationUnavailable(
                f"the Kubernetes API did not answer a {kind}: {e}"
            ) from e
        self.reviews[path.rsplit("/", 1)[1]] += 1
        if r.status_code != 201 and r.status_code != 200:
            message = r.text[:300]
            log.error("the Kubernetes API refused a %s (%d): %s", kind, r.status_code, message)
            raise identities.AuthenticationUnavailable(
                f"the Kubernetes API refused a {kind} ({r.status_code}); the agent's "
                "ServiceAccount needs create on tokenreviews and subjectaccessreviews"
            )
        status: dict[str, Any] = r.json().get("status") or {}
        return status

    async def authenticate(self, authorization: bytes | str | None) -> identities.Identity | None:
        token = identities.bearer_token(authorization)
        if token is None:
            return None
        key = hashlib.sha256(token.encode("utf-8", "replace")).digest()
        cached = self._identities.get(key)
        if cached is not None:
            return cached if isinstance(cached, identities.Identity) else None
        spec: dict[str, Any] = {"token": token}
        if self.cfg.audiences:
            spec["audiences"] = list(self.cfg.audiences)
        status = await self._review(
            "TokenReview", "/apis/authentication.k8s.io/v1/tokenreviews", spec
        )
        user = status.get("user") or {}
        if not status.get("authenticated") or not user.get("username"):
            self._identities.put(key, False, self.cfg.denied_cache_seconds)
            return None
        identity = identities.Identity(
            name=str(user["username"]),
            groups=tuple(str(g) for g in user.get("groups") or ()),
            uid=str(user.get("uid") or ""),
            extra={str(k): tuple(str(x) for x in v) for k, v in (user.get("extra") or {}).items()},
        )
        self._identities.put(key, identity, self.cfg.cache_seconds)
        return identity

    async def allowed(
        self, identity: identities.Identity, permission: identities.Permission
    ) -> bool:
        key = (identity.name, identity.uid, identity.groups, permission)
        cached = self._answers.get(key)
        if cached is not None:
            return cached
        attributes = review_attributes(permission, namespace=self.namespace, agent=self.agent)
        spec: dict[str, Any] = {
            "user": identity.name,
            "groups": list(identity.groups),
            "resourceAttributes": attributes,
        }
        if identity.uid:
            spec["uid"] = identity.uid
        if identity.extra:
            spec["extra"] = {k: list(v) for k, v in identity.extra.items()}
        status = await self._review(
            "SubjectAccessReview", "/apis/authorization.k8s.io/v1/subjectaccessreviews", spec
        )
        allowed = bool(status.get("allowed")) and not status.get("denied")
        ttl = self.cfg.cache_seconds if allowed else self.cfg.denied_cache_seconds
        self._answers.put(key, allowed, ttl)
        return allowed

    async def aclose(self) -> None:
        await self._client.aclose()
