"""Reconciliation: gather -> decide and build -> apply -> compute status -> patch if changed.

The Kopf handlers (:mod:`pilothouse.operator.handlers`) call one method of :class:`Reconciler`
per event; everything here is synchronous (the Kubernetes client is) and runs in Kopf's thread
pool. Decisions are made by the pure modules (:mod:`targeting`, :mod:`rendering`,
:mod:`manifests`, :mod:`statuses`); this module only moves data between them and
:mod:`~pilothouse.operator.kube`.

Concurrency: an agent is reconciled by its own handlers, by the fan-out of every policy that
applies to it, and by its Deployment's events, possibly at once from different threads; a lock
per agent serialises them, so each reconcile sees the previous one's status. Policy statuses
are recomputed from the cluster (never incrementally) and coalesced: a burst of requests for one
policy costs one extra recomputation, not one each.

Failure modes: a spec the operator cannot render, a missing policy or prompt, or a child the API
server refuses make the agent ``Stalled`` with an Event, and nothing is retried until something
changes (the pods keep their last config). Any other API error during a reconcile is reported
too, never silenced: a refusal of the operator's permissions (401/403) or another 4xx makes the
agent ``Stalled`` (``ApiForbidden``, ``ApiRejected``), an unreachable API server
``Reconciling`` (``ApiUnavailable``), each with an Event, and the handlers retry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Final

from pilothouse.operator import (
    api,
    conditions,
    crdchecks,
    errors,
    kube,
    labels,
    manifests,
    metrics,
    references,
    rendering,
    resources,
    settings,
    statuses,
    targeting,
)
from pilothouse.runtime import config

__all__ = ["KINDS", "RESULTS", "Reconciler", "api_problem", "decide_drift"]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Body = Mapping[str, Any]

RESULTS: Final = ("ok", "stalled", "waiting", "gone", "error")
"""Values of the ``result`` label of ``pilothouse_operator_reconciles_total``."""
KINDS: Final = (api.AGENT_KIND, api.POLICY_KIND)
"""The kinds this module reconciles (the ``kind`` label of its metrics)."""

PRUNED: Final = "pruned"
"""The drift memory's entry for a child the operator deleted itself (no drift to put back)."""
WAITING: Final = "waiting"
"""reconcile_agent's result when the agent waits for something no watch reports (a Secret):
the handlers retry it after a delay."""
CONFIG_RENDERED: Final = "ConfigRendered"
"""Event: a new runtime config was rendered and is rolling out."""
ROLLOUT_COMPLETE: Final = "RolloutComplete"
"""Event: every replica runs the current config."""
CHILDREN_PRUNED: Final = "ChildrenPruned"
AUTHENTICATION_OFF: Final = "AuthenticationOff"
"""Warning: the agent's API checks no caller (``spec.server.authentication: none``)."""
AUTHENTICATION_OFF_MESSAGE: Final = (
    "spec.server.authentication is none: anyone who reaches the agent's API can send requests, "
    "read every result and approve escalations"
)
"""Event: children no longer wanted were deleted."""
TARGETS_CHANGED: Final = "TargetsChanged"
"""Event (AgentPolicy): the set of agents the policy applies to changed."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _Coalescer:
    """Runs ``fn`` for a key at most once at a time; requests meanwhile cause one more run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._again: dict[tuple[str, str], bool] = {}

    def run(self, key: tuple[str, str], fn: Callable[[], None]) -> None:
        with self._lock:
            if key in self._again:
                self._again[key] = True
                return
            self._again[key] = False
        try:
            while True:
                fn()
                with self._lock:
                    if not self._again[key]:
                        del self._again[key]
                        return
                    self._again[key] = False
        except BaseException:
            with self._lock:
                self._again.pop(key, None)
            raise


class Reconciler:
    """Reconciles AgentDeployments and AgentPolicies against the API server."""

    def __init__(
        self,
        client: kube.Kube,
        operator_settings: settings.OperatorSettings,
        *,
        clock: Clock = _utcnow,
    ) -> None:
        self.kube = client
        self.settings = operator_settings
        self.clock = clock
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._policy_locks: dict[tuple[str, str], threading.Lock] = {}
        self._rendered: dict[tuple[str, str], config.RuntimeConfig] = {}
        self.schema_gate = crdchecks.SchemaGate(client)
        self._children: dict[tuple[str, str, str], str] = {}
        self._policy_status = _Coalescer()
        # Every series whose labels are known exists at 0 from the start: a first failure is
        # then an increase Prometheus sees, not a series born at 1 (see the chart's alerts).
        for kind in KINDS:
            metrics.RECONCILE_DURATION.labels(kind)
            for result in RESULTS:
                metrics.RECONCILES.labels(kind, result)

    # ----------------------------------------------------------------------------- helpers

    def agent_lock(self, namespace: str, name: str) -> threading.Lock:
        """The lock that serialises everything done to one agent."""
        with self._guard:
            return self._locks.setdefault((namespace, name), threading.Lock())

    def policy_lock(self, namespace: str, name: str) -> threading.Lock:
        """The lock that serialises the status writes of one policy."""
        with self._guard:
            return self._policy_locks.setdefault((namespace, name), threading.Lock())

    def rendered_config(self, namespace: str, name: str) -> config.RuntimeConfig | None:
        """The runtime config last applied for an agent by this process (for the autoscaler)."""
        return self._rendered.get((namespace, name))

    def event(
        self, about: kube.ObjectRef, reason: str, message: str, *, warning: bool = False
    ) -> None:
        """Post an Event (best effort) and log it."""
        level = logging.WARNING if warning else logging.INFO
        log.log(level, "%s %s/%s: %s: %s", about.kind, about.namespace, about.name, reason, message)
        self.kube.post_event(
            about,
            type_="Warning" if warning else "Normal",
            reason=reason,
            message=message,
            now=self.clock(),
        )

    @contextmanager
    def _measured(self, kind: str) -> Iterator[dict[str, str]]:
        outcome = {"result": "ok"}
        start = time.perf_counter()
        try:
            yield outcome
        except Exception as e:
            metrics.RECONCILE_ERRORS.labels(kind, type(e).__name__).inc()
            outcome["result"] = "error"
            raise
        finally:
            metrics.RECONCILE_DURATION.labels(kind).observe(time.perf_counter() - start)
            metrics.RECONCILES.labels(kind, outcome["result"]).inc()

    # ------------------------------------------------------------------------ acknowledging

    def acknowledge(self, kind: str, body: Body) -> bool:
        """Write ``observedGeneration`` and ``Reconciling=True`` for a generation not seen yet.

        The operator's first act on a new or changed AgentDeployment or AgentPolicy (its
        event handler runs before Kopf's own bookkeeping and before any reconcile), so a
        pipeline never reads a resource the operator has not acted on as healthy. ``body`` is
        the watch event's; when it shows an unseen generation the resource is read again under
        the agent's lock, so a late event never turns a reconciled status back. True if the
        status was patched.
        """
        meta = resources.Meta.from_body(body)
        if meta.generation == _observed_generation(body) or _deleting(body):
            return False
        if kind == api.AGENT_KIND:
            with self.agent_lock(meta.namespace, meta.name):
                fresh = self.kube.get_agent(meta.namespace, meta.name)
                if fresh is None or _deleting(fresh):
                    return False
                previous = resources.agent_status_of(fresh)
                generation = resources.Meta.from_body(fresh).generation
                new = statuses.acknowledged(previous, generation=generation, now=self.clock())
                return self._write_agent_status(meta, previous, new)
        with self.policy_lock(meta.namespace, meta.name):
            fresh = self.kube.get_policy(meta.namespace, meta.name)
            if fresh is None or _deleting(fresh):
                return False
            old = resources.policy_status_of(fresh)
            generation = resources.Meta.from_body(fresh).generation
            acked = statuses.acknowledged(old, generation=generation, now=self.clock())
            patch = statuses.merge_patch(old.document(), acked.document())
            if not patch:
                return False
            self.kube.patch_status(api.POLICY_KIND, meta.namespace, meta.name, patch)
            return True

    # ---------------------------------------------------------------------- AgentDeployment

    def reconcile_agent(self, namespace: str, name: str) -> str:
        """Render, apply, prune and report one agent; returns ok, stalled, waiting or gone."""
        with self._measured(api.AGENT_KIND) as outcome, self.agent_lock(namespace, name):
            try:
                outcome["result"] = self._reconcile_agent(namespace, name)
            except (errors.KubeUnavailable, errors.KubeRejected) as e:
                self._report_api_error(namespace, name, e)
                raise
            return outcome["result"]

    def _report_api_error(
        self, namespace: str, name: str, error: errors.KubeUnavailable | errors.KubeRejected
    ) -> None:
        """Say in the agent's status (and an Event) why its reconcile failed; best effort.

        A refusal (RBAC, another 4xx) is Stalled, a failure for now Reconciling; the handler
        retries either way. Never silence: without this a reconcile failing on every retry
        would leave the last (possibly Ready) status in place.
        """
        problem = api_problem(error)
        try:
            body = self.kube.get_agent(namespace, name)
            if body is None or _deleting(body):
                return
            meta = resources.Meta.from_body(body)
            previous = resources.agent_status_of(body)
            now = self.clock()
            new = statuses.agent_status(
                previous,
                generation=meta.generation,
                outcome=problem,
                deployment=None,
                selector=labels.selector_string(name),
                now=now,
            )
            # No Deployment was read: keep the replica counts as they were.
            new = new.model_copy(
                update={
                    "replicas": previous.replicas,
                    "ready_replicas": previous.ready_replicas,
                    "updated_replicas": previous.updated_replicas,
                }
            )
            self._write_agent_status(meta, previous, new)
            kind = conditions.RECONCILING if problem.transient else conditions.STALLED
            before = conditions.find(previous.conditions, kind)
            if before is None or before.status != "True" or before.message != problem.message:
                self.event(_agent_ref(meta), problem.reason, problem.message, warning=True)
        except (errors.KubeUnavailable, errors.KubeRejected) as e:
            log.warning("could not report the failed reconcile of %s/%s: %s", namespace, name, e)

    def _reconcile_agent(self, namespace: str, name: str) -> str:
        body = self.kube.get_agent(namespace, name)
        if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
            return "gone"  # being deleted: the garbage collector removes the children
        now = self.clock()
        meta = resources.Meta.from_body(body)
        previous = resources.agent_status_of(body)
        outdated = self.schema_gate.problem()
        if outdated is not None:  # its new fields may have been pruned: apply nothing
            problem = statuses.Problem(conditions.CRD_OUTDATED, outdated.message)
            self._stall(meta, previous, problem, now)
            return WAITING  # checked again: the CRDs may be upgraded any moment
        try:
            agent = resources.parse_agent(body)
        except errors.SpecError as e:
            self._stall(meta, previous, statuses.Problem(e.reason, e.message), now)
            return "stalled"

        gathered = self._gather(agent)
        if isinstance(gathered, statuses.Problem):
            self._stall(meta, previous, gathered, now)
            return "stalled"
        policies, prompt = gathered
        try:
            rendered = rendering.render(
                agent, policies, system_prompt=prompt, defaults=self.settings.runtime
            )
        except errors.SpecError as e:
            self._stall(meta, previous, statuses.Problem(e.reason, e.message), now)
            return "stalled"

        if self.settings.read_secrets:  # else (--no-secret-reads) pods report what is missing
            wanted = references.needed(rendered)
            found = {n: self.kube.get_secret_metadata(namespace, n) for n in _names(wanted)}
            missing = references.missing(wanted, found, namespace)
            if missing is not None:
                self._stall(meta, previous, missing, now)
                return WAITING

        current = self.kube.get_deployment(namespace, labels.child_name(name))
        replicas = self._replicas(agent, current)
        children = manifests.build_children(
            agent, rendered, replicas=replicas, defaults=self.settings.runtime
        )
        live: dict[str, Body] = {}
        try:
            for child in children:
                live[child["kind"]] = self.remember_child(self.kube.apply(child))
        except errors.KubeRejected as e:
            if e.status in (401, 403):
                raise  # a permission, not the spec: reported and retried by reconcile_agent
            problem = statuses.Problem(conditions.APPLY_REJECTED, e.server_message)
            self._stall(meta, previous, problem, now)
            return "stalled"
        try:
            self._review_binding(agent, rendered)
        except errors.KubeRejected as e:
            problem = statuses.Problem(conditions.APPLY_REJECTED, e.server_message)
            self._stall(meta, previous, problem, now)
            return "stalled"
        pruned = self._prune(agent, children)
        self._rendered[(namespace, name)] = rendered.config

        applied = tuple(
            statuses.AppliedPolicy(name=n, generation=g) for n, g in rendered.applied_policies
        )
        auth = rendered.config.server.authentication
        outcome = statuses.Rendered(rendered.hash, applied, replicas, authentication=auth)
        new = statuses.agent_status(
            previous,
            generation=meta.generation,
            outcome=outcome,
            deployment=live.get("Deployment"),
            selector=labels.selector_string(name),
            now=now,
        )
        if agent.spec.scaling is None:
            new = statuses.scaling_status(new, decision=None, backlog=None, problem=None, now=now)
        self._write_agent_status(meta, previous, new)

        about = _agent_ref(meta)
        if previous.config_hash != rendered.hash:
            names = ", ".join(f"{p.name}@{p.generation}" for p in applied) or "none"
            self.event(
                about,
                CONFIG_RENDERED,
                f"runtime config {rendered.hash} rendered (policies: {names}); "
                f"{replicas} replica(s) rolling out",
            )
        if auth == "none" and previous.authentication != "none":
            self.event(about, AUTHENTICATION_OFF, AUTHENTICATION_OFF_MESSAGE, warning=True)
        if pruned:
            self.event(
                about, CHILDREN_PRUNED, "deleted " + ", ".join(pruned) + " (no longer wanted)"
            )
        before = {p.name for p in previous.applied_policies}
        after = {p.name for p in applied}
        for policy in sorted(before ^ after):
            self.refresh_policy_status(namespace, policy)
        return "ok"

    def _gather(
        self, agent: resources.Agent
    ) -> tuple[list[resources.Policy], str] | statuses.Problem:
        """The policies that apply and the system prompt, or why they cannot be had."""
        ns = agent.meta.namespace
        valid: list[resources.Policy] = []
        invalid: dict[str, str] = {}
        for body in self.kube.list_policies(ns):
            try:
                policy = resources.parse_policy(body)
                rendering.resolve_policy(policy)
            except errors.SpecError as e:
                invalid[resources.Meta.from_body(body).name] = e.message
                continue
            valid.append(policy)
        selection = targeting.select_policies(agent, valid)
        broken = [n for n in selection.missing if n in invalid]
        if broken:
            details = "; ".join(f"AgentPolicy {n} is invalid: {invalid[n]}" for n in broken)
            return statuses.Problem(conditions.INVALID_SPEC, f"spec.policyRefs: {details}")
        if selection.missing:
            missing = ", ".join(selection.missing)
            return statuses.Problem(
                conditions.POLICY_NOT_FOUND,
                f"spec.policyRefs: AgentPolicy {missing} not found in namespace {ns}; rollouts "
                "wait until it exists (the pods keep their last config)",
            )

        prompt = agent.spec.agent.system_prompt
        source = agent.spec.agent.system_prompt_from
        if prompt is None and source is not None:
            ref = source.config_map_key_ref
            found = self.kube.get_configmap(ns, ref.name)
            value = None if found is None else (found.get("data") or {}).get(ref.key)
            if value is None:
                what = (
                    f"ConfigMap {ref.name} not found"
                    if found is None
                    else (f"ConfigMap {ref.name} has no key {ref.key}")
                )
                return statuses.Problem(
                    conditions.SYSTEM_PROMPT_NOT_FOUND, f"spec.agent.systemPromptFrom: {what}"
                )
            prompt = value
        return list(selection.applied), prompt or ""

    def _replicas(self, agent: resources.Agent, deployment: Body | None) -> int:
        scaling = agent.spec.scaling
        if scaling is None:
            return manifests.static_replicas(agent.spec)
        # The autoscaler's last decision, not the Deployment's count (which someone may have
        # changed); the running count only before the first decision.
        current = agent.status.desired_replicas
        if current is None:
            current = (deployment or {}).get("spec", {}).get("replicas")
        if not isinstance(current, int):
            current = scaling.min_replicas
        return max(scaling.min_replicas, min(scaling.max_replicas, current))

    def _review_binding(self, agent: resources.Agent, rendered: rendering.RenderedConfig) -> None:
        """Kubernetes authentication: let the agent's ServiceAccount review its callers (a
        cluster-scoped binding, so not owned: deleted here when no longer wanted, and with the
        agent)."""
        binding = manifests.build_review_binding(agent, rendered)
        if binding is not None:
            self.kube.apply_cluster_role_binding(binding)
            return
        before = self._rendered.get((agent.meta.namespace, agent.meta.name))
        if before is None or before.server.kubernetes_auth.enabled:
            name = manifests.review_binding_name(agent.meta.namespace, agent.meta.name)
            self.kube.delete_cluster_role_binding(name)

    def _prune(self, agent: resources.Agent, children: tuple[dict[str, Any], ...]) -> list[str]:
        """Delete owned children of kinds the agent no longer wants (one object per kind)."""
        wanted = {(c["apiVersion"], c["kind"]) for c in children}
        ns, uid = agent.meta.namespace, agent.meta.uid
        pruned = []
        for api_version, kind in manifests.MANAGED_KINDS:
            if (api_version, kind) in wanted:
                continue
            selector = labels.managed_selector(agent.meta.name)
            for obj in self.kube.list_children(api_version, kind, ns, selector):
                meta = obj.get("metadata") or {}
                owners = meta.get("ownerReferences") or []
                if not any(o.get("uid") == uid and o.get("controller") for o in owners):
                    continue
                with self._guard:
                    self._children[(kind, ns, meta["name"])] = PRUNED
                if self.kube.delete(api_version, kind, ns, meta["name"], uid=meta["uid"]):
                    pruned.append(f"{kind} {meta['name']}")
        return pruned

    def _stall(
        self,
        meta: resources.Meta,
        previous: statuses.AgentDeploymentStatus,
        problem: statuses.Problem,
        now: datetime,
    ) -> None:
        deployment = self.kube.get_deployment(meta.namespace, labels.child_name(meta.name))
        new = statuses.agent_status(
            previous,
            generation=meta.generation,
            outcome=problem,
            deployment=deployment,
            selector=labels.selector_string(meta.name),
            now=now,
        )
        self._write_agent_status(meta, previous, new)
        before = conditions.find(previous.conditions, conditions.STALLED)
        if before is None or before.status != "True" or before.message != problem.message:
            self.event(_agent_ref(meta), problem.reason, problem.message, warning=True)

    def _write_agent_status(
        self,
        meta: resources.Meta,
        previous: statuses.AgentDeploymentStatus,
        new: statuses.AgentDeploymentStatus,
    ) -> bool:
        patch = statuses.merge_patch(previous.document(), new.document())
        if not patch:
            return False
        self.kube.patch_status(api.AGENT_KIND, meta.namespace, meta.name, patch)
        return True

    # ------------------------------------------------------------------------------- drift

    def remember_child(self, live: Body) -> Body:
        """Note the version of a child the operator just wrote (its own change, not drift)."""
        kind, meta = live.get("kind"), live.get("metadata") or {}
        if isinstance(kind, str) and meta.get("name"):
            with self._guard:
                self._children[(kind, meta.get("namespace", ""), meta["name"])] = _version(live)
        return live

    def child_changed(self, kind: str, event: str | None, body: Body) -> str:
        """React to a watch event of an owned child; returns what was done.

        Someone else's change to a child (a version the operator did not write), or its
        deletion, makes a full reconcile at once: the forced server-side apply puts back every
        field the operator owns (``kubectl scale``, an edited or deleted ConfigMap). The
        Deployment's own status changes only refresh the agent's rollout status. Events of the
        initial listing are left to the resume reconcile of each agent.
        """
        meta = body.get("metadata") or {}
        agent = (meta.get("labels") or {}).get(labels.AGENT_KEY)
        namespace, name = meta.get("namespace") or "", meta.get("name") or ""
        if not agent or not namespace:
            return "ignored"
        with self._guard:
            known = self._children.get((kind, namespace, name))
            if event == "DELETED":
                self._children.pop((kind, namespace, name), None)
        if decide_drift(event, known, _version(body)) == "reconcile":
            self.reconcile_agent(namespace, agent)
            return "reconciled"
        if kind == "Deployment" and event != "DELETED":
            self.refresh_rollout(namespace, agent, body)
            return "refreshed"
        return "ignored"

    def refresh_rollout(self, namespace: str, name: str, deployment: Body) -> None:
        """Follow the agent's Deployment: replica counts and Ready, without re-rendering."""
        with self.agent_lock(namespace, name):
            body = self.kube.get_agent(namespace, name)
            if body is None:
                return
            meta = resources.Meta.from_body(body)
            previous = resources.agent_status_of(body)
            if previous.config_hash is None:
                return  # never rendered: the first reconcile will report
            new = statuses.rollout_status(
                previous, deployment=deployment, generation=None, now=self.clock()
            )
            self._write_agent_status(meta, previous, new)
            was = conditions.is_true(previous.conditions, conditions.READY)
            if not was and conditions.is_true(new.conditions, conditions.READY):
                ready = conditions.find(new.conditions, conditions.READY)
                self.event(_agent_ref(meta), ROLLOUT_COMPLETE, ready.message if ready else "")

    def agent_deleted(self, body: Body) -> None:
        """Forget the agent and update the statuses of the policies it had."""
        meta = resources.Meta.from_body(body)
        binding = manifests.review_binding_name(meta.namespace, meta.name)
        try:
            self.kube.delete_cluster_role_binding(binding)
        except errors.KubeRejected as e:  # nothing to retry: say so, the agent is gone
            log.error("cannot delete the ClusterRoleBinding %s: %s", binding, e)
        with self._guard:
            self._locks.pop((meta.namespace, meta.name), None)
        self._rendered.pop((meta.namespace, meta.name), None)
        names = {labels.child_name(meta.name), labels.configmap_name(meta.name)}
        with self._guard:
            for key in [k for k in self._children if k[1] == meta.namespace and k[2] in names]:
                del self._children[key]
        status = resources.agent_status_of(body)
        names = {p.name for p in status.applied_policies}
        names.update(targeting.Target.from_body(body).policy_refs)
        for policy in sorted(names):
            self.refresh_policy_status(meta.namespace, policy)

    # -------------------------------------------------------------------------- AgentPolicy

    def reconcile_policy(self, namespace: str, name: str) -> str:
        """Re-render every agent the policy applies (or applied) to, then report where."""
        with self._measured(api.POLICY_KIND) as outcome:
            body = self.kube.get_policy(namespace, name)
            if body is None:
                outcome["result"] = "gone"
                return "gone"
            affected = self._affected_agents(body)
            for agent in affected:
                self.reconcile_agent(namespace, agent)
            self.refresh_policy_status(namespace, name)
            problem = _policy_problem(body)
            outcome["result"] = "stalled" if problem else "ok"
            return outcome["result"]

    def policy_deleted(self, body: Body) -> None:
        """Re-render the agents the deleted policy applied to (they report it missing if named)."""
        meta = resources.Meta.from_body(body)
        with self._guard:
            self._policy_locks.pop((meta.namespace, meta.name), None)
        for agent in self._affected_agents(body):
            self.reconcile_agent(meta.namespace, agent)

    def _affected_agents(self, body: Body) -> list[str]:
        meta = resources.Meta.from_body(body)
        targets = [targeting.Target.from_body(b) for b in self.kube.list_agents(meta.namespace)]
        names = set(resources.policy_status_of(body).agents)
        names.update(t.name for t in targets if meta.name in t.policy_refs)
        try:
            policy = resources.parse_policy(body)
        except errors.SpecError:
            return sorted(names)
        names.update(targeting.agents_of(policy, targets))
        return sorted(names)

    def refresh_policy_status(self, namespace: str, name: str) -> None:
        """Recompute where a policy applies and patch its status (coalesced per policy)."""
        self._policy_status.run(
            (namespace, name), lambda: self._write_policy_status(namespace, name)
        )

    def _write_policy_status(self, namespace: str, name: str) -> None:
        with self.policy_lock(namespace, name):
            self._write_policy_status_locked(namespace, name)

    def _write_policy_status_locked(self, namespace: str, name: str) -> None:
        body = self.kube.get_policy(namespace, name)
        if body is None:
            return
        meta = resources.Meta.from_body(body)
        previous = resources.policy_status_of(body)
        targets = [targeting.Target.from_body(b) for b in self.kube.list_agents(namespace)]
        problem = _policy_problem(body)
        if problem is None:
            agents = targeting.agents_of(resources.parse_policy(body), targets)
        else:
            agents = tuple(sorted(t.name for t in targets if name in t.policy_refs))
        new = statuses.policy_status(
            previous, generation=meta.generation, agents=agents, problem=problem, now=self.clock()
        )
        patch = statuses.merge_patch(previous.document(), new.document())
        if patch:
            self.kube.patch_status(api.POLICY_KIND, namespace, name, patch)
        about = kube.ObjectRef(api.API_VERSION, api.POLICY_KIND, name, namespace, meta.uid)
        if new.agents != previous.agents:
            where = ", ".join(new.agents) or "no agent"
            self.event(about, TARGETS_CHANGED, f"applies to {len(new.agents)} agent(s): {where}")
        stalled_before = conditions.find(previous.conditions, conditions.STALLED)
        if problem is not None and (
            stalled_before is None
            or stalled_before.status != "True"
            or stalled_before.message != problem.message
        ):
            self.event(about, problem.reason, problem.message, warning=True)


def _policy_problem(body: Body) -> statuses.Problem | None:
    try:
        rendering.resolve_policy(resources.parse_policy(body))
    except errors.SpecError as e:
        return statuses.Problem(e.reason, e.message)
    return None


def _names(wanted: tuple[references.Needed, ...]) -> list[str]:
    return list(dict.fromkeys(item.ref.name for item in wanted))


def api_problem(error: errors.KubeUnavailable | errors.KubeRejected) -> statuses.Problem:
    """The condition reason and message for an API error met while reconciling."""
    if isinstance(error, errors.KubeUnavailable):
        return statuses.Problem(conditions.API_UNAVAILABLE, f"retrying: {error}", transient=True)
    if error.status in (401, 403):
        return statuses.Problem(
            conditions.API_FORBIDDEN,
            f"the API server refused the operator ({error.status}): {error.server_message}; "
            "grant the permission (the chart's RBAC does) and the operator retries every minute",
        )
    return statuses.Problem(conditions.API_REJECTED, str(error))


def decide_drift(event: str | None, known: str | None, seen: str) -> str:
    """``reconcile`` when a child's watch event shows a change the operator did not make.

    ``known`` is the version (generation, else resourceVersion) the operator last wrote, None
    when it wrote none in this process, :data:`PRUNED` when the operator deleted the child
    itself; ``event`` None is the initial listing.
    """
    if event is None:
        return "skip"
    if event == "DELETED":
        return "skip" if known == PRUNED else "reconcile"
    return "skip" if known == seen else "reconcile"


def _version(body: Body) -> str:
    """What changes when a child's spec does: its generation, else its resourceVersion (kinds
    without a generation have no status either, so nothing else moves it)."""
    meta = body.get("metadata") or {}
    generation = meta.get("generation")
    if isinstance(generation, int):
        return f"g{generation}"
    return f"rv{meta.get('resourceVersion', '')}"


def _observed_generation(body: Body) -> int | None:
    value = (body.get("status") or {}).get("observedGeneration")
    return value if isinstance(value, int) else None


def _deleting(body: Body) -> bool:
    return bool((body.get("metadata") or {}).get("deletionTimestamp"))


def _agent_ref(meta: resources.Meta) -> kube.ObjectRef:
    return kube.ObjectRef(api.API_VERSION, api.AGENT_KIND, meta.name, meta.namespace, meta.uid)
