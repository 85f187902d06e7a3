"""LLM as judge: an OpenAI-compatible model grades an answer against a rubric.

Used by the ``judge`` expectation kind (:mod:`expectations`) when the run has a judge model
(``pilothouse eval --judge-endpoint URL --judge-model NAME [--judge-api-key-env VAR]``). The
judge is asked for a line ``SCORE: <0..1>`` and a line ``REASON: ...``; :func:`parse_score`
also reads ``8/10``, ``80%`` and ``Score = 0.8``, so models that drift from the format still
count. A judge that cannot be reached or answers without a score fails that expectation, with
the reason, rather than the run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from pilothouse.runtime import config, errors

__all__ = ["JUDGE_SYSTEM_PROMPT", "Judge", "Verdict", "build_messages", "parse_score"]

JUDGE_SYSTEM_PROMPT = (
    "You are a strict evaluator of a customer-facing AI agent. Grade the agent's final answer "
    "against the rubric. Reply with exactly two lines: 'SCORE: <a number from 0 to 1>' and "
    "'REASON: <one sentence>'."
)

_NUMBER = r"(\d+(?:\.\d+)?|\.\d+)"
_SCORE_PATTERNS = (
    re.compile(rf"\bscore\b\s*(?:is|[:=])?\s*{_NUMBER}\s*/\s*{_NUMBER}", re.IGNORECASE),
    re.compile(rf"\bscore\b\s*(?:is|[:=])?\s*{_NUMBER}\s*%", re.IGNORECASE),
    re.compile(rf"\bscore\b\s*(?:is|[:=])?\s*{_NUMBER}", re.IGNORECASE),
    re.compile(rf"^\s*{_NUMBER}\s*/\s*{_NUMBER}\s*$", re.MULTILINE),
    re.compile(rf"^\s*{_NUMBER}\s*$", re.MULTILINE),
)
_REASON = re.compile(r"\breason\b\s*[:=]\s*(.+)", re.IGNORECASE)


def parse_score(text: str) -> float | None:
    """The score in a judge's answer, in [0, 1]; None when there is none or it is out of range.

    Reads ``SCORE: 0.8``, ``Score: 8/10``, ``score = 80%`` and a bare ``0.8`` line.
    """
    for pattern in _SCORE_PATTERNS:
        m = pattern.search(text)
        if m is None:
            continue
        value = float(m.group(1))
        if m.lastindex == 2:
            denominator = float(m.group(2))
            if denominator <= 0:
                return None
            value /= denominator
        elif "%" in m.group(0):
            value /= 100
        return value if 0.0 <= value <= 1.0 else None
    return None


def build_messages(rubric: str, inputs: Sequence[str], answer: str) -> list[dict[str, str]]:
    """The chat messages sent to the judge (the request is in the last user message)."""
    conversation = "\n".join(f"User: {text}" for text in inputs)
    prompt = (
        "EVALUATION REQUEST\n"
        f"Rubric: {rubric}\n"
        f"Conversation:\n{conversation}\n"
        f"Agent answer: {answer}\n"
        "Reply with 'SCORE: <0..1>' and 'REASON: <one sentence>'."
    )
    return [
        {"role": "system", "content": JUDGE_SYSTEM_PROMPT},
        {"role": "user", "content": prompt},
    ]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The judge's grade: ``score`` is None when the judge gave none (``reason`` says why)."""

    score: float | None
    reason: str
    raw: str = ""


class Judge:
    """A judge model reached over the OpenAI Chat Completions API."""

    def __init__(
        self,
        model: config.ModelConfig,
        *,
        environ: dict[str, str] | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.model = model
        self._headers: dict[str, str] = {}
        if model.api_key_env is not None:
            key = env.get(model.api_key_env)
            if not key:
                raise errors.UsageError(
                    f"judge: the environment variable {model.api_key_env} (API key) is not set"
                )
            self._headers["Authorization"] = f"Bearer {key}"
        self._client = client or httpx.AsyncClient(timeout=model.timeout_seconds)
        self._owns_client = client is None

    async def aclose(self) -> None:
        """Close the HTTP client (when this judge created it)."""
        if self._owns_client:
            await self._client.aclose()

    async def grade(self, rubric: str, inputs: Sequence[str], answer: str) -> Verdict:
        """Ask the judge; failures become a verdict without a score."""
        body: dict[str, Any] = {
            "model": self.model.name,
            "messages": build_messages(rubric, inputs, answer),
            "temperature": 0 if self.model.temperature is None else self.model.temperature,
        }
        if self.model.max_output_tokens is not None:
            body["max_tokens"] = self.model.max_output_tokens
        url = self.model.endpoint.rstrip("/") + "/chat/completions"
        try:
            response = await self._client.post(url, json=body, headers=self._headers)
        except httpx.HTTPError as e:
            return Verdict(None, f"judge call failed: {type(e).__name__}: {e}")
        if response.status_code != 200:
            status = response.status_code
            return Verdict(None, f"judge answered HTTP {status}: {response.text[:200]}")
        try:
            content = response.json()["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError):
            return Verdict(None, f"judge answer is not a chat completion: {response.text[:200]}")
        score = parse_score(content)
        m = _REASON.search(content)
        reason = m.group(1).strip() if m else content.strip()[:300]
        if score is None:
            return Verdict(None, f"no score in the judge's answer {content[:200]!r}", content)
        return Verdict(score, reason, content)
