"""The reliable agent loop: one request in, one answer and its decision records out.

Why: this is where the pillars meet. For each request :meth:`Agent.handle` runs

    admission check (policy hook, REQUEST)
    -> system prompt + session history + input
    -> [policy check (LLM_CALL, estimated cost) -> model chain (timeout, retries, shared breaker,
        fallback models) -> settle the real cost -> for each tool call: validate the arguments,
        policy check (TOOL_CALL), execute, feed the result or the error back] ...
    -> answer, session saved

bounded by ``maxSteps``, the request's deadline and ``maxRequestTokens``. It never raises to
the caller (only cancellation propagates): tool failures go back to the model, model failures
end in the rule-based fallback, anything unexpected in the fallback answer plus an ``error``
decision. Verdicts: DENIED ends in the polite refusal (status ``refused``); a dry-run denial is
recorded (``dry_run_denied``) and the action proceeds; ESCALATE stops the loop with status
``escalated`` and a :class:`pending.PendingAction` in :attr:`AgentOutcome.pending`, which
``handle(request, resume=pending)`` continues once a human approved (see
:mod:`pilothouse.runtime.pending`).

Every step produces one :class:`records.AgentDecision` (step numbers from 0, continuing across
a resume). The worker (serving) calls :meth:`Agent.handle`; :func:`build_agent` wires an agent
from a :class:`config.RuntimeConfig`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import httpx
import orjson
import redis.asyncio as aioredis
from opentelemetry import trace

from pilothouse.runtime import (
    breaker,
    config,
    conversations,
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
    steps,
    tools,
)

__all__ = ["FALLBACK_REASONS", "Agent", "AgentOutcome", "build_agent"]

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("pilothouse.runtime")

DEADLINE_GRACE_SECONDS: Final = 0.25
"""How long past its deadline a request may run (e.g. a policy hook that hangs) before it is
cut off and answered by the fallback."""


def _llm_error_reasons() -> tuple[str, ...]:
    found: set[str] = set()
    pending_classes: list[type[errors.LLMError]] = [errors.LLMError]
    while pending_classes:
        cls = pending_classes.pop()
        found.add(cls.reason)
        pending_classes.extend(cls.__subclasses__())
    return tuple(sorted(found))


FALLBACK_REASONS: Final = _llm_error_reasons()
"""The ``reason`` label values of ``pilothouse_fallbacks_total`` known in advance: why a model
call failed (every :class:`errors.LLMError` family). A request stopped for another reason (a
budget, a resumed conversation that no longer matches) adds its own series when it happens."""


@dataclass(frozen=True, slots=True)
class AgentOutcome:
    """What :meth:`Agent.handle` returns: the result, the decision records, and (when the status
    is ``escalated``) the action waiting for approval with the conversation to resume."""

    result: requests.AgentResult
    decisions: tuple[records.AgentDecision, ...]
    pending: pending.PendingAction | None = None


class Agent:
    """One agent's loop, with its collaborators. Safe to share between concurrent requests."""

    def __init__(
        self,
        cfg: config.RuntimeConfig,
        *,
        chain: fallback.ModelChain,
        toolbox: tools.Toolbox,
        session_store: sessions.SessionStore | None,
        policy_hook: hooks.PolicyHook | None = None,
        clock: retries.Clock = time,
        closers: Sequence[Any] = (),
    ) -> None:
        self.cfg = cfg
        self.chain = chain
        self.toolbox = toolbox
        self.sessions = session_store
        self.hook: hooks.PolicyHook = policy_hook or hooks.AllowAll()
        # Without policies there is nothing to check (nor to trace) before each action.
        self._no_policies = type(self.hook) is hooks.AllowAll
        self.clock = clock
        self.rules = fallback.Rules(cfg.fallback)
        self._closers = tuple(closers)
        for reason in FALLBACK_REASONS:  # at 0 from the start (see metrics.py)
            metrics.FALLBACKS.labels(reason)
        self._tools_chars = len(orjson.dumps(toolbox.definitions)) if cfg.tools else 0

    async def aclose(self) -> None:
        """Close the HTTP pools the agent opened."""
        for closer in self._closers:
            await closer.aclose()

    async def __aenter__(self) -> Agent:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------------------ entry

    async def handle(
        self,
        request: requests.AgentRequest,
        resume: pending.PendingAction | None = None,
    ) -> AgentOutcome:
        """Answer one request (or continue an approved escalation). Never raises."""
        timeout = request.timeout_seconds or self.cfg.reliability.request_timeout_seconds
        run = steps.Run(self.cfg, request, retries.Deadline.within(timeout, self.clock), self.clock)
        try:
            async with asyncio.timeout(timeout + DEADLINE_GRACE_SECONDS):
                return await self._run(run, resume)
        except TimeoutError:
            log.warning("request %s ran past its deadline", request.request_id)
            return self._rule_fallback(run, "deadline_exceeded", "request deadline passed")
        except Exception as e:
            log.exception("request %s failed unexpectedly", request.request_id)
            run.record("error", outcome="error", error=f"{type(e).__name__}: {e}")
            return self._rule_fallback(run, "internal_error", type(e).__name__)

    async def _run(self, run: steps.Run, resume: pending.PendingAction | None) -> AgentOutcome:
        if resume is not None:
            if resume.request_id == run.request.request_id:
                run.step = resume.snapshot.next_step  # (request_id, step) stays unique
            problem = pending.mismatch(run.request, resume, self.cfg.agent)
            if problem:
                run.record("resume", outcome="error", error=problem)
                run.stop_reason = "resume_mismatch"
                return self._finish(run, requests.ResultStatus.FAILED, self.cfg.incomplete_response)
            run.record("resume", result=resume.escalation_id, policy=resume.policy or None)
        if resume is None or resume.kind is hooks.ActionKind.REQUEST:
            admitted = await self._check(
                run, run.action(hooks.ActionKind.REQUEST, approved=resume is not None)
            )
            if admitted is not None:
                return admitted
            await self._start_conversation(run)
        else:
            run.restore(resume.snapshot)
            if resume.kind is hooks.ActionKind.TOOL_CALL:
                stopped = await self._run_tools(
                    run, resume.snapshot.pending_calls(), approved=resume.snapshot.tool_call_id
                )
                if stopped is not None:
                    return stopped
        return await self._loop(
            run, approve_llm=resume is not None and resume.kind is hooks.ActionKind.LLM_CALL
        )

    async def _start_conversation(self, run: steps.Run) -> None:
        context: dict[str, Any] = {}
        history: tuple[dict[str, Any], ...] = ()
        request = run.request
        if request.session_id and self.sessions is not None:
            try:
                session = await self.sessions.load(request.session_id)
                history, context = session.messages, session.context
            except errors.DependencyUnavailable as e:
                log.warning("request %s: %s; answering without history", request.request_id, e)
                run.record("session_load", outcome="error", error=str(e))
        if request.history:
            history = (*history, *(t.model_dump() for t in request.history))
        repair = conversations.repair_history(history)
        run.start(self.cfg.system_prompt, repair.messages, context)
        if repair.needed:
            # Stored by an older runtime, or cut by a trim: sent and kept in the valid form.
            run.history_rewritten = True
            run.record(
                "session_repair",
                params={"changed": repair.changed, "dropped": repair.dropped},
                result=repair.describe(),
            )

    # ------------------------------------------------------------------------------ loop

    async def _loop(self, run: steps.Run, *, approve_llm: bool) -> AgentOutcome:
        while True:
            if run.llm_steps >= self.cfg.max_steps:
                return await self._stop(run, "max_steps", f"maxSteps={self.cfg.max_steps} reached")
            budget = self.cfg.max_request_tokens
            if budget is not None and run.tokens >= budget:
                return await self._stop(
                    run, "token_budget", f"{run.tokens} of {budget} tokens used"
                )
            if run.deadline.expired:
                return await self._answer_by_rules(run, "deadline_exceeded")
            action = run.llm_action(self.cfg.model, self._tools_chars, approved=approve_llm)
            approve_llm = False
            stopped = await self._check(run, action)
            if stopped is not None:
                return stopped
            outcome = await self.chain.complete(
                run.messages,
                tools=self.toolbox.definitions,
                deadline=run.deadline,
                tool_choice=self.cfg.tool_choice,
                first_call=not run.model_answered,
            )
            run.llm_steps += 1
            run.record_attempts(outcome)
            await self._settle(run, action, outcome.cost_usd)
            completion = outcome.completion
            if completion is None or outcome.model is None:
                if self._recover(run, outcome):
                    continue
                return await self._no_answer(run, outcome)
            if outcome.model is not self.cfg.model:
                run.note_fallback(outcome.fallback_reason or "llm_error")
            run.model = completion.model
            run.messages.append(completion.assistant_message())
            if not completion.tool_calls:
                return await self._complete(run, completion.content or "")
            stopped = await self._run_tools(run, list(completion.tool_calls), approved=None)
            if stopped is not None:
                return stopped

    # ------------------------------------------------------------------------------ recovery

    def _recover(self, run: steps.Run, outcome: fallback.ChainOutcome) -> bool:
        """After the request's own body was refused, change what is sent and ask once more:
        trim the oldest history on a context overflow (then, if what was kept still does not
        fit, all of it), drop a history the provider cannot read on a validation error. Each
        at most once per request; False when there is nothing to
        change (then :meth:`_no_answer` ends the request)."""
        error = _primary_error(outcome)
        history = run.history
        if isinstance(error, errors.LLMContextOverflow):
            if not history or "trim_all" in run.recoveries:
                return False
            if "trim" in run.recoveries:  # what was kept still does not fit: leave it all out
                run.recoveries.add("trim_all")
                drop = None
            else:
                run.recoveries.add("trim")
                drop = self._tokens_to_drop(run, error)
            kept = conversations.trim_history(history, drop)
            run.replace_history(kept)
            run.record(
                "history_trim",
                params={"dropped_messages": len(history) - len(kept), "kept": len(kept)},
                error=str(error),
                result=f"{len(history) - len(kept)} oldest message(s) of the session left out",
            )
            return True
        if isinstance(error, errors.LLMRequestInvalid):
            if "drop" in run.recoveries or not history:
                return False
            run.recoveries.add("drop")
            run.replace_history(())
            run.record(
                "session_repair",
                outcome="error",
                params={"dropped": len(history), "changed": 0},
                error=str(error),
                result=f"the provider refused the conversation: {len(history)} message(s) of "
                "session history left out and the session started afresh",
            )
            return True
        return False

    def _tokens_to_drop(self, run: steps.Run, error: errors.LLMContextOverflow) -> int | None:
        """How much history to leave out: from the server's numbers, else the model's
        ``contextWindowTokens``; None (all of it) when neither is known."""
        reserve = self.cfg.model.max_output_tokens or steps.DEFAULT_OUTPUT_ESTIMATE
        if error.limit_tokens is not None and error.requested_tokens is not None:
            return max(error.requested_tokens - error.limit_tokens, 0) + reserve
        window = self.cfg.model.context_window_tokens
        if window is not None:
            size = conversations.estimate_tokens(run.messages) + self._tools_chars // 4
            return max(size + reserve - window, 0) + reserve
        return None

    async def _no_answer(self, run: steps.Run, outcome: fallback.ChainOutcome) -> AgentOutcome:
        reason = outcome.fallback_reason or "llm_error"
        error = _primary_error(outcome)
        if isinstance(error, errors.LLMContextOverflow):
            return self._reject_too_long(run, error)
        if reason == errors.LLMEmptyAnswer.reason:
            return await self._stop(run, reason, "the model answered nothing, twice")
        return await self._answer_by_rules(run, reason)

    def _reject_too_long(self, run: steps.Run, error: errors.LLMContextOverflow) -> AgentOutcome:
        """The input alone does not fit: say so, rather than a fallback answer."""
        limit = f" of {error.limit_tokens} tokens" if error.limit_tokens else ""
        message = (
            f"The input is too long for the model's context{limit}, even without the "
            "conversation's history; shorten it and try again."
        )
        run.stop_reason = "input_too_long"
        run.record("rejected", outcome="error", result=message, error=str(error))
        return self._finish(run, requests.ResultStatus.REJECTED, message, refusal_reason=message)

    async def _run_tools(
        self, run: steps.Run, calls: list[llm.ToolCall], *, approved: str | None
    ) -> AgentOutcome | None:
        for i, call in enumerate(calls):
            started = self.clock.monotonic()
            try:
                prepared = self.toolbox.prepare(call.id, call.name, call.arguments)
            except errors.ToolError as e:
                tools.count(call.name, e.reason, known=self.toolbox.knows(call.name))
                run.tool_failed(call, e, started)
                continue
            action = run.tool_action(prepared, approved=call.id == approved)
            stopped = await self._check(run, action, calls=calls[i:])
            if stopped is not None:
                tools.count(call.name, "escalated" if stopped.pending else "denied")
                return stopped
            try:
                result = await self.toolbox.execute(prepared, time_limit=run.deadline.remaining())
            except errors.ToolCallFailed as e:
                tools.count(call.name, e.reason)
                run.tool_failed(call, e, started, arguments=prepared.arguments)
                continue
            tools.count(call.name, "ok")
            run.tool_succeeded(call, prepared, result, started)
        return None

    # ------------------------------------------------------------------------------ policy

    async def _settle(self, run: steps.Run, action: hooks.Action, cost_usd: float) -> None:
        """Report the call's real cost, within the time the request has left: a slow hook must
        not let the request's deadline throw away the answer just received."""
        left = run.deadline.remaining() + DEADLINE_GRACE_SECONDS / 2
        try:
            async with asyncio.timeout(max(left, 0.0)):
                await self.hook.settle(action, cost_usd)
        except TimeoutError:
            log.warning(
                "request %s: cost of step %d (%.6f USD) not settled before the deadline",
                run.request.request_id,
                action.step,
                cost_usd,
            )

    async def _check(
        self,
        run: steps.Run,
        action: hooks.Action,
        *,
        calls: Sequence[llm.ToolCall] = (),
    ) -> AgentOutcome | None:
        """Ask the hook; None means go on (allowed, or denied in dry run)."""
        if self._no_policies:
            verdict = hooks.ALLOWED
        else:
            with _tracer.start_as_current_span(
                f"policy_check {action.kind.value}",
                attributes={
                    "pilothouse.action.kind": action.kind.value,
                    "pilothouse.action.approved": action.approved,
                },
            ) as span:
                verdict = await self.hook.check(action)
                span.set_attribute("pilothouse.policy.verdict", verdict.verdict.value)
                if verdict.policy:
                    span.set_attribute("pilothouse.policy.name", verdict.policy)
        if action.kind is hooks.ActionKind.REQUEST and verdict.verdict is hooks.Verdict.ALLOWED:
            run.record("request", input=action.input_text, params=run.request_params())
            return None
        if verdict.verdict is hooks.Verdict.ALLOWED:
            return None
        if verdict.dry_run:
            run.record_verdict(action, verdict, outcome="dry_run_denied")
            if action.kind is hooks.ActionKind.REQUEST:
                run.record("request", input=action.input_text, params=run.request_params())
            return None
        if verdict.verdict is hooks.Verdict.ESCALATE:
            return self._escalate(run, action, verdict, calls)
        return self._refuse(run, action, verdict)

    def _escalate(
        self,
        run: steps.Run,
        action: hooks.Action,
        verdict: hooks.PolicyResult,
        calls: Sequence[llm.ToolCall],
    ) -> AgentOutcome:
        pending_action = run.pending_action(action, verdict, calls)
        run.record_verdict(
            action, verdict, outcome="escalated", result=pending_action.escalation_id
        )
        result = run.result(
            requests.ResultStatus.ESCALATED,
            self.cfg.escalation_response,
            policy=verdict.policy or None,
            escalation_id=pending_action.escalation_id,
        )
        return AgentOutcome(result, tuple(run.decisions), pending_action)

    # ------------------------------------------------------------------------------ endings

    async def _complete(self, run: steps.Run, answer: str) -> AgentOutcome:
        run.record("answer", result=answer, model=run.model)
        await self._save_session(run, answer)
        return self._finish(run, requests.ResultStatus.COMPLETED, answer)

    async def _stop(self, run: steps.Run, reason: str, detail: str) -> AgentOutcome:
        """Out of steps or tokens: the incomplete answer, status ``failed``."""
        answer = self.cfg.incomplete_response
        run.stop_reason = reason
        run.record("stopped", outcome="error", result=answer, error=f"{reason}: {detail}")
        await self._save_session(run, answer)
        return self._finish(run, requests.ResultStatus.FAILED, answer)

    async def _answer_by_rules(self, run: steps.Run, reason: str) -> AgentOutcome:
        outcome = self._rule_fallback(run, reason, None)
        await self._save_session(run, outcome.result.answer)
        return outcome

    def _rule_fallback(self, run: steps.Run, reason: str, error: str | None) -> AgentOutcome:
        rule = self.rules.answer(run.request.input)
        run.note_fallback(reason)
        run.model = None
        run.record(
            "fallback",
            outcome="fallback",
            result=rule.text,
            error=error or reason,
            params={"rule": rule.rule} if rule.rule is not None else {},
        )
        return self._finish(run, requests.ResultStatus.FALLBACK, rule.text)

    def _refuse(
        self, run: steps.Run, action: hooks.Action, verdict: hooks.PolicyResult
    ) -> AgentOutcome:
        run.record_verdict(action, verdict, outcome="denied")
        reason = verdict.reason or f"denied by policy {verdict.policy or '(unnamed)'}"
        answer = self.cfg.refusal_response
        run.record("refused", outcome="denied", result=answer, policy=verdict.policy or None)
        return self._finish(
            run,
            requests.ResultStatus.REFUSED,
            answer,
            refusal_reason=reason,
            policy=verdict.policy or None,
            retry_after_seconds=verdict.retry_after_seconds,
        )

    async def _save_session(self, run: steps.Run, answer: str) -> None:
        """Keep the turn, within the time the request has left: a slow write must not let the
        request's own deadline throw the answer away (the turn is then not kept)."""
        request = run.request
        if not request.session_id or self.sessions is None or not run.started:
            return
        history = run.history if run.history_rewritten else None
        error: str | None = "no time left before the request's deadline"
        left = run.deadline.remaining() + DEADLINE_GRACE_SECONDS / 2
        if left > 0:
            try:
                async with asyncio.timeout(left):
                    await self.sessions.save(
                        request.session_id, run.turn_messages(answer), run.context, history=history
                    )
                error = None
            except TimeoutError:
                pass
            except errors.DependencyUnavailable as e:
                error = str(e)
        if error is not None:
            log.warning("request %s: session not saved: %s", request.request_id, error)
            run.record("session_save", outcome="error", error=error)

    def _finish(
        self, run: steps.Run, status: requests.ResultStatus, answer: str, **extra: Any
    ) -> AgentOutcome:
        if run.fallback_used:
            metrics.FALLBACKS.labels(run.fallback_reason or "llm_error").inc()
        return AgentOutcome(run.result(status, answer, **extra), tuple(run.decisions))


def _primary_error(outcome: fallback.ChainOutcome) -> errors.LLMError | None:
    """The last error of the first model tried (what the fallback reason was drawn from)."""
    first = outcome.attempts[0].model if outcome.attempts else None
    errs = [a.error for a in outcome.attempts if a.model is first and a.error is not None]
    return errs[-1] if errs else None


def build_agent(
    cfg: config.RuntimeConfig,
    *,
    redis: aioredis.Redis | None,
    policy_hook: hooks.PolicyHook | None = None,
    http_client: httpx.AsyncClient | None = None,
    clock: retries.Clock = time,
    rng: random.Random | None = None,
) -> Agent:
    """An :class:`Agent` wired from its config: LLM client, breakers in ``redis``, sessions in
    ``redis``, tools over ``http_client`` (one pool per endpoint when not given). Without Redis
    the breakers are per process and sessions are not kept. Close it with ``aclose()``."""
    client = llm.LLMClient(http_client=http_client, clock=clock)
    breakers = breaker.CircuitBreakers(
        redis,
        cfg.reliability.circuit_breaker,
        key_prefix=cfg.redis.key_prefix,
        namespace=cfg.namespace,
        agent=cfg.agent,
        clock=clock,
    )
    chain = fallback.ModelChain(
        cfg.models,
        client=client,
        breakers=breakers,
        retry=cfg.reliability.retry,
        rng=rng,
        clock=clock,
    )
    toolbox = tools.Toolbox(cfg.tools, http_client=http_client)
    store = (
        sessions.SessionStore(
            redis,
            cfg.sessions,
            key_prefix=cfg.redis.key_prefix,
            namespace=cfg.namespace,
            agent=cfg.agent,
        )
        if redis is not None
        else None
    )
    return Agent(
        cfg,
        chain=chain,
        toolbox=toolbox,
        session_store=store,
        policy_hook=policy_hook,
        clock=clock,
        closers=(client, toolbox),
    )
