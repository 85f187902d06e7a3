"""The operator's only client of the Kubernetes API.

Everything the reconciler reads or writes goes through :class:`Kube`: server-side apply of the
children with one field manager (``pilothouse-operator``, forced, so the operator wins over
hand edits of fields it owns), reads of the custom resources, Secrets and ConfigMaps, status
merge patches, the Deployment's replica count, deletes guarded by a uid precondition, and
Events. The ``kubernetes`` client is synchronous: call these methods from Kopf's sync handlers
(which Kopf runs in its thread pool) or through an executor; the client is thread-safe.

Errors are translated at this edge (:mod:`pilothouse.operator.errors`): unreachable server,
timeouts, 409, 429 and 5xx raise :class:`KubeUnavailable` (retry later); any other refusal
raises :class:`KubeRejected` with the server's message; a missing object is ``None``.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import kubernetes
import urllib3
from kubernetes.client import exceptions as kube_exceptions

from pilothouse.operator import api, conditions, errors, labels

__all__ = ["Kube", "ObjectRef"]

log = logging.getLogger(__name__)

Body = dict[str, Any]

_PLURALS: Final = {
    "ServiceAccount": "serviceaccounts",
    "ConfigMap": "configmaps",
    "Secret": "secrets",
    "Service": "services",
    "Event": "events",
    "Deployment": "deployments",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "NetworkPolicy": "networkpolicies",
    api.AGENT_KIND: api.AGENT_PLURAL,
    api.POLICY_KIND: api.POLICY_PLURAL,
}
_APPLY: Final = "application/apply-patch+yaml"
_CLUSTER_ROLE_BINDINGS: Final = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"
_MERGE: Final = "application/merge-patch+json"
_METADATA_ONLY: Final = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
_RETRYABLE: Final = frozenset({409, 429, 500, 502, 503, 504})
EVENT_MESSAGE_LIMIT: Final = 1024


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """An object Events are about."""

    api_version: str
    kind: str
    name: str
    namespace: str
    uid: str = ""


def _path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{base}/namespaces/{namespace}/{_PLURALS[kind]}"
    return path if name is None else f"{path}/{name}"


class Kube:
    """A thread-safe, synchronous client for exactly what the operator does."""

    def __init__(
        self,
        client: kubernetes.client.ApiClient,
        *,
        timeout: float = 30.0,
        instance: str = "pilothouse-operator",
    ) -> None:
        self._client = client
        self._timeout = timeout
        self._instance = instance

    @classmethod
    def from_environment(
        cls, *, kubeconfig: str | None = None, timeout: float = 30.0, instance: str = ""
    ) -> Kube:
        """In-cluster credentials when running in a pod, else the kubeconfig (``$KUBECONFIG``)."""
        cfg = kubernetes.client.Configuration()
        try:
            if kubeconfig is not None:
                raise kubernetes.config.ConfigException("a kubeconfig was given")
            kubernetes.config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        except kubernetes.config.ConfigException:
            try:
                kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=kubeconfig, client_configuration=cfg
                )
            except (kubernetes.config.ConfigException, OSError) as e:
                raise errors.KubeUnavailable(f"no Kubernetes credentials: {e}") from e
        cfg.connection_pool_maxsize = 32
        return cls(
            kubernetes.client.ApiClient(cfg),
            timeout=timeout,
            instance=instance or "pilothouse-operator",
        )

    def close(self) -> None:
        """Release the connection pool."""
        self._client.close()  # type: ignore[no-untyped-call]

    # ------------------------------------------------------------------------ the transport

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str | None = None,
        missing_ok: bool = False,
        accept: str = "application/json",
    ) -> Body | None:
        headers = {"Accept": accept}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            request = self._client.param_serialize(
                method=method,
                resource_path=path,
                query_params=list(query),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self._client.call_api(*request, _request_timeout=self._timeout)
            data: bytes | None = response.read()  # type: ignore[no-untyped-call]
        except (kube_exceptions.ApiException, urllib3.exceptions.HTTPError, OSError) as e:
            raise errors.KubeUnavailable(f"{method} {path}: {e}") from e
        status = int(response.status)
        if status == 404 and missing_ok:
            return None
        if not 200 <= status < 300:
            message = _server_message(data) or str(response.reason)
            if status in _RETRYABLE:
                raise errors.KubeUnavailable(f"{method} {path}: {status} {message}")
            raise errors.KubeRejected(status, f"{method} {path}: {message}")
        if not data:
            return {}
        decoded: Body = json.loads(data)
        return decoded

    def _get(self, path: str) -> Body | None:
        return self._request("GET", path, missing_ok=True)

    def _list(self, path: str, selector: str | None = None) -> list[Body]:
        query = [("labelSelector", selector)] if selector else []
        found = self._request("GET", path, query=query) or {}
        items: list[Body] = found.get("items") or []
        return items

    # ------------------------------------------------------------------- custom resources

    def get_crd(self, name: str) -> Body | None:
        """A CustomResourceDefinition, or None (read by listing: RBAC grants list, not get)."""
        found = self._request(
            "GET",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            query=[("fieldSelector", f"metadata.name={name}")],
        )
        items: list[Body] = (found or {}).get("items") or []
        return items[0] if items else None

    def get_agent(self, namespace: str, name: str) -> Body | None:
        """An AgentDeployment, or None."""
        return self._get(_path(api.API_VERSION, api.AGENT_KIND, namespace, name))

    def list_agents(self, namespace: str) -> list[Body]:
        """Every AgentDeployment of a namespace."""
        return self._list(_path(api.API_VERSION, api.AGENT_KIND, namespace))

    def get_policy(self, namespace: str, name: str) -> Body | None:
        """An AgentPolicy, or None."""
        return self._get(_path(api.API_VERSION, api.POLICY_KIND, namespace, name))

    def list_policies(self, namespace: str) -> list[Body]:
        """Every AgentPolicy of a namespace."""
        return self._list(_path(api.API_VERSION, api.POLICY_KIND, namespace))

    def patch_status(self, kind: str, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        """Merge-patch the ``status`` subresource of an AgentDeployment or AgentPolicy."""
        path = _path(api.API_VERSION, kind, namespace, name) + "/status"
        self._request(
            "PATCH",
            path,
            query=[("fieldManager", labels.FIELD_MANAGER)],
            body={"status": dict(patch)},
            content_type=_MERGE,
            missing_ok=True,  # deleted meanwhile: nothing to report on
        )

    # ---------------------------------------------------------------------------- children

    def apply(self, manifest: Mapping[str, Any]) -> Body:
        """Server-side apply (forced, field manager ``pilothouse-operator``); the live object."""
        meta = manifest["metadata"]
        path = _path(manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"])
        query = [("fieldManager", labels.FIELD_MANAGER), ("force", "true")]
        live = self._request("PATCH", path, query=query, body=dict(manifest), content_type=_APPLY)
        return live or {}

    def apply_cluster_role_binding(self, manifest: Mapping[str, Any]) -> Body:
        """Server-side apply of a ClusterRoleBinding (an agent's review binding)."""
        path = f"{_CLUSTER_ROLE_BINDINGS}/{manifest['metadata']['name']}"
        query = [("fieldManager", labels.FIELD_MANAGER), ("force", "true")]
        live = self._request("PATCH", path, query=query, body=dict(manifest), content_type=_APPLY)
        return live or {}

    def delete_cluster_role_binding(self, name: str) -> bool:
        """Delete a ClusterRoleBinding; False if it was gone."""
        found = self._request("DELETE", f"{_CLUSTER_ROLE_BINDINGS}/{name}", missing_ok=True)
        return found is not None

    def list_children(
        self, api_version: str, kind: str, namespace: str, selector: str
    ) -> list[Body]:
        """Objects of a kind in a namespace matching a label selector."""
        return self._list(_path(api_version, kind, namespace), selector)

    def delete(self, api_version: str, kind: str, namespace: str, name: str, *, uid: str) -> bool:
        """Delete an object if it still is the one with ``uid``; False if it was gone."""
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {"uid": uid},
            "propagationPolicy": "Background",
        }
        found = self._request(
            "DELETE",
            _path(api_version, kind, namespace, name),
            body=body,
            content_type="application/json",
            missing_ok=True,
        )
        return found is not None

    def get_deployment(self, namespace: str, name: str) -> Body | None:
        """A Deployment, or None."""
        return self._get(_path("apps/v1", "Deployment", namespace, name))

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> Body:
        """Set a Deployment's replicas (a merge patch of ``spec.replicas`` only, so the
        operator needs no extra permission for the scale subresource); the live object."""
        path = _path("apps/v1", "Deployment", namespace, name)
        live = self._request(
            "PATCH",
            path,
            query=[("fieldManager", labels.FIELD_MANAGER)],
            body={"spec": {"replicas": replicas}},
            content_type=_MERGE,
        )
        return live or {}

    def get_configmap(self, namespace: str, name: str) -> Body | None:
        """A ConfigMap, or None."""
        return self._get(_path("v1", "ConfigMap", namespace, name))

    def get_secret_metadata(self, namespace: str, name: str) -> Body | None:
        """A Secret's ``metadata`` only (``PartialObjectMetadata``: no value is transferred);
        None when it does not exist."""
        path = _path("v1", "Secret", namespace, name)
        found = self._request("GET", path, missing_ok=True, accept=_METADATA_ONLY)
        if found is None:
            return None
        meta: Body = found.get("metadata") or {}
        return meta

    def read_secret_key(self, namespace: str, name: str, key: str) -> str | None:
        """The decoded value of a Secret's key; None when the Secret or the key is missing."""
        secret = self._get(_path("v1", "Secret", namespace, name))
        encoded = ((secret or {}).get("data") or {}).get(key)
        if encoded is None:
            return None
        return base64.b64decode(encoded).decode("utf-8")

    # ------------------------------------------------------------------------------ events

    def post_event(
        self, about: ObjectRef, *, type_: str, reason: str, message: str, now: datetime
    ) -> None:
        """Record an Event about an object. Best effort: a failure is logged, never raised."""
        stamp = conditions.timestamp(now)
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{about.name}.{uuid.uuid4().hex[:16]}",
                "namespace": about.namespace,
            },
            "involvedObject": {
                "apiVersion": about.api_version,
                "kind": about.kind,
                "name": about.name,
                "namespace": about.namespace,
                "uid": about.uid,
            },
            "type": type_,
            "reason": reason,
            "message": message[:EVENT_MESSAGE_LIMIT],
            "source": {"component": labels.FIELD_MANAGER},
            "reportingComponent": labels.FIELD_MANAGER,
            "reportingInstance": self._instance,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            self._request(
                "POST",
                _path("v1", "Event", about.namespace),
                body=body,
                content_type="application/json",
            )
        except (errors.KubeUnavailable, errors.KubeRejected) as e:
            log.warning("could not record event %s on %s: %s", reason, about.name, e)


def _server_message(data: bytes | None) -> str:
    if not data:
        return ""
    try:
        decoded = json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace")[:500]
    message = decoded.get("message") if isinstance(decoded, dict) else None
    return str(message) if message else ""
