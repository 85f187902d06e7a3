"""The autoscaler's I/O: read the backlog, decide, write replicas and status.

Kopf runs :meth:`Autoscaler.tick` every ``--autoscale-interval`` seconds for each
AgentDeployment with ``spec.scaling`` and keeps the returned history in the agent's memo.
The decision itself is :func:`pilothouse.operator.autoscaling.desired_replicas`; this module
gathers its inputs (the backlog from Redis through :mod:`~pilothouse.operator.backlogs`, the
Deployment's replicas through :mod:`~pilothouse.operator.kube`) and applies its output: the
Deployment's ``spec.replicas`` (the operator is the only writer of replicas while scaling is
on), ``status.desiredReplicas`` / ``queueDepth`` / ``lastScaleTime`` / the ScalingActive
condition, an Event on every change. When the backlog cannot be read the count is held and the
condition says why.

The Redis the autoscaler reads is the agent's own (``spec.redis.urlSecretRef``, read from the
Secret and cached briefly), else the operator's ``--redis-url``, else the runtime's default
Redis Secret (``--redis-secret``). With ``--no-secret-reads`` it reads no Secret at all and
uses ``--redis-url`` for every agent (:func:`backlog_source` decides).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

from pilothouse.operator import (
    api,
    autoscaling,
    backlogs,
    conditions,
    errors,
    kube,
    labels,
    metrics,
    reconciling,
    resources,
    settings,
    statuses,
)

__all__ = ["SECRET_CACHE_SECONDS", "Autoscaler", "backlog_source"]

SECRET_CACHE_SECONDS: Final = 30.0
"""How long a Redis URL read from a Secret is reused before it is read again."""


def backlog_source(
    spec: api.AgentDeploymentSpec, operator: settings.OperatorSettings
) -> str | api.SecretKeyRef:
    """Where the autoscaler finds an agent's Redis: a URL it has, or the Secret to read it from.
    :class:`errors.BacklogUnavailable` (naming the way out) when there is neither."""
    ref = spec.redis.url_secret_ref
    if not operator.read_secrets:
        if operator.redis_url:
            return operator.redis_url
        raise errors.BacklogUnavailable(
            "the operator reads no Secrets (--no-secret-reads) and has no --redis-url to read "
            "the backlog from"
        )
    if ref is None and operator.redis_url:
        return operator.redis_url
    ref = ref or operator.runtime.redis_secret
    if ref is None:
        raise errors.BacklogUnavailable(
            "no Redis to read the backlog from: set spec.redis.urlSecretRef, or run the "
            "operator with --redis-url or --redis-secret"
        )
    return ref


class Autoscaler:
    """Per-agent scaling ticks; stateless apart from a short cache of Redis URLs."""

    def __init__(self, reconciler: reconciling.Reconciler, reader: backlogs.BacklogReader) -> None:
        self._reconciler = reconciler
        self._reader = reader
        self._urls: dict[tuple[str, str, str], tuple[float, str | None]] = {}
        self._urls_lock = threading.Lock()
        for reason in autoscaling.REASONS:  # at 0 from the start, like every known series
            metrics.AUTOSCALER_DECISIONS.labels(reason)

    async def tick(
        self,
        namespace: str,
        name: str,
        spec: Mapping[str, Any],
        history: Sequence[autoscaling.Recommendation],
    ) -> tuple[autoscaling.Recommendation, ...]:
        """One decision for one agent; returns the history for the next tick."""
        try:
            parsed = api.AgentDeploymentSpec.model_validate(spec)
        except ValueError:
            return tuple(history)  # the agent is Stalled with InvalidSpec already
        if parsed.scaling is None:
            return ()
        cfg = self._reconciler.rendered_config(namespace, name)
        if cfg is None:
            return tuple(history)  # not rendered by this process yet: the stream is unknown
        backlog: int | None = None
        problem: str | None = None
        try:
            url = await asyncio.to_thread(self.redis_url, namespace, parsed)
            backlog = await self._reader.read(url, cfg)
        except errors.BacklogUnavailable as e:
            problem = str(e)
        return await asyncio.to_thread(self._apply, namespace, name, backlog, problem, history)

    def redis_url(self, namespace: str, spec: api.AgentDeploymentSpec) -> str:
        """The Redis URL of an agent: its Secret, else --redis-url, else the default Secret."""
        source = backlog_source(spec, self._reconciler.settings)
        if isinstance(source, str):
            return source
        ref = source
        key = (namespace, ref.name, ref.key)
        now = time.monotonic()
        with self._urls_lock:
            cached = self._urls.get(key)
        if cached is None or now - cached[0] > SECRET_CACHE_SECONDS:
            try:
                value = self._reconciler.kube.read_secret_key(namespace, ref.name, ref.key)
            except (errors.KubeUnavailable, errors.KubeRejected) as e:
                raise errors.BacklogUnavailable(f"cannot read Secret {ref.name}: {e}") from e
            cached = (now, value)
            with self._urls_lock:
                self._urls[key] = cached
        if not cached[1]:
            raise errors.BacklogUnavailable(f"Secret {ref.name} has no key {ref.key}")
        return cached[1]

    def _apply(
        self,
        namespace: str,
        name: str,
        backlog: int | None,
        problem: str | None,
        history: Sequence[autoscaling.Recommendation],
    ) -> tuple[autoscaling.Recommendation, ...]:
        rec = self._reconciler
        with rec.agent_lock(namespace, name):
            body = rec.kube.get_agent(namespace, name)
            deployment = rec.kube.get_deployment(namespace, labels.child_name(name))
            if body is None or deployment is None:
                return tuple(history)
            try:
                agent = resources.parse_agent(body)
            except errors.SpecError:
                return tuple(history)
            scaling = agent.spec.scaling
            if scaling is None:
                return ()
            current = int((deployment.get("spec") or {}).get("replicas") or 0)
            now = rec.clock()
            decision = autoscaling.desired_replicas(backlog, scaling, history, now, current=current)
            metrics.AUTOSCALER_DECISIONS.labels(decision.reason).inc()
            metrics.DESIRED_REPLICAS.labels(namespace, name).set(decision.replicas)
            if backlog is not None:
                metrics.QUEUE_DEPTH.labels(namespace, name).set(backlog)
            if decision.changed:
                live = rec.kube.scale_deployment(
                    namespace, labels.child_name(name), decision.replicas
                )
                rec.remember_child(live)  # the operator's own change, not drift
            new = statuses.scaling_status(
                agent.status, decision=decision, backlog=backlog, problem=problem, now=now
            )
            patch = statuses.merge_patch(agent.status.document(), new.document())
            if patch:
                rec.kube.patch_status(api.AGENT_KIND, namespace, name, patch)

        about = kube.ObjectRef(api.API_VERSION, api.AGENT_KIND, name, namespace, agent.meta.uid)
        if decision.changed:
            rec.event(about, decision.reason, decision.message)
        was = conditions.find(agent.status.conditions, conditions.SCALING_ACTIVE)
        if backlog is None and (was is None or was.status == "True"):
            rec.event(
                about,
                conditions.BACKLOG_UNAVAILABLE,
                f"{problem}; holding {decision.replicas} replica(s)",
                warning=True,
            )
        return decision.history
