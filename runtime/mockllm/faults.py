"""Fault injection: the settings, and the per-request decision drawn from a seeded RNG.

The server holds one :class:`FaultConfig` (set by command-line flags at start, replaced or
patched through ``PUT``/``PATCH /admin/faults``) and calls :func:`decide` once per chat
completion request, with the server's ``random.Random``: the same seed and the same sequence of
requests give the same faults, so tests are deterministic. Pure: no clock, no I/O.

One uniform draw picks the outcome, with the rates as consecutive slices of [0, 1): hang, then
rate limit, then error, then malformed body, then a normal answer. The rates therefore add up to
at most 1. Latency (plus jitter) applies to every affected request, whatever the outcome.
When ``models`` is set only requests for those models are affected; others get no fault and
draw nothing from the RNG.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Self

import pydantic

from pilothouse.runtime.mockllm import errors

__all__ = [
    "DIALECT_FIELDS",
    "MALFORMED_BODIES",
    "FaultConfig",
    "FaultDecision",
    "Outcome",
    "decide",
]

Outcome = Literal["ok", "hang", "rate_limit", "error", "malformed"]

MALFORMED_BODIES: Final[tuple[tuple[str, bytes], ...]] = (
    (
        "application/json",
        b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"ind',
    ),
    ("text/html", b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
    ("application/json", b'{"id": "chatcmpl-broken", "object": "chat.completion", "model": "?"}'),
    (
        "application/json",
        b'{"choices": [{"index": 0, "message": {"role": "assistant"}}], "usage": 7}',
    ),
    ("application/json", b""),
)
"""Answers that are 200 OK but not a valid completion: cut JSON, HTML, missing or wrong fields."""

_RATE_TOLERANCE: Final = 1e-9

DIALECT_FIELDS: Final = ("strict", "strict_status", "context_window")
"""Settings that describe the server rather than a fault: a PUT of the faults keeps them."""


class FaultConfig(pydantic.BaseModel):
    """Which faults the server injects; all off by default."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    latency_ms: float = pydantic.Field(default=0.0, ge=0, le=600_000)
    """Added delay before every affected answer, in milliseconds."""
    latency_jitter_ms: float = pydantic.Field(default=0.0, ge=0, le=600_000)
    """Up to this much more delay, drawn uniformly per request."""
    error_rate: float = pydantic.Field(default=0.0, ge=0, le=1)
    """Share of requests answered with ``error_status``."""
    error_status: int = pydantic.Field(default=500, ge=500, le=599)
    """Status of injected errors (500, 502, 503, ...)."""
    rate_limit_rate: float = pydantic.Field(default=0.0, ge=0, le=1)
    """Share of requests answered with 429 and a ``Retry-After`` header."""
    retry_after: int = pydantic.Field(default=1, ge=0, le=86_400)
    """Seconds in the ``Retry-After`` header of injected 429s."""
    hang_rate: float = pydantic.Field(default=0.0, ge=0, le=1)
    """Share of requests never answered (until the client gives up)."""
    malformed_rate: float = pydantic.Field(default=0.0, ge=0, le=1)
    """Share of requests answered 200 with a body that is not a valid completion."""
    models: tuple[str, ...] = ()
    """Only requests for these models are affected; empty means every model."""
    strict: bool = False
    """Validate requests the way strict servers do (older llama.cpp releases, several
    gateways): every message's ``content`` is a string (``null`` or missing is refused, even
    beside ``tool_calls``), each tool result answers an earlier, unanswered tool call, every
    tool call is answered before the conversation goes on, and a message's ``name`` matches
    ``^[a-zA-Z0-9_-]+$`` (as OpenAI requires). Refusals use ``strict_status``.
    Applies to every model, whatever ``models`` says."""
    strict_status: int = pydantic.Field(default=500, ge=400, le=599)
    """Status of strict-mode refusals: older llama.cpp releases answer 500, vLLM 400."""
    context_window: int | None = pydantic.Field(default=None, ge=1)
    """Prompt tokens a request may use; beyond, a 400 ``context_length_exceeded`` with
    OpenAI's message (the limit and the tokens requested). Applies to every model."""

    @pydantic.model_validator(mode="after")
    def _rates_fit(self) -> Self:
        total = self.hang_rate + self.rate_limit_rate + self.error_rate + self.malformed_rate
        if total > 1 + _RATE_TOLERANCE:
            raise ValueError(
                "hang_rate + rate_limit_rate + error_rate + malformed_rate must be at most 1, "
                f"got {total:g}"
            )
        return self

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> FaultConfig:
        """Validate settings from JSON or flags; raise :class:`errors.FaultConfigError`."""
        try:
            return cls.model_validate(dict(data))
        except pydantic.ValidationError as e:
            raise errors.FaultConfigError(_describe(e)) from e

    def patched(self, changes: Mapping[str, Any]) -> FaultConfig:
        """A copy with ``changes`` applied and validated again."""
        return self.parse({**self.model_dump(), **changes})

    def affects(self, model: str) -> bool:
        """Whether requests for ``model`` are subject to these faults."""
        return not self.models or model in self.models

    @property
    def active(self) -> bool:
        """Whether any fault or latency is configured."""
        return bool(
            self.latency_ms
            or self.latency_jitter_ms
            or self.error_rate
            or self.rate_limit_rate
            or self.hang_rate
            or self.malformed_rate
        )


def _describe(e: pydantic.ValidationError) -> str:
    parts = []
    for err in e.errors():
        where = ".".join(str(p) for p in err["loc"]) or "faults"
        parts.append(f"{where}: {err['msg']}")
    return "invalid fault settings: " + "; ".join(parts)


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """What to do with one request."""

    outcome: Outcome = "ok"
    delay_s: float = 0.0
    status: int = 200
    retry_after: int | None = None
    malformed_variant: int = 0
    """Index into :data:`MALFORMED_BODIES` when ``outcome`` is ``malformed``."""


NO_FAULT: Final = FaultDecision()


def decide(config: FaultConfig, model: str, rng: random.Random) -> FaultDecision:
    """The fault (if any) and the delay for one request for ``model``."""
    if not config.active or not config.affects(model):
        return NO_FAULT
    draw = rng.random()
    delay_ms = config.latency_ms
    if config.latency_jitter_ms:
        delay_ms += rng.uniform(0.0, config.latency_jitter_ms)
    delay_s = delay_ms / 1000.0
    edge = config.hang_rate
    if draw < edge:
        return FaultDecision("hang", delay_s, 0)
    edge += config.rate_limit_rate
    if draw < edge:
        return FaultDecision("rate_limit", delay_s, 429, retry_after=config.retry_after)
    edge += config.error_rate
    if draw < edge:
        return FaultDecision("error", delay_s, config.error_status)
    edge += config.malformed_rate
    if draw < edge:
        variant = rng.randrange(len(MALFORMED_BODIES))
        return FaultDecision("malformed", delay_s, 200, malformed_variant=variant)
    return FaultDecision("ok", delay_s, 200)
