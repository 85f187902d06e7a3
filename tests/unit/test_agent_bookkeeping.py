"""What the agent loop keeps per request, without I/O: the conversation it sends, the decision
records (step numbers, trace ids), the cost estimate given to policies, the session context
bounds, and the escalation snapshot (JSON round trip, who may resume it)."""

from __future__ import annotations

import orjson
import pytest

from pilothouse.runtime import (
    config,
    errors,
    hooks,
    llm,
    pending,
    requests,
    retries,
    sessions,
    steps,
)

CFG = config.RuntimeConfig(
    agent="support",
    system_prompt="You are helpful.",
    model=config.ModelConfig(
        endpoint="http://llm.example/v1",
        name="m1",
        max_output_tokens=100,
        pricing=config.ModelPricing(input_per_million_tokens=1.0, output_per_million_tokens=2.0),
    ),
    sessions=config.SessionConfig(max_context_bytes=256),
)


class Clock:
    def __init__(self) -> None:
        self.now = 10.0

    def time(self) -> float:
        return 1_750_000_000.0 + self.now

    def monotonic(self) -> float:
        return self.now


def new_run(text: str = "hello", **fields: object) -> steps.Run:
    clock = Clock()
    request = requests.AgentRequest(request_id="req-1", input=text, **fields)  # type: ignore[arg-type]
    return steps.Run(CFG, request, retries.Deadline.within(30, clock), clock)


def test_the_conversation_is_system_prompt_context_history_then_input() -> None:
    run = new_run("The order number is 12345")
    history = (
        {"role": "user", "content": "I want to return my order"},
        {"role": "assistant", "content": "What is your order number?"},
    )
    run.start(CFG.system_prompt, history, {"customer": "c-1"})
    assert [m["role"] for m in run.messages] == ["system", "system", "user", "assistant", "user"]
    assert run.messages[1]["content"] == 'Session context (JSON): {"customer":"c-1"}'
    assert run.messages[-1] == {"role": "user", "content": "The order number is 12345"}
    assert run.turn_start == 4


def test_the_turn_saved_to_the_session_ends_with_the_answer() -> None:
    run = new_run()
    run.start("", (), {})
    run.messages.append({"role": "assistant", "content": "Hi!"})
    assert run.turn_messages("Hi!") == [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "Hi!"},
    ]
    # A fallback answer that the model never gave is added.
    assert run.turn_messages("Sorry")[-1] == {"role": "assistant", "content": "Sorry"}


def test_decisions_are_numbered_from_zero_and_counted() -> None:
    run = new_run()
    first = run.record("request", input="hello")
    second = run.record("llm_call", outcome="error", error="HTTP 503", latency_s=0.25)
    assert (first.step, second.step) == (0, 1)
    assert second.latency_ms == 250.0
    assert second.request_id == "req-1"
    assert second.agent_id == "support"
    assert second.trace_id is None  # no span active
    assert second.timestamp.timestamp() == pytest.approx(1_750_000_010.0)


def test_the_llm_call_action_estimates_tokens_and_cost() -> None:
    run = new_run("x" * 396)
    run.start("", (), {})
    action = run.llm_action(CFG.model, tools_chars=0, approved=False)
    assert action.kind is hooks.ActionKind.LLM_CALL
    assert action.estimated_tokens == 100 + 100  # 396 chars / 4 + 1, plus maxOutputTokens
    assert action.estimated_cost_usd == pytest.approx((100 * 1.0 + 100 * 2.0) / 1_000_000)
    assert action.params["model"] == "m1"


def test_a_context_update_beyond_the_size_bound_is_dropped_with_a_reason() -> None:
    merged, problem = sessions.merge_context({"a": 1}, {"b": "x" * 300}, 256)
    assert merged == {"a": 1}
    assert problem is not None
    assert "maxContextBytes=256" in problem
    merged, problem = sessions.merge_context({"a": 1}, {"return_initiated": True}, 256)
    assert merged == {"a": 1, "return_initiated": True}
    assert problem is None


def test_history_never_starts_inside_a_tool_exchange() -> None:
    trimmed = [
        {"role": "tool", "tool_call_id": "c1", "content": "{}"},
        {"role": "assistant", "content": "done"},
        {"role": "user", "content": "thanks"},
        {"role": "assistant", "content": "welcome"},
    ]
    assert sessions.usable_history(trimmed) == tuple(trimmed[2:])
    assert sessions.usable_history(trimmed[:2]) == ()


def test_a_failed_tool_call_is_fed_back_to_the_model_as_its_result() -> None:
    run = new_run()
    run.start("", (), {})
    call = llm.ToolCall("call_9", "nope", "{}")
    run.tool_failed(call, errors.UnknownTool("there is no tool named 'nope'", tool="nope"), 10.0)
    assert run.messages[-1]["role"] == "tool"
    assert run.messages[-1]["tool_call_id"] == "call_9"
    assert orjson.loads(run.messages[-1]["content"]) == {"error": "there is no tool named 'nope'"}
    assert run.actions[-1].ok is False
    assert run.decisions[-1].outcome == "error"
    assert run.decisions[-1].action_params["reason"] == "unknown_tool"


def escalated() -> tuple[steps.Run, pending.PendingAction]:
    run = new_run("refund order 7", session_id="s-1")
    run.start(CFG.system_prompt, (), {"tier": "gold"})
    call = llm.ToolCall("call_1", "refund", '{"order": 7}')
    run.messages.append({"role": "assistant", "content": None, "tool_calls": [call.to_message()]})
    run.record("llm_call")
    action = hooks.Action(
        kind=hooks.ActionKind.TOOL_CALL,
        agent_id="support",
        request_id="req-1",
        step=run.step,
        tool_name="refund",
        params={"order": 7},
    )
    verdict = hooks.PolicyResult(hooks.Verdict.ESCALATE, policy="refunds", reason="needs a human")
    return run, run.pending_action(action, verdict, [call])


def test_an_escalation_snapshot_survives_a_json_round_trip() -> None:
    run, action = escalated()
    assert action.escalation_id == "esc-support-req-1-1"
    assert action.snapshot.next_step == 2  # the escalation's own decision takes step 1
    stored = orjson.dumps(action.model_dump(mode="json"))
    again = pending.PendingAction.model_validate(orjson.loads(stored))
    assert again == action
    assert again.snapshot.pending_calls() == [llm.ToolCall("call_1", "refund", '{"order": 7}')]
    assert again.snapshot.tool_call_id == "call_1"
    assert again.snapshot.context == {"tier": "gold"}
    restored = new_run("refund order 7", session_id="s-1")
    restored.restore(again.snapshot)
    assert restored.messages == run.messages
    assert restored.turn_start == run.turn_start


def test_only_the_approved_request_of_the_same_agent_may_resume() -> None:
    _, action = escalated()
    approved = requests.AgentRequest(
        request_id="req-1", input="refund order 7", approved_escalation=action.escalation_id
    )
    assert pending.mismatch(approved, action, "support") is None
    assert "not approved" in (
        pending.mismatch(
            approved.model_copy(update={"approved_escalation": None}), action, "support"
        )
        or ""
    )
    assert "belongs to request" in (
        pending.mismatch(approved.model_copy(update={"request_id": "req-2"}), action, "support")
        or ""
    )
    assert "belongs to agent" in (pending.mismatch(approved, action, "billing") or "")


def test_the_history_is_what_lies_between_the_system_messages_and_the_turn() -> None:
    history = (
        {"role": "user", "content": "I want to return my order"},
        {"role": "assistant", "content": "What is your order number?"},
    )
    run = new_run("12345")
    run.start(CFG.system_prompt, history, {"customer": "c-1"})
    assert run.history == list(history)

    run.replace_history(history[:0])

    assert [m["role"] for m in run.messages] == ["system", "system", "user"]
    assert (run.turn_start, run.history, run.history_rewritten) == (2, [], True)
    assert run.turn_messages("ok") == [
        {"role": "user", "content": "12345"},
        {"role": "assistant", "content": "ok"},
    ]


def test_a_resumed_run_finds_its_history_after_the_system_messages() -> None:
    messages = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "earlier"},
        {"role": "assistant", "content": "earlier answer"},
        {"role": "user", "content": "now"},
    ]
    run = new_run("now")
    run.restore(pending.Snapshot(messages=messages, turn_start=3, next_step=2))

    assert run.history == messages[1:3]
