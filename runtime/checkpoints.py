"""Durable step checkpoints: what a redelivered request resumes from, so that no completed
LLM call or tool call is made twice.

Why: a worker killed mid-request leaves its queue entry pending; another replica reclaims it
and, without checkpoints, runs it again from the first step, repeating LLM calls (cost) and
tool calls (side effects: a refund, a return label). With checkpoints the agent loop
(:mod:`pilothouse.runtime.agent`) stores, after every completed step and before the next one
starts, a :class:`Checkpoint`: the conversation and bookkeeping of the loop (a
:class:`pending.Snapshot`, the same shape an escalation parks), the decision records so far, and
what is left of the step (tool calls of the model's turn not run yet, or the final answer). A
redelivery loads it and continues after the last completed step, with the same step numbers, so
the audit trail holds each step once.

What stays at risk is the step that was in flight when the worker died: it runs at most once
more, and a tool call carries the same ``Idempotency-Key`` both times
(:func:`idempotency_key`: request id, agent, LLM step and the model's tool call id, all restored
from the checkpoint), so a tool server that deduplicates on it does the work once.

This module is the pure part (codec, key, the store's protocol); the store is the work queue
(:meth:`pilothouse.runtime.queue.WorkQueue.save_checkpoint`), which deletes a request's
checkpoint in the same script that stores its answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from pydantic import TypeAdapter, ValidationError

from pilothouse.runtime import errors, pending, records

__all__ = ["Checkpoint", "CheckpointStore", "decode", "encode", "idempotency_key"]

_DECISIONS = TypeAdapter(list[records.AgentDecision])


class CheckpointStore(Protocol):
    """Where checkpoints are kept (Redis, through the work queue); both raise
    :class:`errors.DependencyUnavailable` when the store cannot be reached."""

    async def save_checkpoint(self, request_id: str, data: bytes) -> None: ...

    async def load_checkpoint(self, request_id: str) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The loop's state after its last completed step."""

    snapshot: pending.Snapshot
    """Conversation, context and counters; ``pending_tool_calls`` are the calls of the model's
    last turn not run yet, ``next_step`` the number of the next decision record."""
    decisions: tuple[records.AgentDecision, ...]
    """The decision records of the completed steps (audited with the final answer)."""
    approved_escalation: str | None
    """The approval the run continued from, if any (a checkpoint of another run is ignored)."""
    answer: str | None
    """The model's final answer, when the last completed step was it."""


def idempotency_key(request_id: str, agent: str, llm_step: int, call_id: str) -> str:
    """The ``Idempotency-Key`` of a tool call: the same on every delivery of the request
    (the LLM step and the model's call id come from the checkpointed model turn)."""
    return f"{agent}:{request_id}:{llm_step}:{call_id}"


def encode(
    snapshot: dict[str, Any],
    decisions: Sequence[dict[str, Any]],
    *,
    approved_escalation: str | None,
    answer: str | None,
) -> bytes:
    """A checkpoint as JSON, from the snapshot's fields and the decision records, both already
    as plain data (the loop keeps them so, dumping each record once: this runs every step)."""
    return orjson.dumps(
        {"s": snapshot, "d": decisions, "e": approved_escalation, "a": answer},
        option=orjson.OPT_NAIVE_UTC,
    )


def decode(data: bytes) -> Checkpoint:
    """The inverse of :func:`encode`; :class:`errors.UsageError` names what is wrong."""
    try:
        doc = orjson.loads(data)
        return Checkpoint(
            snapshot=pending.Snapshot.model_validate(doc["s"]),
            decisions=tuple(_DECISIONS.validate_python(doc["d"])),
            approved_escalation=doc.get("e"),
            answer=doc.get("a"),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValidationError) as e:
        raise errors.UsageError(f"unreadable step checkpoint: {type(e).__name__}: {e}") from e
