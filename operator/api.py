"""The custom resources' API: ``AgentDeployment`` and ``AgentPolicy`` (``pilothouse.dev/v1alpha1``).

These pydantic models are the single source of the CRDs (``pilothouse.operator.crdgen`` turns
them into ``crds/*.yaml``: field docstrings become the schema descriptions ``kubectl explain``
shows, ``x-kubernetes-validations`` below become CEL rules the API server enforces) and of the
operator's own parsing of what the API server hands it. Where a section has the runtime's shape
it *is* the runtime's model (``pilothouse.runtime.config``): reliability, workers, sessions,
telemetry, fallback, pricing, and the whole AgentPolicy spec, so the CRD and the runtime cannot
drift. Sections that differ name Secrets instead of environment variables; the builders map one
onto the other. Statuses are in :mod:`pilothouse.operator.statuses`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, model_validator
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

from pilothouse.operator import selectors
from pilothouse.runtime import config

__all__ = [
    "AGENT_KIND",
    "API_VERSION",
    "GROUP",
    "POLICY_KIND",
    "VERSION",
    "AgentDeploymentSpec",
    "AgentPolicySpec",
    "AgentSpec",
    "AuditSpec",
    "ConfigMapKeyRef",
    "EgressRule",
    "HeaderFromSecret",
    "IPBlock",
    "LocalObjectReference",
    "ModelSpec",
    "NetworkPeer",
    "NetworkPort",
    "NetworkSpec",
    "PodSecurityOverrides",
    "PodTemplateOverrides",
    "PolicyRef",
    "RedisSpec",
    "ResourceRequirements",
    "ScalingSpec",
    "SecretKeyRef",
    "ServerSpec",
    "SystemPromptSource",
    "Toleration",
    "ToolSpec",
]

GROUP: Final = "pilothouse.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
AGENT_KIND: Final = "AgentDeployment"
AGENT_PLURAL: Final = "agentdeployments"
POLICY_KIND: Final = "AgentPolicy"
POLICY_PLURAL: Final = "agentpolicies"

DNS_LABEL_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
CONFIG_KEY_PATTERN: Final = r"^[-._a-zA-Z0-9]+$"
HEADER_NAME_PATTERN: Final = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
QUANTITY_PATTERN: Final = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
MAX_LIST: Final = 64
MAX_PROMPT: Final = 768 * 1024
"""Longest system prompt (characters): the runtime ConfigMap that carries it holds 1 MiB."""
MAX_TEXT: Final = 16 * 1024
"""Longest tool description or canned answer (characters)."""
"""Bound of the lists CEL rules look at (keeps the API server's cost estimate low)."""


def _rule(rule: str, message: str, field_path: str | None = None) -> JsonDict:
    out: JsonDict = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    return out


class _Model(BaseModel):
    """Frozen, camelCase, strict about unknown keys: the same conventions as the runtime's."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
    )


def _valid_quantity(value: int | str) -> int | str:
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a quantity must not be negative")
        return value
    if not re.match(QUANTITY_PATTERN, value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 256Mi, 2)")
    return value


Quantity = Annotated[
    int | str,
    AfterValidator(_valid_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]
"""A Kubernetes resource quantity: ``500m``, ``256Mi``, ``2``."""

_SpreadConstraint = Annotated[
    dict[str, Any], Field(description="A topology spread constraint, as in a Pod spec.")
]
ObjectName = Annotated[str, Field(pattern=DNS_SUBDOMAIN_PATTERN, min_length=1, max_length=253)]


# ------------------------------------------------------------------------------- references


class SecretKeyRef(_Model):
    """A key of a Secret in the agent's namespace; its value reaches the pod as an environment
    variable, never through the config."""

    name: ObjectName
    """Name of the Secret."""
    key: str = Field(pattern=CONFIG_KEY_PATTERN, min_length=1, max_length=253)
    """Key within the Secret."""


class ConfigMapKeyRef(_Model):
    """A key of a ConfigMap in the agent's namespace."""

    name: ObjectName
    """Name of the ConfigMap."""
    key: str = Field(pattern=CONFIG_KEY_PATTERN, min_length=1, max_length=253)
    """Key within the ConfigMap."""


class LocalObjectReference(_Model):
    """A named object in the agent's namespace."""

    name: ObjectName
    """Name of the object."""


class PolicyRef(_Model):
    """An AgentPolicy in the agent's namespace, by name."""

    name: ObjectName
    """Name of the AgentPolicy."""


# ---------------------------------------------------------------------------- model and tools


class HeaderFromSecret(_Model):
    """A request header whose value is a Secret's key (an API token, say)."""

    name: str = Field(pattern=HEADER_NAME_PATTERN, max_length=256)
    """Header name, e.g. ``Authorization``."""
    secret_key_ref: SecretKeyRef
    """Secret key holding the header's value."""


class ModelSpec(_Model):
    """An OpenAI-compatible Chat Completions endpoint and the model to ask there."""

    endpoint: str = Field(pattern=config.URL_PATTERN, max_length=2048)
    """Base URL of the API, e.g. ``https://api.openai.com/v1``."""
    name: str = Field(min_length=1, max_length=256)
    """Model name sent in the request, e.g. ``gpt-4o-mini``."""
    api_key_secret_ref: SecretKeyRef | None = None
    """Secret key holding the API key; none sends no key (e.g. a local vLLM)."""
    timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    """Timeout of one HTTP call to the model."""
    pricing: config.ModelPricing = config.ModelPricing()
    """Token prices, for cost accounting and cost limits."""
    max_output_tokens: int | None = Field(default=None, gt=0)
    """``max_tokens`` sent with each call; none leaves it to the provider."""
    temperature: float | None = Field(default=None, ge=0, le=2)
    """Sampling temperature; none leaves it to the provider."""
    tool_choice: config.ToolChoice | None = None
    """Overrides ``spec.agent.toolChoice`` for this model (some models call tools only when
    asked to)."""
    context_window_tokens: int | None = Field(default=None, gt=0)
    """The model's context size, used to trim session history when the server reports a
    context overflow without saying its limit."""
    api_key_header: config.HeaderName = "Authorization"
    """Header carrying the API key: ``Authorization`` sends ``Bearer <key>``; any other name
    (``api-key`` for Azure OpenAI) sends the key as is."""
    api_version: str | None = Field(default=None, min_length=1, max_length=64)
    """Sent as the ``api-version`` query parameter (Azure OpenAI)."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Static, non-secret request headers (e.g. a gateway's routing header)."""
    headers_from: tuple[HeaderFromSecret, ...] = Field(default=(), max_length=MAX_LIST)
    """Request headers whose values come from Secrets (a gateway's token, say)."""
    ca_bundle_file: str | None = Field(default=None, min_length=1, max_length=4096)
    """PEM file, inside the pod, of the certificate authorities to trust for this endpoint (an
    internal gateway's CA, e.g. baked into the image); none uses the system's trust store."""


class SystemPromptSource(_Model):
    """Where to read the system prompt from instead of writing it inline."""

    config_map_key_ref: ConfigMapKeyRef
    """The ConfigMap key holding the prompt; the operator copies it into the runtime config, so
    a change rolls the pods at the next reconcile (an edit of the agent or the periodic resync)."""


class ToolSpec(_Model):
    """A tool the model may call, executed by the runtime as an HTTP request."""

    name: str = Field(pattern=config.TOOL_NAME_PATTERN)
    """Function name offered to the model (letters, digits, ``_`` and ``-``, at most 64)."""
    description: str = Field(default="", max_length=MAX_TEXT)
    """What the tool does, offered to the model."""
    url: str = Field(pattern=config.URL_PATTERN, max_length=2048)
    """URL called to execute the tool."""
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    """HTTP method; GET sends the arguments as query parameters, others as a JSON body."""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    """JSON Schema of the arguments; calls whose arguments do not validate are not executed."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Static, non-secret request headers."""
    headers_from: tuple[HeaderFromSecret, ...] = Field(default=(), max_length=MAX_LIST)
    """Headers whose values come from Secrets."""
    timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    """Timeout of one tool call."""
    context_on_success: dict[str, Any] = Field(default_factory=dict)
    """Keys merged into the session context when the call succeeds
    (e.g. ``{"return_initiated": true}``)."""


_PROMPT_XOR = "has(self.systemPrompt) != has(self.systemPromptFrom)"
_PROMPT_XOR_MESSAGE = "spec.agent: set exactly one of systemPrompt and systemPromptFrom"


class AgentSpec(_Model):
    """What the agent is: its prompt, models, tools and fallbacks."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [_rule(_PROMPT_XOR, _PROMPT_XOR_MESSAGE)]}
    )

    system_prompt: str | None = Field(default=None, max_length=MAX_PROMPT)
    """System prompt sent first in every conversation (or use ``systemPromptFrom``)."""
    system_prompt_from: SystemPromptSource | None = None
    """Read the system prompt from a ConfigMap key (or use ``systemPrompt``)."""
    model: ModelSpec
    """Primary model."""
    fallback_models: tuple[ModelSpec, ...] = Field(default=(), max_length=8)
    """Tried in order when the primary fails or its circuit breaker is open."""
    fallback: config.FallbackConfig = config.FallbackConfig()
    """Rule-based answer when no model answers."""
    refusal_response: str = Field(
        default=config.DEFAULT_REFUSAL_RESPONSE, min_length=1, max_length=MAX_TEXT
    )
    """Polite answer given when a policy refuses a request."""
    tools: tuple[ToolSpec, ...] = Field(
        default=(),
        max_length=MAX_LIST,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """Tools the model may call; names are unique."""
    tool_choice: config.ToolChoice | None = None
    """``tool_choice`` of the first model call of each request: ``auto``, ``none``,
    ``required`` or a tool's name (forced). Later calls of a request send ``auto`` after a
    forced choice. None leaves it to the provider. Each model's ``toolChoice`` overrides it."""
    max_steps: int = Field(default=8, ge=1, le=100)
    """LLM round trips per request."""
    max_request_tokens: int | None = Field(default=None, ge=1)
    """Tokens (input + output, all LLM calls) one request may use; none: no bound besides
    ``maxSteps``."""
    escalation_response: str = Field(
        default=config.DEFAULT_ESCALATION_RESPONSE, min_length=1, max_length=MAX_TEXT
    )
    """Answer given while an action waits for a human's approval."""
    incomplete_response: str = Field(
        default=config.DEFAULT_INCOMPLETE_RESPONSE, min_length=1, max_length=MAX_TEXT
    )
    """Answer given when a request stops before an answer (``maxSteps`` or the token budget)."""

    @model_validator(mode="after")
    def _one_prompt(self) -> AgentSpec:
        if (self.system_prompt is None) == (self.system_prompt_from is None):
            raise ValueError(_PROMPT_XOR_MESSAGE)
        return self


# ------------------------------------------------------------------------------ scaling


_MIN_MAX = "self.minReplicas <= self.maxReplicas"
_MIN_MAX_MESSAGE = "spec.scaling.minReplicas must be less than or equal to spec.scaling.maxReplicas"


class ScalingSpec(_Model):
    """Replicas follow the agent's queue backlog: ``ceil(backlog / targetQueueDepthPerReplica)``
    clamped to [minReplicas, maxReplicas], up at once, down after the stabilization window."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [_rule(_MIN_MAX, _MIN_MAX_MESSAGE, ".minReplicas")]
        }
    )

    min_replicas: int = Field(default=1, ge=1, le=1000)
    """Fewest replicas (at least one pod serves the HTTP API that fills the queue)."""
    max_replicas: int = Field(ge=1, le=1000)
    """Most replicas."""
    target_queue_depth_per_replica: int = Field(default=10, ge=1, le=1_000_000)
    """Backlog (queued plus in-flight requests) one replica is expected to carry."""
    scale_down_stabilization_seconds: int = Field(default=300, ge=0, le=3600)
    """Scale down only to the highest recommendation of this trailing window (as the HPA does),
    so a brief lull does not drop replicas that are needed again a moment later."""
    max_scale_up_step: int | None = Field(default=None, ge=1, le=1000)
    """Most replicas added by one decision; none scales up to the recommendation at once."""

    @model_validator(mode="after")
    def _bounds(self) -> ScalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(_MIN_MAX_MESSAGE)
        return self


# ---------------------------------------------------------------------- dependencies of the pods


class RedisSpec(_Model):
    """The Redis holding the agent's queue, breakers, sessions and counters."""

    url_secret_ref: SecretKeyRef | None = None
    """Secret key holding the Redis URL (it may carry a password); defaults to the operator's
    ``--runtime-redis-secret``."""
    key_prefix: str = Field(default="pilothouse", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    """Prefix of every key the agent writes."""


class AuditSpec(_Model):
    """The decision history and audit trail in PostgreSQL."""

    enabled: bool = True
    """Write every decision to PostgreSQL."""
    postgres_secret_ref: SecretKeyRef | None = None
    """Secret key holding the PostgreSQL DSN; defaults to the operator's
    ``--runtime-postgres-secret``."""
    retention_days: int = Field(default=30, ge=1, le=3650)
    """Records older than this are deleted (a policy's audit settings may override it)."""


class ServerSpec(_Model):
    """The runtime's HTTP API."""

    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    """Largest request body accepted (413 beyond)."""
    max_input_chars: int = Field(default=32_000, ge=1)
    """Largest ``input`` accepted (422 beyond); policies may set lower limits."""
    auth_tokens_secret_ref: SecretKeyRef | None = None
    """Secret key holding the token file (``TOKEN IDENTITY ROLE[,ROLE]`` lines); setting it
    makes ``authentication`` default to ``tokens``."""
    authentication: Literal["kubernetes", "tokens", "none"] | None = None
    """Who may call the API. ``kubernetes`` (the default): callers send Kubernetes tokens,
    checked with TokenReview and authorised by RBAC on ``agentdeployments/requests``,
    ``/history``, ``/approvals`` and ``/endusers`` (the operator lets the agent's
    ServiceAccount make those reviews). ``tokens``: the token file of ``authTokensSecretRef``.
    ``none``: anyone who reaches the API may do anything (the status says so)."""

    @model_validator(mode="after")
    def _tokens_need_a_file(self) -> ServerSpec:
        if self.authentication == "tokens" and self.auth_tokens_secret_ref is None:
            raise ValueError("authentication: tokens needs authTokensSecretRef")
        if self.authentication in ("kubernetes", "none") and self.auth_tokens_secret_ref:
            raise ValueError(
                f"authentication: {self.authentication} does not use authTokensSecretRef; "
                "remove it or set authentication: tokens"
            )
        return self

    @property
    def auth_mode(self) -> str:
        """The authentication in force: ``kubernetes``, ``tokens`` or ``none``."""
        if self.authentication is not None:
            return self.authentication
        return "tokens" if self.auth_tokens_secret_ref is not None else "kubernetes"


# ------------------------------------------------------------------------------------ the pods


class ResourceRequirements(_Model):
    """CPU and memory of the runtime container (the operator's defaults when omitted)."""

    requests: dict[str, Quantity] = Field(default_factory=dict)
    """Minimum resources, e.g. ``{cpu: 100m, memory: 256Mi}``."""
    limits: dict[str, Quantity] = Field(default_factory=dict)
    """Maximum resources, e.g. ``{memory: 512Mi}``."""


class Toleration(_Model):
    """Lets the pods schedule onto nodes with a matching taint."""

    key: str | None = Field(default=None, max_length=316)
    """Taint key; empty with ``operator: Exists`` matches every taint."""
    operator: Literal["Exists", "Equal"] = "Equal"
    """``Equal`` compares the value; ``Exists`` matches any value."""
    value: str | None = Field(default=None, max_length=63)
    """Taint value for ``Equal``."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to match; none matches every effect."""
    toleration_seconds: int | None = None
    """For ``NoExecute``: how long the pod stays bound after the taint appears."""


class PodSecurityOverrides(_Model):
    """The pod security settings an agent may choose. The rest is fixed by the operator to meet
    the ``restricted`` Pod Security Standard (non-root, no privilege escalation, no
    capabilities, read-only root filesystem, RuntimeDefault seccomp)."""

    run_as_user: int | None = Field(default=None, ge=1, le=2_147_483_647)
    """UID of the runtime process (never 0)."""
    run_as_group: int | None = Field(default=None, ge=0, le=2_147_483_647)
    """GID of the runtime process."""
    fs_group: int | None = Field(default=None, ge=0, le=2_147_483_647)
    """GID that owns mounted volumes."""
    fs_group_change_policy: Literal["OnRootMismatch", "Always"] | None = None
    """When volume ownership is changed to ``fsGroup``."""
    supplemental_groups: tuple[int, ...] = Field(default=(), max_length=32)
    """Extra GIDs of the runtime process."""


class PodTemplateOverrides(_Model):
    """Scheduling and metadata of the agent's pods."""

    labels: dict[selectors.LabelKey, selectors.LabelValue] = Field(
        default_factory=dict, max_length=MAX_LIST
    )
    """Extra pod labels (the operator's own labels win on conflict)."""
    annotations: dict[str, str] = Field(default_factory=dict)
    """Extra pod annotations (the operator's own annotations win on conflict)."""
    node_selector: dict[str, str] = Field(default_factory=dict)
    """Schedule only onto nodes with these labels."""
    tolerations: tuple[Toleration, ...] = Field(default=(), max_length=MAX_LIST)
    """Taints the pods tolerate."""
    affinity: dict[str, Any] | None = None
    """Node and pod (anti-)affinity, as in a Pod spec."""
    topology_spread_constraints: tuple[_SpreadConstraint, ...] = Field(default=(), max_length=16)
    """How pods spread across zones and nodes, as in a Pod spec."""
    priority_class_name: str | None = Field(default=None, max_length=253)
    """PriorityClass of the pods."""
    service_account_name: str | None = Field(default=None, pattern=DNS_SUBDOMAIN_PATTERN)
    """Run as this existing ServiceAccount instead of one the operator creates."""
    image_pull_secrets: tuple[LocalObjectReference, ...] = Field(default=(), max_length=16)
    """Secrets for pulling the image from a private registry."""
    security_context: PodSecurityOverrides = PodSecurityOverrides()
    """User and group ids (within the restricted Pod Security Standard)."""


# -------------------------------------------------------------------------------- the agent


_REPLICAS_XOR = "!(has(self.replicas) && has(self.scaling))"
_REPLICAS_XOR_MESSAGE = (
    "spec.replicas cannot be set together with spec.scaling: the autoscaler owns the replica "
    "count (remove spec.replicas, or remove spec.scaling to scale by hand)"
)


class IPBlock(_Model):
    """Addresses outside the cluster's pods (or the API server's)."""

    cidr: str = Field(min_length=1, max_length=64)
    """An IPv4 or IPv6 CIDR, e.g. ``10.0.0.0/16``."""
    except_: tuple[str, ...] = Field(default=(), alias="except", max_length=32)
    """CIDRs inside ``cidr`` to leave out."""


class NetworkPeer(_Model):
    """Who (or where): pods selected by namespace and pod labels, or addresses. A peer with
    both selectors means those pods in those namespaces."""

    namespace_selector: selectors.LabelSelector | None = None
    """Namespaces (``{}``: all); none with ``podSelector``: the agent's namespace."""
    pod_selector: selectors.LabelSelector | None = None
    """Pods (``{}``: all) in the namespaces selected."""
    ip_block: IPBlock | None = None
    """Addresses (exclusive with the selectors)."""

    @model_validator(mode="after")
    def _one_kind(self) -> NetworkPeer:
        selects = self.namespace_selector is not None or self.pod_selector is not None
        if selects == (self.ip_block is not None):
            raise ValueError("give namespaceSelector and/or podSelector, or ipBlock")
        return self


class NetworkPort(_Model):
    """A port of a destination."""

    port: int = Field(ge=1, le=65535)
    """Port number."""
    protocol: Literal["TCP", "UDP"] = "TCP"
    """Protocol."""


class EgressRule(_Model):
    """Somewhere the agent must reach: Redis, PostgreSQL, the model and tool endpoints, the
    Kubernetes API (Kubernetes authentication)."""

    to: tuple[NetworkPeer, ...] = Field(min_length=1, max_length=32)
    """Destinations."""
    ports: tuple[NetworkPort, ...] = Field(default=(), max_length=32)
    """Ports; none: every port of those destinations."""


class NetworkSpec(_Model):
    """The agent's NetworkPolicy: who may call it, and (with ``egress``) where it may go."""

    api_from: tuple[NetworkPeer, ...] = Field(default=(), max_length=32)
    """Who may connect to the API port; none: pods of the agent's own namespace only."""
    metrics_from: tuple[NetworkPeer, ...] = Field(default=(), max_length=32)
    """Who may scrape metrics (e.g. the monitoring namespace). Metrics share the API's port, so
    these peers reach that port too; the API still authenticates every call."""
    egress: tuple[EgressRule, ...] | None = Field(default=None, max_length=32)
    """Where the agent may connect, besides DNS (always allowed); none (the field absent)
    leaves egress open."""


class AgentDeploymentSpec(_Model):
    """An agent and how it runs: the operator turns it into a ConfigMap with the runtime config,
    a Deployment, a Service, a ServiceAccount and a PodDisruptionBudget."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [_rule(_REPLICAS_XOR, _REPLICAS_XOR_MESSAGE, ".replicas")]
        }
    )

    image: str | None = Field(default=None, min_length=1, max_length=1024)
    """Runtime image; defaults to the operator's ``--runtime-image``."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    """When the kubelet pulls the image; defaults to Kubernetes' rule for the tag."""
    agent: AgentSpec
    """The agent: prompt, models, tools, fallbacks."""
    reliability: config.ReliabilityConfig = config.ReliabilityConfig()
    """Timeouts, retries and the circuit breaker shared by all replicas."""
    workers: config.WorkerConfig = config.WorkerConfig()
    """The durable queue and the worker pool of each pod."""
    sessions: config.SessionConfig = config.SessionConfig()
    """Multi-turn conversation state."""
    scaling: ScalingSpec | None = None
    """Scale replicas from the queue backlog; omit to run ``replicas`` pods."""
    replicas: int | None = Field(default=None, ge=0, le=1000)
    """Fixed number of pods when ``scaling`` is omitted (default 1); ``kubectl scale`` sets it."""
    policy_refs: tuple[PolicyRef, ...] = Field(
        default=(),
        max_length=MAX_LIST,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """AgentPolicies to enforce, in evaluation order (policies whose ``targetSelector`` matches
    this agent's labels apply too, after these). A missing one stops rollouts until it exists."""
    redis: RedisSpec = RedisSpec()
    """Redis connection."""
    audit: AuditSpec = AuditSpec()
    """Audit trail."""
    telemetry: config.TelemetryConfig = config.TelemetryConfig()
    """Logs, metrics, traces; ``otlpEndpoint`` defaults to the operator's."""
    server: ServerSpec = ServerSpec()
    """HTTP API limits and authentication."""
    network: NetworkSpec | None = None
    """A NetworkPolicy for the agent's pods: ingress to the API only from the peers named,
    egress (when given) only where the agent must go. None: no NetworkPolicy."""
    resources: ResourceRequirements | None = None
    """CPU and memory of the runtime container; the operator's defaults when omitted."""
    pod_template: PodTemplateOverrides = PodTemplateOverrides()
    """Scheduling, metadata and ids of the pods."""

    @model_validator(mode="after")
    def _one_replica_writer(self) -> AgentDeploymentSpec:
        if self.replicas is not None and self.scaling is not None:
            raise ValueError(_REPLICAS_XOR_MESSAGE)
        return self


# ------------------------------------------------------------------------------------ policies


class AgentPolicySpec(config.PolicySpec):
    """Guard rails for agents: the runtime's policy spec, plus which agents it applies to.

    A policy applies to the agents naming it in ``policyRefs`` and to those ``targetSelector``
    matches; every section is optional and absent sections do not apply."""

    target_selector: selectors.LabelSelector | None = None
    """Also apply to the AgentDeployments of this namespace whose labels match."""

    def rules(self) -> config.PolicySpec:
        """The policy without its targeting: what the runtime enforces."""
        return config.PolicySpec.model_validate(
            self.model_dump(by_alias=True, exclude={"target_selector"}, exclude_unset=True)
        )
