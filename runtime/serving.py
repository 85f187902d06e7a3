"""Wiring: one runtime process built from a :class:`~pilothouse.runtime.config.RuntimeConfig`.

``pilothouse serve`` (:mod:`pilothouse.runtime.serve_command`), the integration tests and the
benchmark call :func:`build_runtime`, then :meth:`Runtime.start`, serve :attr:`Runtime.app`, and
on SIGTERM :meth:`Runtime.drain` then :meth:`Runtime.close`. The pieces:

    Redis client ─┬─ work queue + result waiter (api role) ─ HTTP API (FastAPI)
                  ├─ policy engine ─┐
                  └─ breakers, sessions ─ agent loop ─ worker pool (worker role)
    PostgreSQL ─ audit store ─ audit writer (sink) + escalation store + history + housekeeping

Roles: ``api`` serves the HTTP API and enqueues; ``worker`` runs the worker pool and serves only
``/healthz``, ``/readyz`` and ``/metrics``; ``all`` (the default) does both in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

import httpx
import redis.asyncio as aioredis
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider

from pilothouse.runtime import (
    agent as agent_loop,
)
from pilothouse.runtime import (
    api,
    cancellations,
    config,
    desk,
    escalations,
    identities,
    kubeauth,
    metrics,
    modelchecks,
    probes,
    queue,
    records,
    replies,
    requests,
    telemetry,
    tokens,
    workers,
)
from pilothouse.runtime.audit import history, retention, rows, store, writers
from pilothouse.runtime.policies import engine

__all__ = [
    "BACKLOG_INTERVAL_SECONDS",
    "NO_AUTHENTICATION_WARNING",
    "Role",
    "Runtime",
    "build_authenticator",
    "build_runtime",
    "instance_name",
    "pooled_http_client",
]

log = logging.getLogger(__name__)

BACKLOG_INTERVAL_SECONDS: Final = 5.0
"""How often the ``pilothouse_queue_backlog`` gauge is refreshed."""
REDIS_MAX_CONNECTIONS: Final = 256
"""Upper bound of one process's Redis connections (``concurrency + 64`` below it)."""
REDIS_TIMEOUT_SECONDS: Final = 5.0
NO_AUTHENTICATION_WARNING: Final = (
    "AUTHENTICATION IS OFF: anyone who reaches this agent's API can send requests, read every "
    "result and approve escalations. Set server.kubernetesAuth or server.authTokensFile."
)
HTTP_POOL_SHARDS: Final = 8
"""Most connection pools the agent's HTTP calls are spread over."""
HTTP_CALLS_PER_SHARD: Final = 16
"""Concurrent calls per pool below which more pools do not pay."""
"""Socket timeout of Redis calls, and longest wait for a free connection."""


class Role(StrEnum):
    """What a runtime process does."""

    API = "api"
    WORKER = "worker"
    ALL = "all"

    @property
    def serves_api(self) -> bool:
        return self is not Role.WORKER

    @property
    def runs_workers(self) -> bool:
        return self is not Role.API


def instance_name() -> str:
    """This process's name in the consumer group: pod (host) name, pid and a random suffix."""
    host = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class _NullSink:
    """The sink of an agent without an audit trail."""

    async def submit_result(
        self,
        request: requests.AgentRequest,
        result: requests.AgentResult,
        decisions: Sequence[records.AgentDecision] = (),
    ) -> None:
        return None


class _AgentProcessor:
    """Runs a request through the agent loop; parks escalations, resumes approved ones."""

    def __init__(
        self,
        agent: agent_loop.Agent,
        policy_engine: engine.PolicyEngine,
        service: escalations.EscalationService | None,
    ) -> None:
        self.agent = agent
        self.engine = policy_engine
        self.service = service

    async def __call__(self, request: requests.AgentRequest) -> workers.Processed:
        resume = None
        if request.approved_escalation and self.service is not None:
            resume = await self.service.get_snapshot(request.approved_escalation)
        outcome = await self.agent.handle(request, resume=resume)
        if outcome.pending is not None and self.service is not None:
            timeout = self.engine.escalation_timeout(outcome.pending.policy)
            await self.service.park(outcome.pending, request, timeout_seconds=timeout)
        return workers.Processed(outcome.result, outcome.decisions)


@dataclass
class Runtime:
    """A runtime process's parts. ``start()``, serve ``app``, ``drain()``, ``close()``."""

    cfg: config.RuntimeConfig
    role: Role
    instance: str
    redis: aioredis.Redis
    health: probes.Health
    app: FastAPI
    work_queue: queue.WorkQueue
    waiter: replies.ResultWaiter | None = None
    pool: workers.WorkerPool | None = None
    agent: agent_loop.Agent | None = None
    http_client: httpx.AsyncClient | None = None
    audit_store: store.AuditStore | None = None
    writer: writers.AuditWriter | None = None
    settler: desk.Settler | None = None
    housekeeper: retention.Housekeeper | None = None
    tracer_provider: TracerProvider | None = None
    authenticator: identities.Authenticator = identities.NO_AUTHENTICATION
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _started: list[str] = field(default_factory=list)

    async def start(self) -> None:
        """Connect what must be connected and start the background work of this role."""
        self.health.start()
        self._started.append("health")
        if self.audit_store is not None:
            await self.audit_store.open()
            self._started.append("audit_store")
        if self.writer is not None:
            await self.writer.start()
            self._started.append("writer")
        try:
            await self.work_queue.ensure_group()
        except (queue.QueueUnavailable, queue.QueueError) as e:  # the loops retry meanwhile
            log.warning("Redis unreachable at start: %s", e)
        if self.waiter is not None:
            await self.waiter.start()
            self._started.append("waiter")
        if self.pool is not None:
            await self.pool.start()
            self._started.append("pool")
        if self.settler is not None:
            self.settler.start()
        if self.housekeeper is not None:
            self.housekeeper.start()
        self._tasks.append(asyncio.create_task(self._watch_backlog(), name="backlog-gauge"))
        if self.agent is not None:
            self._tasks.append(asyncio.create_task(self._check_models(), name="model-check"))
        log.info(
            "runtime started",
            extra={
                "role": str(self.role),
                "instance": self.instance,
                "authentication": self.authenticator.mode,
            },
        )
        if self.role.serves_api and self.authenticator.mode == identities.NoAuthentication.mode:
            log.warning(NO_AUTHENTICATION_WARNING)

    async def _check_models(self) -> None:
        assert self.agent is not None
        await modelchecks.check_models(self.agent.chain.client, self.cfg.agent, self.cfg.models)

    async def _watch_backlog(self) -> None:
        gauge = metrics.QUEUE_BACKLOG.labels(agent=self.cfg.agent)
        while True:
            with contextlib.suppress(queue.QueueUnavailable, queue.QueueError):
                gauge.set(await self.work_queue.backlog())
            await asyncio.sleep(BACKLOG_INTERVAL_SECONDS)

    async def drain(self, grace: float | None = None) -> int:
        """SIGTERM: readiness off first, then no new work; in-flight work gets ``grace``
        seconds (``shutdownGraceSeconds``); what did not finish is given back unacknowledged.
        Returns how many entries were given back."""
        self.health.begin_drain()
        log.info("draining")
        given_back = 0
        if self.pool is not None:
            given_back = await self.pool.drain(grace)
        return given_back

    async def close(self) -> None:
        """Stop everything, flush the audit writer and the spans, close connections."""
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.settler is not None:
            await self.settler.close()
        if self.housekeeper is not None:
            await self.housekeeper.close()
        if self.pool is not None and not self.pool.draining:
            await self.pool.drain(0)
        if self.waiter is not None:
            await self.waiter.stop()
        if self.agent is not None:
            await self.agent.aclose()
        if self.http_client is not None:
            await self.http_client.aclose()
        if isinstance(self.authenticator, kubeauth.KubernetesAuth):
            await self.authenticator.aclose()
        if self.writer is not None and "writer" in self._started:
            await self.writer.close()
        if self.audit_store is not None:
            await self.audit_store.close()
        await self.health.stop()
        await self.redis.aclose()
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()


def _redis_client(cfg: config.RuntimeConfig, environ: Mapping[str, str]) -> aioredis.Redis:
    """One client (pool) for the queue, breakers, sessions and budgets of this process.

    A blocking pool: past ``max_connections`` callers wait for a connection (up to the socket
    timeout) instead of failing, so a burst of concurrent requests queues in the process
    rather than turning into errors; Redis is single-threaded, more connections would not
    make it faster.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        cfg.redis.resolve_url(environ),
        max_connections=min(REDIS_MAX_CONNECTIONS, cfg.workers.concurrency + 64),
        timeout=REDIS_TIMEOUT_SECONDS,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=2.0,
        health_check_interval=30,
    )
    return aioredis.Redis(connection_pool=pool)


class _ShardedTransport(httpx.AsyncBaseTransport):
    """Spreads requests over several connection pools, round robin.

    httpcore's pool does work proportional to its connections and waiting requests on every
    request and response, so one pool with hundreds of calls in flight costs more CPU per
    call than several small ones (measured: bench/bench_serving.py)."""

    def __init__(self, shards: int, keepalive_per_shard: int) -> None:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=keepalive_per_shard)
        self._shards = [httpx.AsyncHTTPTransport(limits=limits) for _ in range(shards)]
        self._next = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._next = (self._next + 1) % len(self._shards)
        return await self._shards[self._next].handle_async_request(request)

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()


def pooled_http_client(concurrency: int) -> httpx.AsyncClient:
    """The connection pools of the agent's LLM and tool calls, sized to the worker pool: each
    worker makes one call at a time, so as many kept-alive connections as workers means no
    connection is opened per request under load (timeouts are set per call)."""
    shards = max(1, min(HTTP_POOL_SHARDS, concurrency // HTTP_CALLS_PER_SHARD))
    keepalive = -(-concurrency // shards)
    return httpx.AsyncClient(transport=_ShardedTransport(shards, keepalive))


async def build_runtime(
    cfg: config.RuntimeConfig,
    *,
    role: Role = Role.ALL,
    environ: Mapping[str, str] | None = None,
    tracing: bool = True,
    audit_schema: str | None = None,
    settle_interval: float = desk.DEFAULT_SETTLE_INTERVAL_SECONDS,
) -> Runtime:
    """Build (not start) a runtime process. Configuration problems raise
    :class:`errors.ConfigError` naming the field; nothing is connected yet."""
    env = os.environ if environ is None else environ
    instance = instance_name()
    redis = _redis_client(cfg, env)
    work_queue = queue.WorkQueue(redis, cfg, consumer=instance)
    health = probes.Health()
    provider = telemetry.configure_tracing(cfg, environ=env) if tracing else None

    audit_store = writer = service = None
    sink: workers.ResultSink = _NullSink()
    if cfg.audit.enabled:
        kwargs: dict[str, Any] = {"schema_name": audit_schema} if audit_schema else {}
        audit_store = store.AuditStore(cfg.audit.resolve_dsn(env), **kwargs)
        writer = writers.AuditWriter(audit_store, cfg.audit, rows.AuditSettings.from_config(cfg))
        service = escalations.EscalationService(audit_store)
        sink = writer

    authenticator = build_authenticator(cfg, env)

    async def redis_check() -> str | None:
        await work_queue.ping()
        return None

    health.add_check("redis", redis_check)
    runtime_desk = desk.Desk(service, work_queue, sink, agent=cfg.agent) if service else None

    waiter = pool = agent = settler = housekeeper = http_client = None
    if role.serves_api:
        waiter = replies.ResultWaiter(redis, cfg, instance=instance)
    if role.runs_workers:
        policy_engine = engine.PolicyEngine(cfg, redis)
        http_client = pooled_http_client(cfg.workers.concurrency)
        # A cancelled request is refused before its next action, whatever the policies say.
        hook = cancellations.CancellableHook(policy_engine, cancellations.Cancellations(redis, cfg))
        agent = agent_loop.build_agent(cfg, redis=redis, policy_hook=hook, http_client=http_client)
        pool = workers.WorkerPool(
            work_queue, _AgentProcessor(agent, policy_engine, service), sink, cfg
        )
        running = pool

        async def pool_check() -> str | None:
            return None if running.alive else "the worker pool's loops stopped"

        health.add_check("workers", pool_check)
        if runtime_desk is not None:
            settler = desk.Settler(runtime_desk, interval=settle_interval)
        if audit_store is not None:
            housekeeper = _housekeeper(cfg, audit_store)

    history_reader = None
    if audit_store is not None:
        audit = audit_store

        async def read_history(request_id: str) -> list[dict[str, Any]]:
            return history.as_json(await history.for_request(audit, request_id, cfg.agent))

        history_reader = read_history

    services = api.Services(
        cfg=cfg,
        health=health,
        work_queue=work_queue if role.serves_api else None,
        waiter=waiter,
        history=history_reader,
        escalations=runtime_desk,
        authenticator=authenticator,
        cancellations=cancellations.Cancellations(redis, cfg) if role.serves_api else None,
    )
    return Runtime(
        cfg=cfg,
        role=role,
        instance=instance,
        redis=redis,
        health=health,
        app=api.create_app(services),
        work_queue=work_queue,
        waiter=waiter,
        pool=pool,
        agent=agent,
        http_client=http_client,
        audit_store=audit_store,
        writer=writer,
        settler=settler,
        housekeeper=housekeeper,
        tracer_provider=provider,
        authenticator=authenticator,
    )


def build_authenticator(
    cfg: config.RuntimeConfig, environ: Mapping[str, str]
) -> identities.Authenticator:
    """Who the API's callers are: Kubernetes reviews, a token file, or nobody checks."""
    if cfg.server.kubernetes_auth.enabled:
        return kubeauth.KubernetesAuth(
            cfg.server.kubernetes_auth, namespace=cfg.namespace, agent=cfg.agent, environ=environ
        )
    if cfg.server.auth_tokens_file:
        return tokens.TokenFile(cfg.server.auth_tokens_file)
    return identities.NO_AUTHENTICATION


def _housekeeper(cfg: config.RuntimeConfig, audit_store: store.AuditStore) -> retention.Housekeeper:
    """Deletes this agent's audit records past their retention, hourly."""
    days = rows.AuditSettings.from_config(cfg).retention_days

    async def job(now: datetime) -> None:
        await retention.run_retention(audit_store, cfg.agent, days, now)

    return retention.Housekeeper(job, interval=retention.DEFAULT_INTERVAL, clock=time.time)
