"""The operator's own configuration: runtime defaults it renders, and how it runs.

:mod:`pilothouse.operator.cli` builds these from command-line flags (the Helm chart passes
them); the builders read :class:`RuntimeDefaults`, the reconciler and the Kopf wiring read
:class:`OperatorSettings`. Frozen, one docstring per field, ``DEFAULT_*`` constants beside.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from pilothouse.operator import api
from pilothouse.runtime import config

__all__ = [
    "DEFAULT_AUTOSCALE_INTERVAL",
    "DEFAULT_IMAGE",
    "DEFAULT_PEERING_LIFETIME",
    "DEFAULT_REDIS_CLEANUP_TIMEOUT",
    "DEFAULT_RESOURCES",
    "DEFAULT_RESYNC_INTERVAL",
    "DEFAULT_RUN_AS",
    "OperatorSettings",
    "RuntimeDefaults",
]

DEFAULT_IMAGE: Final = "pilothouse:0.1.0"
"""The runtime image when neither the agent nor ``--runtime-image`` names one."""
DEFAULT_RUN_AS: Final = 10001
"""UID and GID of the runtime process (the image's ``pilothouse`` user)."""
DEFAULT_RESOURCES: Final = api.ResourceRequirements(
    requests={"cpu": "100m", "memory": "256Mi"}, limits={"memory": "512Mi"}
)
"""Resources of the runtime container when the agent sets none: no CPU limit (throttling hurts
latency more than sharing a core), a memory limit (a leak restarts one pod, not the node)."""
DEFAULT_AUTOSCALE_INTERVAL: Final = 5.0
DEFAULT_RESYNC_INTERVAL: Final = 300.0
DEFAULT_REDIS_CLEANUP_TIMEOUT: Final = 60.0
"""Seconds a deleted agent waits for an unreachable Redis before its keys are left behind."""
DEFAULT_PEERING_LIFETIME: Final = 10
"""Seconds a peering record stays valid: a standby takes over within this after a crash."""


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class RuntimeDefaults(_Settings):
    """What the operator renders into agents that do not say otherwise."""

    image: str = DEFAULT_IMAGE
    """Runtime image."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    """Pull policy of the runtime image; none leaves Kubernetes' rule for the tag."""
    redis_secret: api.SecretKeyRef | None = None
    """Secret (in each agent's namespace) with the Redis URL."""
    redis_url: str | None = None
    """Plain Redis URL written into the config when no Secret is named (development only)."""
    postgres_secret: api.SecretKeyRef | None = None
    """Secret (in each agent's namespace) with the PostgreSQL DSN."""
    postgres_dsn: str | None = None
    """Plain DSN written into the config when no Secret is named (development only)."""
    otlp_endpoint: config.HttpUrl | None = None
    """OTLP/HTTP endpoint for traces."""
    resources: api.ResourceRequirements = DEFAULT_RESOURCES
    """Resources of the runtime container."""
    run_as: int = Field(default=DEFAULT_RUN_AS, ge=1)
    """UID, GID and fsGroup of the pods unless the agent's podTemplate sets them."""


class OperatorSettings(_Settings):
    """How the operator runs."""

    namespaces: tuple[str, ...] = ()
    """Namespaces to watch; empty watches every namespace."""
    peering: str | None = None
    """Kopf peering object shared with a standby replica; none runs standalone."""
    liveness_port: int | None = Field(default=8081, ge=1, le=65535)
    """Port of ``/healthz`` (Kopf's liveness endpoint); none disables it."""
    metrics_port: int | None = Field(default=8080, ge=1, le=65535)
    """Port of ``/metrics``; none disables it."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Minimum level of the JSON logs."""
    autoscale_interval: float = Field(default=DEFAULT_AUTOSCALE_INTERVAL, gt=0)
    """Seconds between two autoscaler decisions of an agent with ``spec.scaling``."""
    resync_interval: float = Field(default=DEFAULT_RESYNC_INTERVAL, ge=0)
    """Seconds between full reconciles of an unchanged agent (drift, ``systemPromptFrom``
    edits); 0 disables them."""
    redis_url: str | None = None
    """Redis the autoscaler reads backlogs from, for agents that name no Redis Secret; none
    reads the runtime's default Redis Secret."""
    read_secrets: bool = True
    """Whether the autoscaler may read an agent's Redis URL from its Secret. False: it never
    reads a Secret and uses ``redis_url`` for every agent (the operator then needs no RBAC on
    Secrets at all)."""
    watch_server_timeout: int = Field(default=300, gt=0)
    """Seconds the API server keeps one watch request open (then Kopf re-watches)."""
    watch_client_timeout: float = Field(default=330, gt=0)
    """Seconds after which the operator gives up on a silent watch connection."""
    redis_cleanup_timeout: float = Field(default=DEFAULT_REDIS_CLEANUP_TIMEOUT, ge=0)
    """Seconds the deletion of an agent retries deleting its Redis keys while Redis is
    unreachable; then the keys are left (a warning Event says which) and the deletion
    completes."""
    peering_lifetime: int = Field(default=DEFAULT_PEERING_LIFETIME, ge=2, le=3600)
    """Seconds a replica's Kopf peering record stays valid without a keepalive (Kopf touches it
    5-10 s before it expires): the longest a standby waits after the active replica died."""
    request_timeout: float = Field(default=30, gt=0)
    """Timeout of one API request made by the reconciler."""
    runtime: RuntimeDefaults = RuntimeDefaults()
    """Defaults rendered into agents."""
