"""The start-up check that each configured model is one its server offers.

Why: a typo in a model name (``gpt-4o-mnii``), or a local server started with another model,
shows up only as every request failing over to the fallback. At start the runtime lists each
endpoint's models (``GET {endpoint}/models``, which OpenAI, Azure OpenAI, vLLM, llama.cpp,
Ollama and LiteLLM all serve) and, when the configured name is not among them, logs a warning
and sets ``pilothouse_llm_model_offered{agent, model}`` to 0 (1 when offered). A server that
cannot list its models (404, an error, no answer) is logged at info level and leaves the
metric unset: not knowing is not a failure. Called by :mod:`pilothouse.runtime.serving` once
the runtime started, in the background (it never delays readiness).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from pilothouse.runtime import config, errors, llm, metrics

__all__ = ["ModelCheck", "check_models", "judge"]

log = logging.getLogger(__name__)

LIST_TIMEOUT_SECONDS: Final = 5.0

Verdict = Literal["offered", "not_offered", "unknown"]


@dataclass(frozen=True, slots=True)
class ModelCheck:
    """What the check found for one configured model."""

    model: config.ModelConfig
    verdict: Verdict
    detail: str


def judge(name: str, listed: Sequence[str] | None) -> Verdict:
    """Whether ``name`` is offered, given the ids the server listed (None: it could not say).
    Servers that prefix ids with their provider (``openai/gpt-4o``) count too."""
    if listed is None:
        return "unknown"
    if name in listed or any(i.rsplit("/", 1)[-1] == name for i in listed):
        return "offered"
    return "not_offered"


async def check_models(
    client: llm.LLMClient, agent: str, models: Sequence[config.ModelConfig]
) -> list[ModelCheck]:
    """List each model's server once and judge every configured model; never raises."""
    results = []
    for model in models:
        listed: list[str] | None
        try:
            listed = await client.list_models(model, time_limit=LIST_TIMEOUT_SECONDS)
            detail = f"the server offers {len(listed)} model(s)"
        except errors.LLMError as e:
            listed, detail = None, str(e)
        verdict = judge(model.name, listed)
        if verdict != "unknown":
            metrics.LLM_MODEL_OFFERED.labels(agent=agent, model=model.key).set(
                1 if verdict == "offered" else 0
            )
        if verdict == "not_offered":
            shown = ", ".join((listed or [])[:20])
            log.warning(
                "model %s is not offered by %s (it lists: %s); calls to it will likely fail",
                model.name,
                model.endpoint,
                shown or "nothing",
            )
            detail = f"not among the {len(listed or [])} model(s) the server lists: {shown}"
        else:
            log.info("could not list the models of %s: %s", model.endpoint, detail)
        results.append(ModelCheck(model, verdict, detail))
    return results
