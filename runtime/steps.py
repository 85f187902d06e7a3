"""The state of one request inside the agent loop, and the decision record of each step.

Why: :mod:`pilothouse.runtime.agent` decides what happens next; this module keeps what has
happened: the conversation, the session context, tool calls taken, tokens and cost, and one
:class:`records.AgentDecision` per step (step numbers from 0, continuing across a resume).
Keeping the bookkeeping here keeps the loop readable. Also builds the policy
:class:`hooks.Action` of each step (with the estimated cost of an LLM call) and the final
:class:`requests.AgentResult`. Used only by the agent loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from opentelemetry import trace

from pilothouse.runtime import (
    config,
    errors,
    fallback,
    hooks,
    llm,
    metrics,
    pending,
    records,
    requests,
    retries,
    sessions,
    tools,
)

__all__ = ["Run"]

CHARS_PER_TOKEN: Final = 4
"""Rough size of a token, for the cost estimate given to policies before an LLM call."""
DEFAULT_OUTPUT_ESTIMATE: Final = 256
"""Output tokens assumed for the estimate when the model sets no ``maxOutputTokens``."""


def _trace_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def _error_content(error: errors.ToolError) -> str:
    return orjson.dumps({"error": str(error)}).decode()


class Run:
    """One request's progress through the loop (mutable, private to one ``handle`` call)."""

    def __init__(
        self,
        cfg: config.RuntimeConfig,
        request: requests.AgentRequest,
        deadline: retries.Deadline,
        clock: retries.Clock,
    ) -> None:
        self.cfg = cfg
        self.request = request
        self.deadline = deadline
        self.clock = clock
        self.began = clock.monotonic()
        self.trace_id = _trace_id()
        self.decisions: list[records.AgentDecision] = []
        self.step = 0
        self.messages: list[dict[str, Any]] = []
        self.turn_start = 0
        self.history_start = 0
        """Where the session history begins in :attr:`messages` (it ends at ``turn_start``)."""
        self.history_rewritten = False
        """The history was trimmed or dropped: the session is saved anew, not appended to."""
        self.recoveries: set[str] = set()
        """Recoveries already tried in this request (each at most once)."""
        self.started = False
        self.context: dict[str, Any] = {}
        self.actions: list[requests.ActionTaken] = []
        self.llm_steps = 0
        self.tool_calls = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost_usd = 0.0
        self.model: str | None = None
        self.fallback_used = False
        self.fallback_reason: str | None = None
        self.stop_reason: str | None = None
        """Why the request stopped without an answer (``max_steps``, ``token_budget``...)."""

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    # ------------------------------------------------------------------ the conversation

    def start(
        self, system_prompt: str, history: Sequence[dict[str, Any]], context: dict[str, Any]
    ) -> None:
        """System prompt, session context, history, then the user's input."""
        if system_prompt:
            self.messages.append({"role": "system", "content": system_prompt})
        if context:
            self.messages.append(
                {
                    "role": "system",
                    "content": "Session context (JSON): " + orjson.dumps(context).decode(),
                }
            )
        self.history_start = len(self.messages)
        self.messages.extend(history)
        self.turn_start = len(self.messages)
        self.messages.append({"role": "user", "content": self.request.input})
        self.context = dict(context)
        self.started = True

    def restore(self, snapshot: pending.Snapshot) -> None:
        self.messages = [dict(m) for m in snapshot.messages]
        self.turn_start = snapshot.turn_start
        # The history follows the system messages (prompt, session context).
        self.history_start = next(
            (
                i
                for i, m in enumerate(self.messages[: self.turn_start])
                if m.get("role") != "system"
            ),
            self.turn_start,
        )
        self.context = dict(snapshot.context)
        self.llm_steps = snapshot.llm_steps
        self.tool_calls = snapshot.tool_calls
        self.input_tokens = snapshot.input_tokens
        self.output_tokens = snapshot.output_tokens
        self.cost_usd = snapshot.cost_usd
        self.actions = list(snapshot.actions)
        self.model = snapshot.model
        self.fallback_used = snapshot.fallback_used
        self.fallback_reason = snapshot.fallback_reason
        self.started = True

    def turn_messages(self, answer: str) -> list[dict[str, Any]]:
        """This turn's messages for the session, ending with the answer the user got."""
        turn = self.messages[self.turn_start :]
        last = turn[-1] if turn else None
        if not (last and last.get("role") == "assistant" and last.get("content") == answer):
            turn.append({"role": "assistant", "content": answer})
        return turn

    @property
    def model_answered(self) -> bool:
        """Whether a model has answered in this request yet (its turn is in the messages)."""
        return any(m.get("role") == "assistant" for m in self.messages[self.turn_start :])

    @property
    def history(self) -> list[dict[str, Any]]:
        """The session history sent with this request."""
        return self.messages[self.history_start : self.turn_start]

    def replace_history(self, history: Sequence[dict[str, Any]]) -> None:
        """Send ``history`` instead of the session's (trimmed, or dropped when empty)."""
        self.messages[self.history_start : self.turn_start] = list(history)
        self.turn_start = self.history_start + len(history)
        self.history_rewritten = True

    def note_fallback(self, reason: str) -> None:
        self.fallback_used = True
        self.fallback_reason = self.fallback_reason or reason

    # ------------------------------------------------------------------ decision records

    def record(
        self,
        action: str,
        *,
        outcome: str = "ok",
        input: str | None = None,
        reasoning: str | None = None,
        params: dict[str, Any] | None = None,
        result: Any = None,
        error: str | None = None,
        policy: str | None = None,
        latency_s: float = 0.0,
        cost_usd: float = 0.0,
        input_tokens: int = 0,
        output_tokens: int = 0,
        model: str | None = None,
        at: float | None = None,
    ) -> records.AgentDecision:
        # Every field is set here with the right type: skip pydantic's validation (hot path).
        decision = records.AgentDecision.model_construct(
            request_id=self.request.request_id,
            agent_id=self.cfg.agent,
            step=self.step,
            action=action,
            input=input,
            reasoning=reasoning,
            action_params=params or {},
            result=result,
            error=error,
            outcome=outcome,
            policy=policy,
            latency_ms=latency_s * 1000,
            cost_usd=cost_usd,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            model=model,
            trace_id=self.trace_id,
            timestamp=datetime.fromtimestamp(self.clock.time() if at is None else at, UTC),
        )
        self.step += 1
        self.decisions.append(decision)
        metrics.DECISIONS.labels(self.cfg.agent, action, outcome).inc()
        return decision

    def record_attempts(self, outcome: fallback.ChainOutcome) -> None:
        """One ``llm_call`` decision per attempt (retries and skipped models included)."""
        for a in outcome.attempts:
            c = a.completion
            params: dict[str, Any] = {"model": a.model.name, "attempt": a.number}
            if a.model is not self.cfg.model:
                params["fallback_model"] = True
            if a.next:
                params["next"] = a.next
            result: Any = None
            if c is not None:
                self.input_tokens += c.input_tokens
                self.output_tokens += c.output_tokens
                self.cost_usd += c.cost_usd
                result = (
                    {
                        "tool_calls": [
                            {"name": t.name, "arguments": t.arguments} for t in c.tool_calls
                        ]
                    }
                    if c.tool_calls
                    else c.content
                )
            self.record(
                "llm_call",
                outcome=a.outcome,
                reasoning=c.content if c is not None and c.tool_calls else None,
                params=params,
                result=result,
                error=str(a.error) if a.error is not None else None,
                latency_s=a.latency_s,
                cost_usd=c.cost_usd if c is not None else 0.0,
                input_tokens=c.input_tokens if c is not None else 0,
                output_tokens=c.output_tokens if c is not None else 0,
                model=c.model if c is not None else a.model.name,
                at=a.started_at,
            )

    def record_verdict(
        self,
        action: hooks.Action,
        verdict: hooks.PolicyResult,
        *,
        outcome: str,
        result: Any = None,
    ) -> None:
        params = dict(action.params)
        if action.tool_name:
            params = {"tool": action.tool_name, "arguments": params}
        self.record(
            action.kind.value,
            outcome=outcome,
            input=action.input_text or None,
            params=params,
            result=result,
            error=verdict.reason or None,
            policy=verdict.policy or None,
        )

    def request_params(self) -> dict[str, Any]:
        r = self.request
        params: dict[str, Any] = {
            k: v
            for k, v in (("session_id", r.session_id), ("user", r.user), ("tenant", r.tenant))
            if v
        }
        if r.metadata:
            params["metadata"] = dict(r.metadata)
        return params

    # ------------------------------------------------------------------ tool results

    def _tool_message(self, call: llm.ToolCall, content: str) -> None:
        self.messages.append({"role": "tool", "tool_call_id": call.id, "content": content})

    def tool_failed(
        self,
        call: llm.ToolCall,
        error: errors.ToolError,
        started: float,
        *,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        """Tell the model what went wrong (it may correct itself) and record it."""
        self.tool_calls += 1
        self._tool_message(call, _error_content(error))
        params = arguments if arguments is not None else {"raw_arguments": call.arguments}
        self.actions.append(
            requests.ActionTaken(tool=call.name, params=params, ok=False, error=str(error))
        )
        self.record(
            "tool_call",
            outcome="error",
            input=call.arguments,
            params={"tool": call.name, "call_id": call.id, "reason": error.reason},
            error=str(error),
            latency_s=self.clock.monotonic() - started,
        )

    def tool_succeeded(
        self,
        call: llm.ToolCall,
        prepared: tools.PreparedCall,
        result: tools.ToolResult,
        started: float,
    ) -> None:
        self.tool_calls += 1
        self._tool_message(call, result.to_message_content())
        self.actions.append(
            requests.ActionTaken(tool=call.name, params=prepared.arguments, result=result.value)
        )
        merged, problem = sessions.merge_context(
            self.context, result.context, self.cfg.sessions.max_context_bytes
        )
        self.context = merged
        self.record(
            "tool_call",
            input=call.arguments,
            params={"tool": call.name, "call_id": call.id},
            result=result.value,
            error=problem,
            latency_s=self.clock.monotonic() - started,
        )

    # ------------------------------------------------------------------ policy actions

    def _action(self, kind: hooks.ActionKind, **fields: Any) -> hooks.Action:
        r = self.request
        return hooks.Action(
            kind=kind,
            agent_id=self.cfg.agent,
            request_id=r.request_id,
            step=self.step,
            user=r.user,
            tenant=r.tenant,
            steps_so_far=self.llm_steps,
            tool_calls_so_far=self.tool_calls,
            tokens_so_far=self.tokens,
            **fields,
        )

    def action(self, kind: hooks.ActionKind, *, approved: bool) -> hooks.Action:
        return self._action(kind, input_text=self.request.input, approved=approved)

    def llm_action(
        self, model: config.ModelConfig, tools_chars: int, *, approved: bool
    ) -> hooks.Action:
        """The LLM_CALL action, with tokens and cost estimated from the conversation's size."""
        chars = tools_chars + sum(len(str(m.get("content") or "")) for m in self.messages)
        input_tokens = chars // CHARS_PER_TOKEN + 1
        output_tokens = model.max_output_tokens or DEFAULT_OUTPUT_ESTIMATE
        return self._action(
            hooks.ActionKind.LLM_CALL,
            input_text=self.request.input,
            params={"model": model.name, "endpoint": model.endpoint},
            estimated_tokens=input_tokens + output_tokens,
            estimated_cost_usd=model.pricing.cost(input_tokens, output_tokens),
            approved=approved,
        )

    def tool_action(self, call: tools.PreparedCall, *, approved: bool) -> hooks.Action:
        return self._action(
            hooks.ActionKind.TOOL_CALL,
            input_text=orjson.dumps(call.arguments).decode(),
            tool_name=call.tool.name,
            params=call.arguments,
            approved=approved,
        )

    # ------------------------------------------------------------------ endings

    def pending_action(
        self,
        action: hooks.Action,
        verdict: hooks.PolicyResult,
        calls: Sequence[llm.ToolCall],
    ) -> pending.PendingAction:
        """The escalated action and the snapshot to resume from (before its decision)."""
        snapshot = pending.Snapshot(
            messages=[dict(m) for m in self.messages],
            turn_start=self.turn_start,
            context=dict(self.context),
            pending_tool_calls=[
                pending.PendingToolCall(id=c.id, name=c.name, arguments=c.arguments) for c in calls
            ],
            next_step=self.step + 1,
            llm_steps=self.llm_steps,
            tool_calls=self.tool_calls,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cost_usd=self.cost_usd,
            actions=list(self.actions),
            model=self.model,
            fallback_used=self.fallback_used,
            fallback_reason=self.fallback_reason,
        )
        return pending.PendingAction(
            escalation_id=f"esc-{self.cfg.agent}-{self.request.request_id}-{self.step}",
            request_id=self.request.request_id,
            agent_id=self.cfg.agent,
            kind=action.kind,
            tool_name=action.tool_name,
            params=dict(action.params),
            estimated_cost_usd=action.estimated_cost_usd,
            policy=verdict.policy,
            reason=verdict.reason,
            created_at=datetime.fromtimestamp(self.clock.time(), UTC),
            snapshot=snapshot,
        )

    def result(
        self, status: requests.ResultStatus, answer: str, **extra: Any
    ) -> requests.AgentResult:
        return requests.AgentResult(
            request_id=self.request.request_id,
            agent_id=self.cfg.agent,
            status=status,
            answer=answer,
            refused=status is requests.ResultStatus.REFUSED,
            actions=tuple(self.actions),
            fallback_used=self.fallback_used or status is requests.ResultStatus.FALLBACK,
            fallback_reason=self.fallback_reason or self.stop_reason,
            model=self.model,
            steps=self.llm_steps,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cost_usd=self.cost_usd,
            latency_ms=(self.clock.monotonic() - self.began) * 1000,
            session_id=self.request.session_id,
            context=dict(self.context),
            **extra,
        )
