"""A step checkpoint holds everything the loop needs to continue after its last completed step
(conversation, context, counters, decision records, the tool calls left, the final answer), and
the tool call's idempotency key is the same when computed again from the restored state."""

from __future__ import annotations

import pytest

from pilothouse.runtime import checkpoints, config, errors, llm, requests, retries, steps, tools

CFG = config.RuntimeConfig(
    agent="support",
    system_prompt="You are helpful.",
    model=config.ModelConfig(endpoint="http://llm.example/v1", name="m1"),
    tools=(
        config.ToolConfig(
            name="initiate_return",
            description="Start a return.",
            url="http://tools.example/returns",
            method="POST",
        ),
    ),
)


class Clock:
    def time(self) -> float:
        return 1_750_000_000.0

    def monotonic(self) -> float:
        return 10.0


def new_run(**fields: object) -> steps.Run:
    clock = Clock()
    request = requests.AgentRequest(request_id="req-1", input="Return order 7", **fields)  # type: ignore[arg-type]
    return steps.Run(CFG, request, retries.Deadline.within(30, clock), clock)


def test_a_run_restored_from_its_checkpoint_continues_where_it_stopped() -> None:
    run = new_run()
    run.start(CFG.system_prompt, (), {"customer": "c-1"})
    run.record("request", input="Return order 7")
    run.llm_steps = 1
    run.input_tokens, run.output_tokens, run.cost_usd = 30, 12, 0.002
    first = llm.ToolCall("call_1", "initiate_return", '{"order_id": "7"}')
    second = llm.ToolCall("call_2", "initiate_return", '{"order_id": "8"}')
    run.messages.append({"role": "assistant", "content": None, "tool_calls": []})
    prepared = tools.PreparedCall(CFG.tools[0], "call_1", {"order_id": "7"})
    key = run.idempotency_key(first)
    run.tool_succeeded(
        first,
        prepared,
        tools.ToolResult({"ok": True}, {"returned": True}),
        10.0,
        idempotency_key=key,
    )
    data = run.checkpoint([second])

    saved = checkpoints.decode(data)
    again = new_run()
    again.resume_from(saved)
    assert again.messages == run.messages
    assert again.context == {"customer": "c-1", "returned": True}
    assert (again.llm_steps, again.tool_calls, again.input_tokens) == (1, 1, 30)
    assert again.cost_usd == pytest.approx(0.002)
    assert again.actions == run.actions
    assert again.step == run.step == 2
    assert [d.model_dump() for d in again.decisions] == [d.model_dump() for d in run.decisions]
    assert saved.snapshot.pending_calls() == [second]
    assert saved.answer is None
    assert again.idempotency_key(first) == key == "support:req-1:1:call_1"
    assert run.decisions[-1].action_params["idempotency_key"] == key
    # Numbering continues: the next record is step 2 on both.
    assert again.record("resume").step == 2


def test_a_checkpoint_of_the_final_answer_and_its_approval_travel_with_it() -> None:
    run = new_run(approved_escalation="esc-1")
    run.start("", (), {})
    saved = checkpoints.decode(run.checkpoint([], answer="Done."))
    assert saved.answer == "Done."
    assert saved.approved_escalation == "esc-1"
    assert saved.snapshot.pending_tool_calls == []


@pytest.mark.parametrize("data", [b"", b"{}", b'{"s": {"messages": 3}, "d": []}', b"[1]"])
def test_an_unreadable_checkpoint_is_a_usage_error_naming_it(data: bytes) -> None:
    with pytest.raises(errors.UsageError, match="unreadable step checkpoint"):
        checkpoints.decode(data)
