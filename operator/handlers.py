"""Kopf handlers: a few lines each, all work done by the reconciler.

:func:`register` wires the handlers into a Kopf registry (``pilothouse-operator`` calls it with
a fresh one). Sync handlers run in Kopf's thread pool, because the reconciler's Kubernetes
client is synchronous; the autoscaler's timer is async and hands its API calls to threads.

Retryable failures (API server unreachable, conflicts, 5xx, RBAC refusals that a fix may lift)
become ``kopf.TemporaryError`` with a delay; a spec the operator cannot render is never an
error here: the reconciler reports it as ``Stalled`` and waits for the next change.

=========================================  ====================================================
handler                                    does
=========================================  ====================================================
AgentDeployment event, first of a           ``observedGeneration`` + ``Reconciling=True``, before
generation                                 anything else (Kopf's finalizer, the reconcile)
AgentDeployment create / update / resume   full reconcile
AgentDeployment deletion (finalizer)       delete its Redis keys (bounded, idempotent; gives
                                           up after ``--redis-cleanup-timeout``)
AgentDeployment DELETED event              refresh the statuses of the policies it had
AgentDeployment timer (``spec.scaling``)   one autoscaler decision
AgentDeployment timer (resync)             full reconcile of an unchanged agent (drift repair,
                                           ``systemPromptFrom`` edits)
AgentPolicy event, first of a generation   ``observedGeneration`` + ``Reconciling=True``
AgentPolicy create / update / resume       re-render every agent it applies (or applied) to
AgentPolicy DELETED event                  re-render the agents it applied to
child event (Deployment, ConfigMap,        someone else changed or deleted it: full reconcile at
Service, ServiceAccount, budget; the       once (the forced apply puts back what the operator
operator's own only)                       owns); the Deployment's status: replicas, Ready

=========================================  ====================================================
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

import kopf

from pilothouse.operator import api, cleanups, errors, labels, reconciling, scaling, settings

__all__ = ["RETRY_DELAY", "register"]

log = logging.getLogger(__name__)

RETRY_DELAY: Final = 10.0
"""Seconds before Kopf retries a handler whose dependency failed."""
WAITING_RETRY_DELAY: Final = 10.0
"""Seconds between two checks of an agent waiting for a Secret to appear."""
REJECTED_RETRY_DELAY: Final = 60.0
"""Seconds before retrying after the API server refused a request (e.g. missing RBAC)."""

AGENTS: Final = (api.GROUP, api.VERSION, api.AGENT_PLURAL)
POLICIES: Final = (api.GROUP, api.VERSION, api.POLICY_PLURAL)
DEPLOYMENTS: Final = ("apps", "v1", "deployments")
CHILDREN: Final = {
    "Deployment": DEPLOYMENTS,
    "ConfigMap": ("", "v1", "configmaps"),
    "Service": ("", "v1", "services"),
    "ServiceAccount": ("", "v1", "serviceaccounts"),
    "PodDisruptionBudget": ("policy", "v1", "poddisruptionbudgets"),
}
"""The kinds of an agent's children, watched (the operator's own, by label) to correct drift."""


def _retrying(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except errors.KubeUnavailable as e:
        raise kopf.TemporaryError(str(e), delay=RETRY_DELAY) from e
    except errors.KubeRejected as e:
        raise kopf.TemporaryError(str(e), delay=REJECTED_RETRY_DELAY) from e


def _acknowledging(reconciler: reconciling.Reconciler, kind: str, body: kopf.Body) -> None:
    """Acknowledge a new generation; a failure is logged (event handlers are not retried) and
    the reconcile that follows reports or retries it."""
    try:
        reconciler.acknowledge(kind, body)
    except (errors.KubeUnavailable, errors.KubeRejected) as e:
        log.warning("could not acknowledge %s: %s", kind, e)


def _reconcile(reconciler: reconciling.Reconciler, namespace: str | None, name: str) -> None:
    """Reconcile one agent; one waiting for a Secret or for newer CRDs is retried (no watch
    sees either appear)."""
    if _retrying(reconciler.reconcile_agent, _ns(namespace), name) == reconciling.WAITING:
        raise kopf.TemporaryError(
            "waiting for a Secret or for newer CRDs", delay=WAITING_RETRY_DELAY
        )


def _ns(namespace: str | None) -> str:
    if not namespace:  # the kinds watched here are all namespaced
        raise kopf.PermanentError("a namespaced object without a namespace")
    return namespace


def _has_scaling(spec: kopf.Spec, **_: Any) -> bool:
    return bool(spec.get("scaling"))


def register(
    registry: kopf.OperatorRegistry,
    reconciler: reconciling.Reconciler,
    autoscaler: scaling.Autoscaler,
    operator_settings: settings.OperatorSettings,
    cleanup: cleanups.RedisCleanup | None = None,
) -> None:
    """Attach every handler of the operator to ``registry``."""

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)

    # ------------------------------------------------------------------- AgentDeployment

    @kopf.on.resume(*AGENTS, id="agent", registry=registry)
    @kopf.on.create(*AGENTS, id="agent", registry=registry)
    @kopf.on.update(*AGENTS, id="agent", registry=registry)
    def agent_changed(namespace: str | None, name: str, **_: Any) -> None:
        _reconcile(reconciler, namespace, name)

    if cleanup is not None:

        @kopf.on.delete(*AGENTS, id="redis-cleanup", registry=registry)
        async def agent_deleting(
            namespace: str | None,
            name: str,
            uid: str | None,
            spec: kopf.Spec,
            runtime: Any,
            retry: int,
            **_: Any,
        ) -> None:
            try:
                await cleanup.run(
                    _ns(namespace), name, uid or "", spec,
                    elapsed=runtime.total_seconds(), first=retry == 0,
                )  # fmt: skip
            except cleanups.MoreKeys as e:
                raise kopf.TemporaryError(str(e), delay=0.1) from e
            except cleanups.RedisUnreachable as e:
                raise kopf.TemporaryError(str(e), delay=cleanups.RETRY_DELAY) from e

    @kopf.on.event(*AGENTS, id="agent-deleted", registry=registry)
    def agent_event(type: str, body: kopf.Body, **_: Any) -> None:
        if type == "DELETED":
            reconciler.agent_deleted(body)
        else:
            _acknowledging(reconciler, api.AGENT_KIND, body)

    @kopf.timer(
        *AGENTS,
        id="autoscale",
        interval=operator_settings.autoscale_interval,
        initial_delay=operator_settings.autoscale_interval,
        when=_has_scaling,
        registry=registry,
    )
    async def autoscale(
        namespace: str | None, name: str, spec: kopf.Spec, memo: kopf.Memo, **_: Any
    ) -> None:
        history = memo.get("scale_history", ())
        try:
            memo["scale_history"] = await autoscaler.tick(_ns(namespace), name, spec, history)
        except (errors.KubeUnavailable, errors.KubeRejected) as e:
            raise kopf.TemporaryError(str(e), delay=operator_settings.autoscale_interval) from e

    if operator_settings.resync_interval > 0:

        @kopf.timer(
            *AGENTS,
            id="resync",
            interval=operator_settings.resync_interval,
            initial_delay=operator_settings.resync_interval,
            idle=operator_settings.resync_interval,
            registry=registry,
        )
        def resync(namespace: str | None, name: str, **_: Any) -> None:
            _reconcile(reconciler, namespace, name)

    # ----------------------------------------------------------------------- AgentPolicy

    @kopf.on.resume(*POLICIES, id="policy", registry=registry)
    @kopf.on.create(*POLICIES, id="policy", registry=registry)
    @kopf.on.update(*POLICIES, id="policy", registry=registry)
    def policy_changed(namespace: str | None, name: str, **_: Any) -> None:
        _retrying(reconciler.reconcile_policy, _ns(namespace), name)

    @kopf.on.event(*POLICIES, id="policy-deleted", registry=registry)
    def policy_event(type: str, body: kopf.Body, **_: Any) -> None:
        if type == "DELETED":
            reconciler.policy_deleted(body)
        else:
            _acknowledging(reconciler, api.POLICY_KIND, body)

    # ------------------------------------------------------------------------ Deployments

    for kind, resource in CHILDREN.items():
        _watch_child(registry, reconciler, kind, resource)


def _watch_child(
    registry: kopf.OperatorRegistry,
    reconciler: reconciling.Reconciler,
    kind: str,
    resource: tuple[str, str, str],
) -> None:
    @kopf.on.event(
        *resource,
        id=f"child-{resource[2]}",
        labels={labels.MANAGED_BY_KEY: labels.FIELD_MANAGER, labels.AGENT_KEY: kopf.PRESENT},
        registry=registry,
    )
    def child_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        _retrying(reconciler.child_changed, kind, type, body)
