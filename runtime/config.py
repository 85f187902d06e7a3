"""RuntimeConfig: the contract between the operator and the agent pods.

The operator renders one of these per AgentDeployment (with every applicable AgentPolicy
resolved into ``policies``) into a ConfigMap; ``pilothouse serve --config FILE`` reads it.
The operator imports these models, so the contract is type-checked on both sides, and the
AgentPolicy CRD's ``spec`` schema is generated from :class:`PolicySpec` itself.

Keys are camelCase, as in Kubernetes manifests; snake_case names are accepted too. Unknown
keys are errors. Secrets never appear here: the config names environment variables
(``apiKeyEnv``, ``urlEnv``...) that the pod gets from Secret references.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from pilothouse.runtime import errors

__all__ = [
    "AuditConfig",
    "CircuitBreakerConfig",
    "CompliancePolicy",
    "CostLimitPolicy",
    "Enforcement",
    "EscalationPolicy",
    "FallbackConfig",
    "FallbackRule",
    "ModelConfig",
    "ModelPricing",
    "PolicyAuditSettings",
    "PolicySpec",
    "RateLimitPolicy",
    "RedisConfig",
    "ReliabilityConfig",
    "ResolvedPolicy",
    "ResourceLimitsPolicy",
    "RetryConfig",
    "RuntimeConfig",
    "SafetyPolicy",
    "ServerConfig",
    "SessionConfig",
    "TelemetryConfig",
    "ToolConfig",
    "WorkerConfig",
    "load_config",
    "parse_config",
]

DEFAULT_FALLBACK_RESPONSE = "We are having trouble right now, a human will follow up."
DEFAULT_REFUSAL_RESPONSE = "I'm sorry, but I can't help with that request."
DEFAULT_ESCALATION_RESPONSE = (
    "This needs a person's approval before I can continue; you will hear back once it is reviewed."
)
DEFAULT_INCOMPLETE_RESPONSE = (
    "I'm sorry, I could not finish this request. A human will follow up if needed."
)
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
TOOL_NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
HEADER_NAME_PATTERN = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"
TOOL_CHOICES = ("auto", "required", "none")
TOOL_CHOICE_PATTERN = r"^(auto|required|none|[a-zA-Z0-9_-]{1,64})$"


def _no_credentials(value: str) -> str:
    """URLs end up in logs, metrics labels and audit records: credentials belong in Secrets."""
    if "@" in urlsplit(value).netloc:
        raise ValueError(
            "must not carry credentials (user:password@); reference a Secret instead "
            "(apiKeySecretRef, headersFrom)"
        )
    return value


def _valid_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as e:
        raise ValueError(f"invalid regular expression {value!r}: {e}") from e
    return value


Regex = Annotated[str, AfterValidator(_valid_regex)]
URL_PATTERN: Final = (
    r"^https?://([^\s/?#@]*@)?"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*)"
    r"(:[0-9]{1,5})?([/?#]\S*)?$"
)
"""An http(s) URL with a host name or [IPv6] address, an optional port, and no white space
(checked by the API server too: ``https://exa mple.com/v1`` is refused naming the field)."""
HttpUrl = Annotated[str, Field(pattern=URL_PATTERN), AfterValidator(_no_credentials)]
EnvName = Annotated[str, Field(pattern=ENV_NAME_PATTERN)]
HeaderName = Annotated[str, Field(pattern=HEADER_NAME_PATTERN, max_length=128)]
ToolChoice = Annotated[str, Field(pattern=TOOL_CHOICE_PATTERN)]
"""``auto``, ``required``, ``none``, or the name of one configured tool."""


class _Model(BaseModel):
    """Frozen, camelCase, strict about unknown keys."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
    )


# --------------------------------------------------------------------------- models and tools


class ModelPricing(_Model):
    """Prices used to compute the cost of a call from its token usage."""

    input_per_million_tokens: float = Field(default=0.0, ge=0)
    """USD per million prompt (input) tokens."""
    output_per_million_tokens: float = Field(default=0.0, ge=0)
    """USD per million completion (output) tokens."""

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """The cost in USD of a call with this usage."""
        return (
            input_tokens * self.input_per_million_tokens
            + output_tokens * self.output_per_million_tokens
        ) / 1_000_000


class ModelConfig(_Model):
    """An OpenAI-compatible Chat Completions endpoint and the model to ask there."""

    endpoint: HttpUrl
    """Base URL of the API, e.g. ``https://api.openai.com/v1``."""
    name: str = Field(min_length=1)
    """Model name sent in the request, e.g. ``gpt-4o-mini``."""
    api_key_env: EnvName | None = None
    """Environment variable holding the API key (set from a Secret); none sends no key."""
    timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    """Timeout of one HTTP call to the model."""
    pricing: ModelPricing = ModelPricing()
    """Token prices, for cost accounting and cost limits."""
    max_output_tokens: int | None = Field(default=None, gt=0)
    """``max_tokens`` sent with each call; none leaves it to the provider."""
    temperature: float | None = Field(default=None, ge=0, le=2)
    """Sampling temperature; none leaves it to the provider."""
    tool_choice: ToolChoice | None = None
    """Overrides the agent's ``toolChoice`` for this model (some models call tools only when
    asked to)."""
    context_window_tokens: int | None = Field(default=None, gt=0)
    """The model's context size, used to trim session history when the server reports a
    context overflow without saying its limit; none trusts the server's message."""
    api_key_header: HeaderName = "Authorization"
    """Header carrying the API key: ``Authorization`` sends ``Bearer <key>``; any other name
    (``api-key`` for Azure OpenAI, ``x-api-key``...) sends the key as is."""
    api_version: str | None = Field(default=None, min_length=1, max_length=64)
    """Sent as the ``api-version`` query parameter (Azure OpenAI); none sends no query."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Static, non-secret request headers (e.g. a gateway's routing header)."""
    headers_from_env: dict[str, EnvName] = Field(default_factory=dict)
    """Header name -> environment variable holding its value (set from a Secret)."""
    ca_bundle_file: str | None = Field(default=None, min_length=1, max_length=4096)
    """PEM file of the certificate authorities to trust for this endpoint (an internal
    gateway's CA); none uses the system's trust store."""

    @property
    def key(self) -> str:
        """Identifies this endpoint+model, e.g. for its circuit breaker."""
        return f"{self.endpoint.rstrip('/')}#{self.name}"


class ToolConfig(_Model):
    """A tool the model may call, executed as an HTTP request."""

    name: str = Field(pattern=TOOL_NAME_PATTERN)
    """Function name offered to the model."""
    description: str = ""
    """What the tool does, offered to the model."""
    url: HttpUrl
    """URL called to execute the tool."""
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    """HTTP method; GET sends the arguments as query parameters, others as a JSON body."""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    """JSON Schema of the arguments; calls whose arguments do not validate are not executed."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Static, non-secret request headers."""
    headers_from_env: dict[str, EnvName] = Field(default_factory=dict)
    """Header name -> environment variable holding its value (set from a Secret)."""
    timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    """Timeout of one tool call."""
    context_on_success: dict[str, Any] = Field(default_factory=dict)
    """Keys merged into the session context when the call succeeds
    (e.g. ``{"return_initiated": true}``)."""

    @field_validator("parameters")
    @classmethod
    def _parameters_is_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        from jsonschema import exceptions, validators

        try:
            validators.validator_for(value).check_schema(value)
        except exceptions.SchemaError as e:
            raise ValueError(f"not a valid JSON Schema: {e.message}") from e
        return value


class FallbackRule(_Model):
    """A canned answer for inputs matching a pattern, used when no model can answer."""

    pattern: Regex
    """Regular expression searched (case-insensitively) in the user's input."""
    response: str = Field(min_length=1)
    """Answer given when the pattern matches."""


class FallbackConfig(_Model):
    """The rule-based answer of last resort."""

    response: str = Field(default=DEFAULT_FALLBACK_RESPONSE, min_length=1)
    """Answer given when no model answered and no rule matched."""
    rules: tuple[FallbackRule, ...] = ()
    """Pattern-specific answers, first match wins."""


# --------------------------------------------------------------------------------- reliability


class RetryConfig(_Model):
    """Retries of transient LLM failures (timeouts, connection errors, 429, 5xx)."""

    attempts: int = Field(default=3, ge=1, le=10)
    """Total attempts per model, including the first."""
    initial_backoff_seconds: float = Field(default=2.0, ge=0)
    """Backoff before the second attempt; doubles each attempt, with full jitter."""
    max_backoff_seconds: float = Field(default=10.0, ge=0)
    """Upper bound of one backoff (and of an honoured ``Retry-After``)."""

    @model_validator(mode="after")
    def _bounds(self) -> RetryConfig:
        if self.max_backoff_seconds < self.initial_backoff_seconds:
            raise ValueError("maxBackoffSeconds must be >= initialBackoffSeconds")
        return self


class CircuitBreakerConfig(_Model):
    """The circuit breaker per (agent, model endpoint), shared by all replicas through Redis."""

    failure_threshold: int = Field(default=5, ge=1)
    """Failures within ``windowSeconds`` that open the breaker."""
    window_seconds: float = Field(default=60.0, gt=0)
    """Window in which failures are counted."""
    recovery_timeout_seconds: float = Field(default=60.0, gt=0)
    """Time an open breaker waits before letting probes through (half-open)."""
    half_open_max_probes: int = Field(default=1, ge=1)
    """Calls let through while half-open; a success closes, a failure re-opens."""


class ReliabilityConfig(_Model):
    """Timeouts, retries and the circuit breaker."""

    retry: RetryConfig = RetryConfig()
    """Retry policy for LLM calls."""
    circuit_breaker: CircuitBreakerConfig = CircuitBreakerConfig()
    """Circuit breaker settings."""
    request_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    """Deadline of a whole request; propagates into every call it makes."""


# ------------------------------------------------------------------------- queue and workers


class WorkerConfig(_Model):
    """The durable queue and the worker pool."""

    concurrency: int = Field(default=20, ge=1, le=1000)
    """Requests processed concurrently by one pod."""
    queue_max_length: int = Field(default=1000, ge=1)
    """Backlog bound of the agent's stream; beyond it new requests get 429."""
    visibility_timeout_seconds: float = Field(default=60.0, gt=0)
    """A delivered entry unacknowledged this long is reclaimed by another worker."""
    max_deliveries: int = Field(default=5, ge=1)
    """Deliveries after which an entry goes to the dead-letter stream."""
    result_ttl_seconds: int = Field(default=3600, ge=1)
    """How long a result stays readable by ``GET /v1/requests/{id}``."""
    shutdown_grace_seconds: float = Field(default=25.0, ge=0)
    """Time given to in-flight work on SIGTERM."""


class SessionConfig(_Model):
    """Multi-turn session state in Redis."""

    ttl_seconds: int = Field(default=86400, ge=1)
    """Idle time after which a session is forgotten."""
    max_messages: int = Field(default=50, ge=2)
    """Messages kept per session (oldest dropped first)."""
    max_context_bytes: int = Field(default=65536, ge=256)
    """Size bound of a session's context dict, serialised."""


class RedisConfig(_Model):
    """Where the queue, breakers, sessions and counters live."""

    url_env: EnvName = "PILOTHOUSE_REDIS_URL"
    """Environment variable holding the Redis URL (it may carry a password)."""
    url: str | None = None
    """URL used when the variable is unset (no secrets here: development only)."""
    key_prefix: str = "pilothouse"
    """Prefix of every key Pilothouse writes."""

    def resolve_url(self, environ: Mapping[str, str] | None = None) -> str:
        env = os.environ if environ is None else environ
        url = env.get(self.url_env) or self.url
        if not url:
            raise errors.ConfigError(
                f"redis: set the environment variable {self.url_env} or redis.url"
            )
        return url


class AuditConfig(_Model):
    """The decision history and audit trail in PostgreSQL."""

    enabled: bool = True
    """Whether decisions are written to PostgreSQL."""
    dsn_env: EnvName = "PILOTHOUSE_POSTGRES_DSN"
    """Environment variable holding the PostgreSQL DSN."""
    dsn: str | None = None
    """DSN used when the variable is unset (development only)."""
    retention_days: int = Field(default=30, ge=1)
    """Records older than this are deleted by the retention job."""
    spool_dir: str = "/var/lib/pilothouse/spool"
    """Local append-only spool used while PostgreSQL is unreachable."""
    batch_size: int = Field(default=500, ge=1)
    """Records written per batch."""
    flush_interval_seconds: float = Field(default=0.5, gt=0)
    """Longest a record waits before its batch is written."""
    max_buffered_records: int = Field(default=50_000, ge=1)
    """Memory bound of the writer; beyond it records go to the spool."""

    def resolve_dsn(self, environ: Mapping[str, str] | None = None) -> str:
        env = os.environ if environ is None else environ
        dsn = env.get(self.dsn_env) or self.dsn
        if not dsn:
            raise errors.ConfigError(
                f"audit: set the environment variable {self.dsn_env} or audit.dsn"
            )
        return dsn


class TelemetryConfig(_Model):
    """Logs, metrics and traces. Standard ``OTEL_*`` variables override these."""

    otlp_endpoint: HttpUrl | None = None
    """OTLP/HTTP endpoint for traces; none disables export."""
    service_name: str | None = None
    """``service.name`` of spans; defaults to ``pilothouse-<agent>``."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Minimum level of JSON logs."""


SERVICEACCOUNT_DIR: Final = "/var/run/secrets/kubernetes.io/serviceaccount"
"""Where Kubernetes mounts a pod's ServiceAccount token and the cluster CA."""


class KubernetesAuthConfig(_Model):
    """Callers prove who they are with a Kubernetes token; RBAC says what they may do.

    Each token is checked with a TokenReview, each permission with a SubjectAccessReview on a
    subresource of this AgentDeployment (``create agentdeployments/requests``, ``get
    agentdeployments/history``, ``update agentdeployments/approvals``, ``impersonate
    agentdeployments/endusers``); answers are cached briefly."""

    enabled: bool = False
    """Turn it on (the operator does, for every agent it runs)."""
    api_server: str | None = None
    """The API server's URL; defaults to ``https://$KUBERNETES_SERVICE_HOST:$..._PORT``."""
    token_file: str = f"{SERVICEACCOUNT_DIR}/token"
    """The agent's own ServiceAccount token, which makes the reviews (re-read when rotated)."""
    ca_file: str | None = f"{SERVICEACCOUNT_DIR}/ca.crt"
    """CA bundle of the API server's certificate."""
    audiences: tuple[str, ...] = ()
    """Audiences a caller's token must be issued for; none: the API server's own."""
    cache_seconds: float = Field(default=60.0, ge=0, le=600)
    """How long an authenticated token or a granted permission is remembered."""
    denied_cache_seconds: float = Field(default=5.0, ge=0, le=600)
    """How long a rejected token or a denied permission is remembered."""


class ServerConfig(_Model):
    """The runtime's HTTP API."""

    host: str = "0.0.0.0"
    """Address to listen on."""
    port: int = Field(default=8080, ge=0, le=65535)
    """Port to listen on."""
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    """Largest request body accepted (413 beyond)."""
    max_input_chars: int = Field(default=32_000, ge=1)
    """Largest ``input`` accepted by the API (422 beyond); policies may set lower limits."""
    auth_tokens_file: str | None = None
    """File of ``TOKEN IDENTITY ROLE[,ROLE...]`` lines (a mounted Secret), re-read when it
    changes: authentication without Kubernetes."""
    kubernetes_auth: KubernetesAuthConfig = KubernetesAuthConfig()
    """Authentication with Kubernetes tokens (TokenReview) and RBAC (SubjectAccessReview)."""

    @model_validator(mode="after")
    def _one_authentication(self) -> ServerConfig:
        if self.auth_tokens_file and self.kubernetes_auth.enabled:
            raise ValueError("choose one authentication: authTokensFile or kubernetesAuth")
        return self

    @property
    def authentication(self) -> str:
        """``kubernetes``, ``tokens`` or ``none``."""
        if self.kubernetes_auth.enabled:
            return "kubernetes"
        return "tokens" if self.auth_tokens_file else "none"


# ------------------------------------------------------------------------------------ policies


class Enforcement(StrEnum):
    """How a policy's verdicts take effect."""

    ENFORCE = "enforce"
    DRY_RUN = "dryRun"


class CostLimitPolicy(_Model):
    """Spend over a rolling hour and/or day, of the whole agent or of each end user."""

    max_usd_per_hour: float | None = Field(default=None, gt=0)
    """Calls whose estimate would take the last hour's spend past this are denied."""
    max_usd_per_day: float | None = Field(default=None, gt=0)
    """Calls whose estimate would take the last 24 hours' spend past this are denied."""
    per: Literal["agent", "user"] = "agent"
    """Whose spend: the whole agent's, or each end user's (the authenticated caller, or the
    end user a caller with the delegate role names)."""

    @model_validator(mode="after")
    def _some_limit(self) -> CostLimitPolicy:
        if self.max_usd_per_hour is None and self.max_usd_per_day is None:
            raise ValueError("set maxUsdPerHour, maxUsdPerDay or both")
        return self


class RateLimitPolicy(_Model):
    """Requests per minute, with a burst allowance."""

    requests_per_minute: int = Field(ge=1)
    """Sustained rate allowed."""
    burst: int = Field(default=0, ge=0)
    """Extra requests allowed at once above the sustained rate."""
    per: Literal["agent", "user", "tenant"] = "agent"
    """Whose requests share a budget: the whole agent, each end user, or each tenant."""


class SafetyPolicy(_Model):
    """Input screening and the tool allowlist."""

    max_input_chars: int | None = Field(default=None, ge=1)
    """Longest input accepted."""
    deny_patterns: tuple[Regex, ...] = ()
    """Inputs matching any of these (case-insensitive) are refused."""
    block_prompt_injection: bool = True
    """Refuse inputs that look like prompt injection ("ignore all previous instructions...")."""
    allowed_tools: tuple[str, ...] | None = None
    """Tools the agent may call; none allows every configured tool."""


class CompliancePolicy(_Model):
    """Personal data and off-limits topics."""

    redact_pii: bool = True
    """Redact emails, phone numbers, card numbers and IBANs in audit records and logs."""
    block_pii: bool = False
    """Refuse inputs that contain personal data."""
    blocked_topics: tuple[str, ...] = ()
    """Topics (words or phrases) the agent must not engage with."""


class ResourceLimitsPolicy(_Model):
    """Per-request bounds."""

    max_steps: int | None = Field(default=None, ge=1)
    """LLM round trips per request."""
    max_tokens: int | None = Field(default=None, ge=1)
    """Tokens (input + output) per request."""
    max_tool_calls: int | None = Field(default=None, ge=0)
    """Tool calls per request."""


class EscalationPolicy(_Model):
    """Actions that need a human's approval."""

    tools: tuple[str, ...] = ()
    """Calls to these tools wait for approval."""
    when_estimated_cost_above_usd: float | None = Field(default=None, ge=0)
    """LLM calls estimated above this cost wait for approval."""
    timeout_seconds: int = Field(default=3600, ge=1)
    """Pending approvals expire after this."""


class PolicyAuditSettings(_Model):
    """What the audit trail keeps."""

    log_inputs: bool = True
    """Store request inputs (redacted if compliance says so)."""
    log_outputs: bool = True
    """Store answers and tool results."""
    retention_days: int | None = Field(default=None, ge=1)
    """Overrides the agent's retention."""


class PolicySpec(_Model):
    """The rules of an AgentPolicy. Every section is optional; absent sections do not apply."""

    enforcement: Enforcement = Enforcement.ENFORCE
    """``enforce`` applies verdicts; ``dryRun`` records what would have been denied and lets it
    through (how a GitOps team rolls a policy out safely)."""
    fail_open: bool = False
    """When checking this policy fails (e.g. Redis down), allow instead of deny."""
    cost_limit: CostLimitPolicy | None = None
    """Spend limit."""
    rate_limit: RateLimitPolicy | None = None
    """Request rate limit."""
    safety: SafetyPolicy | None = None
    """Input screening and tool allowlist."""
    compliance: CompliancePolicy | None = None
    """PII and blocked topics."""
    resource_limits: ResourceLimitsPolicy | None = None
    """Per-request bounds."""
    escalation: EscalationPolicy | None = None
    """Human approval."""
    audit: PolicyAuditSettings | None = None
    """Audit settings."""


class ResolvedPolicy(PolicySpec):
    """An AgentPolicy as resolved into an agent's runtime config."""

    name: str = Field(min_length=1)
    """The AgentPolicy's name."""
    generation: int = Field(default=0, ge=0)
    """The AgentPolicy's ``metadata.generation`` when it was rendered."""


# -------------------------------------------------------------------------------------- agent


class RuntimeConfig(_Model):
    """Everything a runtime pod needs."""

    agent: str = Field(pattern=NAME_PATTERN, max_length=63)
    """The agent's id (its AgentDeployment name)."""
    namespace: str = "default"
    """The agent's namespace; with ``agent`` it names the queue and keys."""
    system_prompt: str = ""
    """System prompt sent first in every conversation."""
    model: ModelConfig
    """Primary model."""
    fallback_models: tuple[ModelConfig, ...] = ()
    """Tried in order when the primary fails or its breaker is open."""
    fallback: FallbackConfig = FallbackConfig()
    """Rule-based answer when no model answers."""
    refusal_response: str = DEFAULT_REFUSAL_RESPONSE
    """Polite answer given when a policy refuses a request."""
    tools: tuple[ToolConfig, ...] = ()
    """Tools the model may call."""
    tool_choice: ToolChoice | None = None
    """``tool_choice`` sent with the first model call of each request (when tools are offered):
    ``auto``, ``none``, ``required`` or a tool's name (that tool is forced). Later calls of the
    same request send ``auto`` after a forced choice (else the model could never answer) and
    ``none`` after ``none``. None leaves it to the provider (its default is ``auto``). Each
    model's ``toolChoice`` overrides this."""
    max_steps: int = Field(default=8, ge=1, le=100)
    """LLM round trips per request."""
    max_request_tokens: int | None = Field(default=None, ge=1)
    """Tokens (input + output, all LLM calls) one request may use; the loop stops with
    status ``failed`` before a call once this is reached. None: no bound besides ``maxSteps``."""
    escalation_response: str = DEFAULT_ESCALATION_RESPONSE
    """Answer given while an action waits for a human's approval."""
    incomplete_response: str = DEFAULT_INCOMPLETE_RESPONSE
    """Answer given when a request stops before an answer (``maxSteps`` or the token budget
    reached); the result's ``fallback_reason`` says which."""
    reliability: ReliabilityConfig = ReliabilityConfig()
    """Timeouts, retries and the breaker."""
    workers: WorkerConfig = WorkerConfig()
    """Queue and worker pool."""
    sessions: SessionConfig = SessionConfig()
    """Multi-turn state."""
    redis: RedisConfig = RedisConfig()
    """Redis connection."""
    audit: AuditConfig = AuditConfig()
    """Audit trail."""
    telemetry: TelemetryConfig = TelemetryConfig()
    """Logs, metrics, traces."""
    server: ServerConfig = ServerConfig()
    """HTTP API."""
    policies: tuple[ResolvedPolicy, ...] = ()
    """AgentPolicies in force, in evaluation order."""

    @model_validator(mode="after")
    def _unique_names(self) -> RuntimeConfig:
        for kind, names in (
            ("tools", [t.name for t in self.tools]),
            ("policies", [p.name for p in self.policies]),
        ):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{kind}: duplicate names {', '.join(dupes)}")
        tool_names = {t.name for t in self.tools}
        choices = [("toolChoice", self.tool_choice)] + [
            (f"models[{i}].toolChoice", m.tool_choice) for i, m in enumerate(self.models)
        ]
        for where, choice in choices:
            if choice is not None and choice not in TOOL_CHOICES and choice not in tool_names:
                raise ValueError(
                    f"{where}: {choice!r} is neither auto, required, none nor a configured tool"
                    f" ({', '.join(sorted(tool_names)) or 'no tools configured'})"
                )
        return self

    @property
    def models(self) -> tuple[ModelConfig, ...]:
        """The primary model followed by the fallbacks, in the order they are tried."""
        return (self.model, *self.fallback_models)

    def tool(self, name: str) -> ToolConfig | None:
        """The tool with this name, if configured."""
        return next((t for t in self.tools if t.name == name), None)

    def to_document(self) -> dict[str, Any]:
        """The config as a JSON-ready dict with camelCase keys (what the operator writes)."""
        return self.model_dump(mode="json", by_alias=True, exclude_defaults=True)


# ------------------------------------------------------------------------------------ loading


def _describe(e: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid runtime config ({e.error_count()} problem(s))"]
    for err in e.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {where}: {err['msg']}")
    return "\n".join(lines)


def parse_config(document: Mapping[str, Any], *, source: str = "config") -> RuntimeConfig:
    """Validate a config document; the error names every bad field."""
    try:
        return RuntimeConfig.model_validate(document)
    except ValidationError as e:
        raise errors.ConfigError(_describe(e, source)) from e


def load_config(path: str | os.PathLike[str]) -> RuntimeConfig:
    """Read a YAML or JSON config file (the operator's ConfigMap mounted as a file)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise errors.ConfigError(f"{p}: cannot read runtime config: {e.strerror}") from e
    try:
        document = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise errors.ConfigError(f"{p}: not valid YAML/JSON: {e}") from e
    if not isinstance(document, dict):
        raise errors.ConfigError(f"{p}: the runtime config must be a mapping")
    return parse_config(document, source=str(p))
