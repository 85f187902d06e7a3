"""AgentDeployment + its AgentPolicies -> the runtime's config: pure, no I/O.

The reconciler gathers the agent, the policies that apply to it (see
:mod:`pilothouse.operator.targeting`) and the system prompt text, then calls :func:`render`.
The result is a validated :class:`~pilothouse.runtime.config.RuntimeConfig` (the same model
``pilothouse serve`` loads, so the contract is type-checked), its YAML document, its hash, and
the Secret references the pod must turn into environment variables: the config never holds a
secret, it names the variable (``apiKeyEnv``...) the pod gets from a ``secretKeyRef``.

Environment variables (fixed names, so a config is readable on its own):

=============================================  ==============================================
``PILOTHOUSE_MODEL_<n>_API_KEY``               API key of model n (0 the primary, then the
                                               fallbacks in order)
``PILOTHOUSE_MODEL_<n>_HEADER_<h>``            header h of model n (``headersFrom``)
``PILOTHOUSE_TOOL_<t>_HEADER_<h>``             header h of tool t (indexes in spec order)
``PILOTHOUSE_REDIS_URL``                       Redis URL
``PILOTHOUSE_POSTGRES_DSN``                    PostgreSQL DSN of the audit trail
=============================================  ==============================================
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from pilothouse.operator import api, conditions, errors, resources, settings
from pilothouse.runtime import config

__all__ = [
    "AUTH_TOKENS_DIR",
    "AUTH_TOKENS_PATH",
    "CONFIG_DIR",
    "CONFIG_PATH",
    "POSTGRES_DSN_ENV",
    "REDIS_URL_ENV",
    "SERVER_PORT",
    "RenderedConfig",
    "SecretEnv",
    "model_header_env",
    "model_key_env",
    "render",
    "resolve_policy",
    "tool_header_env",
]

CONFIG_DIR: Final = "/etc/pilothouse"
"""Where the agent's ConfigMap is mounted."""
CONFIG_PATH: Final = f"{CONFIG_DIR}/runtime.yaml"
"""The runtime config file ``pilothouse serve --config`` reads."""
AUTH_TOKENS_DIR: Final = "/etc/pilothouse-auth"
"""Where the bearer-token Secret is mounted."""
AUTH_TOKENS_PATH: Final = f"{AUTH_TOKENS_DIR}/tokens"
"""The bearer-token file (``server.authTokensFile``)."""
SERVER_PORT: Final = 8080
"""The runtime's HTTP port: API, ``/healthz``, ``/readyz``, ``/metrics``."""
REDIS_URL_ENV: Final = config.RedisConfig().url_env
POSTGRES_DSN_ENV: Final = config.AuditConfig().dsn_env

M = TypeVar("M", bound=BaseModel)


def model_key_env(index: int) -> str:
    """Variable holding the API key of model ``index`` (0: primary, 1..: fallbacks)."""
    return f"PILOTHOUSE_MODEL_{index}_API_KEY"


def model_header_env(model: int, header: int) -> str:
    """Variable holding the value of header ``header`` of model ``model``."""
    return f"PILOTHOUSE_MODEL_{model}_HEADER_{header}"


def tool_header_env(tool: int, header: int) -> str:
    """Variable holding the value of header ``header`` of tool ``tool``."""
    return f"PILOTHOUSE_TOOL_{tool}_HEADER_{header}"


@dataclass(frozen=True, slots=True)
class SecretEnv:
    """An environment variable the pod sets from a Secret key."""

    name: str
    secret: api.SecretKeyRef
    field: str = ""
    """Where the reference comes from (``spec.redis.urlSecretRef``, ``--redis-secret``...)."""


@dataclass(frozen=True, slots=True)
class RenderedConfig:
    """The runtime config of one agent, ready for its ConfigMap and pod template."""

    config: config.RuntimeConfig
    document: str
    """The YAML written into the ConfigMap."""
    hash: str
    """Short sha256 of ``document``: the pod-template annotation that rolls the pods."""
    secret_env: tuple[SecretEnv, ...]
    auth_tokens: api.SecretKeyRef | None
    applied_policies: tuple[tuple[str, int], ...]
    """(name, generation) of each policy rendered in, in evaluation order."""


def render(
    agent: resources.Agent,
    policies: Sequence[resources.Policy],
    *,
    system_prompt: str,
    defaults: settings.RuntimeDefaults,
) -> RenderedConfig:
    """The agent's runtime config with ``policies`` resolved into it (in the given order).

    Raises :class:`~pilothouse.operator.errors.SpecError` (``InvalidSpec``) naming the field
    when the spec passed the API server's schema but the runtime would refuse it.
    """
    spec = agent.spec
    env: list[SecretEnv] = []

    models = []
    for index, model in enumerate((spec.agent.model, *spec.agent.fallback_models)):
        doc = model.model_dump(
            by_alias=True, exclude={"api_key_secret_ref", "headers_from"}, exclude_unset=True
        )
        if model.api_key_secret_ref is not None:
            doc["apiKeyEnv"] = model_key_env(index)
        where = "spec.agent.model" if index == 0 else f"spec.agent.fallbackModels[{index - 1}]"
        if model.api_key_secret_ref is not None:
            env.append(
                SecretEnv(
                    model_key_env(index), model.api_key_secret_ref, f"{where}.apiKeySecretRef"
                )
            )
        _headers_from_env(
            doc, env, model.headers_from, where, functools.partial(model_header_env, index)
        )
        models.append(_build(config.ModelConfig, doc, where))

    tools = []
    for t_index, tool in enumerate(spec.agent.tools):
        doc = tool.model_dump(by_alias=True, exclude={"headers_from"}, exclude_unset=True)
        where = f"spec.agent.tools[{t_index}]"
        _headers_from_env(
            doc, env, tool.headers_from, where, functools.partial(tool_header_env, t_index)
        )
        tools.append(_build(config.ToolConfig, doc, where))

    redis_ref = spec.redis.url_secret_ref or defaults.redis_secret
    redis: dict[str, Any] = {"keyPrefix": spec.redis.key_prefix}
    if redis_ref is not None:
        field = "spec.redis.urlSecretRef" if spec.redis.url_secret_ref else "--redis-secret"
        env.append(SecretEnv(REDIS_URL_ENV, redis_ref, field))
    elif defaults.redis_url:
        redis["url"] = defaults.redis_url
    else:
        raise errors.SpecError(
            conditions.INVALID_SPEC,
            "spec.redis.urlSecretRef: no Redis for the queue: name a Secret key holding the URL "
            "(or run the operator with --redis-secret)",
        )

    audit: dict[str, Any] = {
        "enabled": spec.audit.enabled,
        "retentionDays": spec.audit.retention_days,
    }
    postgres_ref = spec.audit.postgres_secret_ref or defaults.postgres_secret
    if spec.audit.enabled:
        if postgres_ref is not None:
            field = (
                "spec.audit.postgresSecretRef"
                if spec.audit.postgres_secret_ref
                else "--postgres-secret"
            )
            env.append(SecretEnv(POSTGRES_DSN_ENV, postgres_ref, field))
        elif defaults.postgres_dsn:
            audit["dsn"] = defaults.postgres_dsn
        else:
            raise errors.SpecError(
                conditions.INVALID_SPEC,
                "spec.audit.postgresSecretRef: no PostgreSQL for the audit trail: name a Secret "
                "key holding the DSN, run the operator with --postgres-secret, or set "
                "spec.audit.enabled: false",
            )

    telemetry = spec.telemetry
    if telemetry.otlp_endpoint is None and defaults.otlp_endpoint:
        telemetry = telemetry.model_copy(update={"otlp_endpoint": defaults.otlp_endpoint})

    server: dict[str, Any] = {
        "port": SERVER_PORT,
        "maxBodyBytes": spec.server.max_body_bytes,
        "maxInputChars": spec.server.max_input_chars,
    }
    if spec.server.auth_mode == "tokens":
        server["authTokensFile"] = AUTH_TOKENS_PATH
    elif spec.server.auth_mode == "kubernetes":
        server["kubernetesAuth"] = {"enabled": True}

    resolved = tuple(_resolve(policy) for policy in policies)
    document: dict[str, Any] = {
        "agent": agent.meta.name,
        "namespace": agent.meta.namespace,
        "systemPrompt": system_prompt,
        "model": models[0],
        "fallbackModels": models[1:],
        "fallback": spec.agent.fallback,
        "refusalResponse": spec.agent.refusal_response,
        "escalationResponse": spec.agent.escalation_response,
        "incompleteResponse": spec.agent.incomplete_response,
        "tools": tools,
        "toolChoice": spec.agent.tool_choice,
        "maxSteps": spec.agent.max_steps,
        "maxRequestTokens": spec.agent.max_request_tokens,
        "reliability": spec.reliability,
        "workers": spec.workers,
        "sessions": spec.sessions,
        "redis": redis,
        "audit": audit,
        "telemetry": telemetry,
        "server": server,
        "policies": resolved,
    }
    cfg = _build(config.RuntimeConfig, document, "spec")
    text = _dump(cfg, agent.meta)
    return RenderedConfig(
        config=cfg,
        document=text,
        hash=hashlib.sha256(text.encode()).hexdigest()[:16],
        secret_env=tuple(env),
        auth_tokens=spec.server.auth_tokens_secret_ref,
        applied_policies=tuple((p.name, p.generation) for p in resolved),
    )


def _headers_from_env(
    doc: dict[str, Any],
    env: list[SecretEnv],
    headers: Sequence[api.HeaderFromSecret],
    where: str,
    env_name: Callable[[int], str],
) -> None:
    """Headers from Secrets (of a model or a tool): a pod env var each, named in ``doc``."""
    names = {}
    for h_index, header in enumerate(headers):
        name = env_name(h_index)
        names[header.name] = name
        field = f"{where}.headersFrom[{h_index}].secretKeyRef"
        env.append(SecretEnv(name, header.secret_key_ref, field))
    if names:
        doc["headersFromEnv"] = names


def resolve_policy(policy: resources.Policy) -> config.ResolvedPolicy:
    """The policy as the runtime enforces it; ``SpecError`` names a field the runtime refuses."""
    return _resolve(policy)


def _resolve(policy: resources.Policy) -> config.ResolvedPolicy:
    doc = policy.spec.rules().model_dump(by_alias=True, exclude_unset=True)
    doc.update(name=policy.meta.name, generation=policy.meta.generation)
    return _build(config.ResolvedPolicy, doc, f"AgentPolicy {policy.meta.name}: spec")


def _build(model: type[M], document: dict[str, Any], where: str) -> M:
    try:
        return model.model_validate(document)
    except ValidationError as e:
        raise errors.SpecError(
            conditions.INVALID_SPEC, resources.describe_validation_error(e, where)
        ) from e


def _dump(cfg: config.RuntimeConfig, meta: resources.Meta) -> str:
    header = (
        f"# Runtime config of AgentDeployment {meta.namespace}/{meta.name}, rendered by "
        "pilothouse-operator.\n# Do not edit: change the AgentDeployment or its AgentPolicies.\n"
    )
    body = yaml.safe_dump(cfg.to_document(), sort_keys=False, allow_unicode=True, width=100)
    return header + body
