"""The fallback chain: primary model, then each fallback model, then a rule-based answer.

Why: users should get an answer even when the primary model is down, slow or rate limited.
:class:`ModelChain` tries the models of an agent in order; each model has its own circuit
breaker (an open breaker skips the model without a call) and its own retries
(:mod:`pilothouse.runtime.retries`), all within the request's deadline. Every attempt,
including the skipped ones, is returned as an :class:`Attempt`, which the agent loop turns into
a decision record, so retries and fallbacks are visible in the audit trail.

When no model answers, :class:`Rules` gives the rule-based answer: the first
``fallback.rules`` entry whose pattern is found (case-insensitively) in the user's input, else
``fallback.response``. Errors that count against a breaker: transient ones (timeouts,
connection errors, 429, 5xx) and malformed responses; any other 4xx proves the endpoint is up
and counts as a success, and so does an error the request's own body caused (a validation
error or a context overflow, even when a server answers it with a 500: the provider is healthy,
this request is not) and an empty answer. An empty answer (no text, no tool calls) is an
:class:`errors.LLMEmptyAnswer`: retried once at once, then the next model. A call that never
went out (the deadline passed while the breaker was
asked) counts as neither: a half-open breaker stays half-open. Called by
:mod:`pilothouse.runtime.agent`.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pilothouse.runtime import breaker, config, errors, llm, retries

__all__ = ["Attempt", "ChainOutcome", "ModelChain", "RuleAnswer", "Rules"]


@dataclass(frozen=True, slots=True)
class RuleAnswer:
    """The rule-based answer and which rule gave it (None: the default response)."""

    text: str
    rule: int | None


class Rules:
    """``fallback.rules`` compiled once; first match wins."""

    def __init__(self, cfg: config.FallbackConfig) -> None:
        self._default = cfg.response
        self._rules = [(re.compile(r.pattern, re.IGNORECASE), r.response) for r in cfg.rules]

    def answer(self, text: str) -> RuleAnswer:
        for i, (pattern, response) in enumerate(self._rules):
            if pattern.search(text):
                return RuleAnswer(response, i)
        return RuleAnswer(self._default, None)


@dataclass(slots=True)
class Attempt:
    """One try of one model: a call, or a call skipped because its breaker is open."""

    model: config.ModelConfig
    number: int
    """1 for the first try of this model, 2 for its first retry..."""
    started_at: float
    """Wall-clock time."""
    latency_s: float = 0.0
    completion: llm.Completion | None = None
    error: errors.LLMError | None = None
    next: str | None = None
    """What happened next: ``retry in 0.8s`` or ``not retried: <reason>``."""

    @property
    def outcome(self) -> str:
        """``ok``, ``error``, or ``circuit_open`` (no call was made)."""
        if self.error is None:
            return "ok"
        return "circuit_open" if isinstance(self.error, errors.CircuitOpen) else "error"


@dataclass(frozen=True, slots=True)
class ChainOutcome:
    """The answer of the first model that gave one, or None; and every attempt made."""

    completion: llm.Completion | None
    model: config.ModelConfig | None
    attempts: tuple[Attempt, ...]
    fallback_reason: str | None
    """Why the primary model did not answer (an :attr:`errors.LLMError.reason`), or None."""

    @property
    def cost_usd(self) -> float:
        return sum(a.completion.cost_usd for a in self.attempts if a.completion is not None)


def _counts_as_failure(error: errors.LLMError) -> bool:
    return isinstance(error, errors.TransientLLMError | errors.LLMMalformedResponse)


class ModelChain:
    """The models of one agent, tried in order, each behind its breaker and retries."""

    def __init__(
        self,
        models: Sequence[config.ModelConfig],
        *,
        client: llm.LLMClient,
        breakers: breaker.CircuitBreakers,
        retry: config.RetryConfig,
        rng: random.Random | None = None,
        clock: retries.Clock = time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not models:
            raise errors.ConfigError("a model chain needs at least one model")
        self.models = tuple(models)
        self._client = client
        self.breakers = breakers
        self._retry = retry
        self._rng = rng or random.Random()
        self._clock = clock
        self._sleep = sleep

    @property
    def client(self) -> llm.LLMClient:
        """The LLM client the chain calls through."""
        return self._client

    async def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]],
        deadline: retries.Deadline,
        tool_choice: str | None = None,
        first_call: bool = True,
    ) -> ChainOutcome:
        """Ask each model in turn until one answers; never raises an LLMError. ``tool_choice``
        is the agent's (each model may override it, see :func:`llm.effective_tool_choice`)."""
        attempts: list[Attempt] = []
        reason: str | None = None
        for model in self.models:
            choice = llm.effective_tool_choice(
                tool_choice, model.tool_choice, first_call=first_call
            )
            try:
                completion = await self._try_model(
                    model, messages, tools, choice, deadline, attempts
                )
            except errors.LLMError as e:
                reason = reason or e.reason
                if isinstance(e, errors.DeadlineExceeded):
                    break  # no time for the next models either
                continue
            return ChainOutcome(completion, model, tuple(attempts), reason)
        return ChainOutcome(None, None, tuple(attempts), reason or "deadline_exceeded")

    async def _try_model(
        self,
        model: config.ModelConfig,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        tool_choice: str | None,
        deadline: retries.Deadline,
        attempts: list[Attempt],
    ) -> llm.Completion:

        def annotate(plan: retries.RetryPlan) -> None:
            attempts[-1].next = plan.describe()

        async def attempt(number: int) -> llm.Completion:
            return await self._attempt(
                model, messages, tools, tool_choice, deadline, attempts, number
            )

        return await retries.call_with_retries(
            attempt, self._retry, deadline, self._rng, on_plan=annotate, sleep=self._sleep
        )

    async def _attempt(
        self,
        model: config.ModelConfig,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        tool_choice: str | None,
        deadline: retries.Deadline,
        attempts: list[Attempt],
        number: int,
    ) -> llm.Completion:
        record = Attempt(model=model, number=number, started_at=self._clock.time())
        if deadline.remaining() <= 0:
            record.error = errors.DeadlineExceeded(
                f"{model.key}: the request's deadline has passed", model=model.key
            )
            attempts.append(record)
            raise record.error
        permit = await self.breakers.acquire(model.key)
        if not permit.allowed:
            record.error = errors.CircuitOpen(
                f"{model.key}: circuit breaker open, "
                f"next probe in {permit.retry_in_ms / 1000:.3g}s",
                model=model.key,
            )
            attempts.append(record)
            raise record.error
        attempts.append(record)
        started = self._clock.monotonic()
        try:
            completion = await self._client.chat(
                model,
                messages,
                tools=tools,
                tool_choice=tool_choice,
                time_limit=deadline.timeout_for(model.timeout_seconds),
            )
        except errors.LLMError as e:
            record.latency_s = self._clock.monotonic() - started
            record.error = e
            if not isinstance(e, errors.DeadlineExceeded):  # no call went out: nothing learnt
                await self.breakers.record(
                    model.key, success=not _counts_as_failure(e), probe=permit.probe
                )
            raise
        record.latency_s = self._clock.monotonic() - started
        record.completion = completion
        await self.breakers.record(model.key, success=True, probe=permit.probe)
        if completion.empty:
            record.error = errors.LLMEmptyAnswer(
                f"{model.key}: empty answer (no text, no tool calls; "
                f"finish_reason {completion.finish_reason or 'none'})",
                model=model.key,
            )
            raise record.error
        return completion
