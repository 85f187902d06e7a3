"""The LLM client: one OpenAI-compatible Chat Completions call, classified and measured.

Why: every provider Pilothouse talks to (OpenAI, Azure, vLLM, Ollama, LiteLLM, the mock) speaks
Chat Completions; this module is the only one that does, so the rest of the runtime sees a
:class:`Completion` or an :class:`errors.LLMError` of a known family, never an httpx exception:

* transient (retried): timeout, connection error, 429 (with ``Retry-After`` in seconds), 5xx, 408;
* permanent (next model): other 4xx, a 2xx body that is not a valid completion, a missing key;
* the request's own fault, whatever the status (:func:`classify_status` reads what the error
  says): a context overflow (:class:`errors.LLMContextOverflow`, with the numbers the server
  gave) or a validation error (:class:`errors.LLMRequestInvalid`); neither is retried nor held
  against the breaker. Up to :data:`ERROR_TEXT_CHARS` of the server's error text are kept.

Messages are normalised before they are sent (:mod:`pilothouse.runtime.conversations`), and
``tool_choice`` is sent the way the OpenAI API defines it. Authentication: ``Authorization:
Bearer <key>`` or the key in another header (``api-key`` for Azure OpenAI), extra headers from
Secrets, an ``api-version`` query parameter and a custom CA bundle per model.
:meth:`LLMClient.list_models` reads ``GET /models`` for the start-up model check.

One :class:`httpx.AsyncClient` (a connection pool) per endpoint, shared by every model and
request of the process. Each call is one span ``chat {model}`` with the GenAI semantic
convention attributes, one observation of ``pilothouse_llm_request_duration_seconds``, and adds
its tokens and cost (from the model's ``pricing``) to the counters. The API key is read from the
environment variable named by ``apiKeyEnv``. Called by :mod:`pilothouse.runtime.fallback`.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import re
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import orjson
from opentelemetry import trace

from pilothouse.runtime import config, conversations, errors, metrics, retries

__all__ = [
    "ERROR_TEXT_CHARS",
    "TOKEN_KINDS",
    "TOKEN_KIND_INPUT",
    "TOKEN_KIND_OUTPUT",
    "Completion",
    "LLMClient",
    "ToolCall",
    "classify_error_text",
    "classify_status",
    "effective_tool_choice",
    "parse_completion",
    "parse_retry_after",
    "tool_choice_param",
]

_tracer = trace.get_tracer("pilothouse.runtime")

DEFAULT_LIMITS: Final = httpx.Limits(max_connections=200, max_keepalive_connections=50)
TOKEN_KIND_INPUT: Final = "input"
TOKEN_KIND_OUTPUT: Final = "output"
TOKEN_KINDS: Final = (TOKEN_KIND_INPUT, TOKEN_KIND_OUTPUT)
"""Values of the ``kind`` label of ``pilothouse_llm_tokens_total``."""

ERROR_TEXT_CHARS: Final = 4096
"""How much of a provider's error text is kept (in the error, hence the decision records)."""

# What servers say when the input does not fit: OpenAI and vLLM ("maximum context length is
# 8192 tokens. However, you requested 9000 tokens"), llama.cpp ("exceeds the available context
# size", "exceed_context_size_error", n_ctx), Ollama, TGI, Anthropic-style gateways.
_CONTEXT_OVERFLOW = re.compile(
    r"context_length_exceeded|maximum context length|context length|context size|"
    r"context window|exceed_context_size|n_ctx|prompt is too long|too many tokens|"
    r"input is too long|tokens? exceeds?",
    re.IGNORECASE,
)
# What servers say when the request's body is at fault: OpenAI's invalid_request_error,
# pydantic (vLLM, LiteLLM: "validation error", "Input should be a valid string", "Field
# required"), llama.cpp's JSON library ("[json.exception.type_error.302] type must be string,
# but is null"), serde (Rust servers: "invalid type: null, expected a string", "missing field").
_INVALID_REQUEST = re.compile(
    r"invalid_request_error|validation error|input should be|field required|"
    r"json\.exception|type must be|invalid type|missing field|expected a string|"
    r"must be a string|is not of type|invalid value for|unrecognized request argument|"
    r"extra inputs are not permitted|does not match the schema",
    re.IGNORECASE,
)
_NUMBERS = (
    # OpenAI / vLLM: "maximum context length is 8192 tokens. However, you requested 9000 ..."
    re.compile(r"maximum context length is (\d+)\D+?(?:requested|resulted in|have) (\d+)", re.I),
    # llama.cpp: {"n_prompt_tokens": 9000, "n_ctx": 8192}
    re.compile(r'"n_ctx"\s*:\s*(\d+)\D+?"n_prompt_tokens"\s*:\s*(\d+)'),
)
_NUMBERS_REVERSED = re.compile(r'"n_prompt_tokens"\s*:\s*(\d+)\D+?"n_ctx"\s*:\s*(\d+)')


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the model asks for; ``arguments`` is the JSON text it sent."""

    id: str
    name: str
    arguments: str

    def to_message(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True, slots=True)
class Completion:
    """A model's answer: text, tool calls, or both; with usage and cost."""

    content: str | None
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str | None
    model: str
    """The model that answered, as the response says (may differ from the one asked)."""
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0

    @property
    def empty(self) -> bool:
        """Neither text (blank counts as none) nor tool calls: an incomplete response."""
        return not self.tool_calls and not (self.content or "").strip()

    def assistant_message(self) -> dict[str, Any]:
        """The message to append to the conversation, normalised: ``content`` is a string."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content or ""}
        if self.tool_calls:
            message["tool_calls"] = [c.to_message() for c in self.tool_calls]
        return message


def effective_tool_choice(
    agent_choice: str | None, model_choice: str | None, *, first_call: bool
) -> str | None:
    """The ``tool_choice`` of one call: the model's override, else the agent's. A forced
    choice (``required`` or a tool's name) holds for the first call of a request only; later
    calls send ``auto``, or the model could never answer in words."""
    choice = model_choice if model_choice is not None else agent_choice
    if first_call or choice in (None, "auto", "none"):
        return choice
    return "auto"


def tool_choice_param(choice: str | None) -> str | dict[str, Any] | None:
    """``toolChoice`` as the OpenAI API takes it: the keyword, or the named-function object."""
    if choice is None or choice in config.TOOL_CHOICES:
        return choice
    return {"type": "function", "function": {"name": choice}}


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP date; None if absent."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def _malformed(model: config.ModelConfig, what: str) -> errors.LLMMalformedResponse:
    return errors.LLMMalformedResponse(
        f"{model.key}: malformed completion: {what}", model=model.key
    )


def _int(value: Any, default: int = 0) -> int:
    return (
        value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default
    )


def parse_completion(body: bytes, model: config.ModelConfig, latency_s: float) -> Completion:
    """A Chat Completions response body as a :class:`Completion`; raise on anything else."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise _malformed(model, f"not JSON ({e})") from e
    if not isinstance(doc, dict):
        raise _malformed(model, "the body is not a JSON object")
    choices = doc.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _malformed(model, "no choices")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise _malformed(model, "choices[0].message is missing")
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise _malformed(model, "choices[0].message.content is not a string")
    calls: list[ToolCall] = []
    raw_calls = message.get("tool_calls") or []
    if not isinstance(raw_calls, list):
        raise _malformed(model, "choices[0].message.tool_calls is not an array")
    for i, raw in enumerate(raw_calls):
        function = raw.get("function") if isinstance(raw, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise _malformed(model, f"tool_calls[{i}] has no function name")
        arguments = function.get("arguments", "")
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments).decode()  # some servers send an object
        call_id = raw.get("id")
        calls.append(
            ToolCall(
                id=call_id if isinstance(call_id, str) and call_id else f"call_{i}",
                name=function["name"],
                arguments=arguments,
            )
        )
    if content is None and not calls:
        raise _malformed(model, "neither content nor tool calls")
    usage = doc.get("usage")
    if usage is not None and not isinstance(usage, dict):
        raise _malformed(model, "usage is not an object")
    usage = usage or {}
    input_tokens = _int(usage.get("prompt_tokens"))
    output_tokens = _int(usage.get("completion_tokens"))
    finish = choices[0].get("finish_reason")
    answered_by = doc.get("model")
    return Completion(
        content=content,
        tool_calls=tuple(calls),
        finish_reason=finish if isinstance(finish, str) else None,
        model=answered_by if isinstance(answered_by, str) and answered_by else model.name,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=model.pricing.cost(input_tokens, output_tokens),
        latency_s=latency_s,
    )


def _token_numbers(text: str) -> tuple[int | None, int | None]:
    for pattern in _NUMBERS:
        found = pattern.search(text)
        if found:
            return int(found.group(1)), int(found.group(2))
    found = _NUMBERS_REVERSED.search(text)
    if found:
        return int(found.group(2)), int(found.group(1))
    return None, None


def classify_error_text(status: int, text: str) -> str | None:
    """Whether an error answer blames the request itself: ``context_length_exceeded``,
    ``invalid_request``, or None (the provider's own trouble, or nothing said). 429, 401 and
    403 are never the body's fault."""
    if status in (401, 403, 404, 408, 429) or not text:
        return None
    if _CONTEXT_OVERFLOW.search(text):
        return errors.LLMContextOverflow.reason
    if _INVALID_REQUEST.search(text) or status in (413, 422):
        return errors.LLMRequestInvalid.reason
    return None


def classify_status(
    response: httpx.Response,
    model: config.ModelConfig,
    now: float,
    *,
    secrets: Sequence[str] = (),
) -> errors.LLMError:
    """The error for an HTTP error answer (``now``: wall time, for a date ``Retry-After``).
    ``secrets`` (the key and secret headers sent) are masked if the server echoes them."""
    status = response.status_code
    text = response.text
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    excerpt = text[:ERROR_TEXT_CHARS].strip()
    message = f"{model.key}: HTTP {status}" + (f": {excerpt}" if excerpt else "")
    blamed = classify_error_text(status, text)
    if blamed == errors.LLMContextOverflow.reason:
        limit, requested = _token_numbers(text)
        return errors.LLMContextOverflow(
            message, model=model.key, status=status, limit_tokens=limit, requested_tokens=requested
        )
    if blamed == errors.LLMRequestInvalid.reason:
        return errors.LLMRequestInvalid(message, model=model.key, status=status)
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("retry-after"), now)
        if retry_after is not None:
            message += f" (Retry-After {retry_after:g}s)"
        return errors.LLMRateLimited(message, model=model.key, retry_after=retry_after)
    if status >= 500 or status == 408:
        return errors.LLMServerError(message, model=model.key, status=status)
    return errors.LLMRequestRejected(message, model=model.key, status=status)


class LLMClient:
    """Chat Completions over pooled HTTP connections, one pool per endpoint."""

    def __init__(
        self,
        *,
        http_client: httpx.AsyncClient | None = None,
        limits: httpx.Limits = DEFAULT_LIMITS,
        environ: Mapping[str, str] | None = None,
        clock: retries.Clock = time,
    ) -> None:
        self._shared = http_client
        self._limits = limits
        self._environ = os.environ if environ is None else environ
        self._clock = clock
        self._pools: dict[str, httpx.AsyncClient] = {}
        for kind in TOKEN_KINDS:  # at 0 from the start (see metrics.py)
            metrics.LLM_TOKENS.labels(kind)

    def _pool(self, model: config.ModelConfig) -> httpx.AsyncClient:
        if self._shared is not None and model.ca_bundle_file is None:
            return self._shared
        parts = urlsplit(model.endpoint)
        key = f"{parts.scheme}://{parts.netloc} {model.ca_bundle_file or ''}"
        pool = self._pools.get(key)
        if pool is None:
            verify: ssl.SSLContext | bool = True
            if model.ca_bundle_file is not None:
                try:
                    verify = ssl.create_default_context(cafile=model.ca_bundle_file)
                except (OSError, ssl.SSLError) as e:
                    raise errors.LLMRequestRejected(
                        f"{model.key}: cannot read caBundleFile {model.ca_bundle_file}: {e}",
                        model=model.key,
                    ) from e
            pool = self._pools[key] = httpx.AsyncClient(limits=self._limits, verify=verify)
        return pool

    async def aclose(self) -> None:
        """Close the pools this client opened (not a client passed in)."""
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()

    def _secret(self, model: config.ModelConfig, variable: str, what: str) -> str:
        value = self._environ.get(variable)
        if not value:
            raise errors.LLMRequestRejected(
                f"{model.key}: the {what} variable {variable} is not set", model=model.key
            )
        return value

    def _headers(self, model: config.ModelConfig) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json"}
        headers.update({k.lower(): v for k, v in model.headers.items()})
        for name, variable in model.headers_from_env.items():
            headers[name.lower()] = self._secret(model, variable, f"header {name}")
        if model.api_key_env:
            key = self._secret(model, model.api_key_env, "API key")
            header = model.api_key_header.lower()
            headers[header] = f"Bearer {key}" if header == "authorization" else key
        return headers

    def _secret_values(self, model: config.ModelConfig) -> list[str]:
        names = [model.api_key_env, *model.headers_from_env.values()]
        return [self._environ.get(n) or "" for n in names if n]

    @staticmethod
    def _params(model: config.ModelConfig) -> dict[str, str]:
        return {"api-version": model.api_version} if model.api_version else {}

    async def list_models(self, model: config.ModelConfig, *, time_limit: float) -> list[str]:
        """The model ids ``GET {endpoint}/models`` lists (OpenAI's format). Raises an
        :class:`errors.LLMError` when the endpoint cannot be asked or does not answer a list."""
        url = model.endpoint.rstrip("/") + "/models"
        headers = self._headers(model)
        try:
            async with asyncio.timeout(time_limit):
                response = await self._pool(model).get(
                    url, headers=headers, params=self._params(model), timeout=time_limit
                )
        except (TimeoutError, httpx.TimeoutException) as e:
            raise errors.LLMTimeout(f"{model.key}: GET /models timed out", model=model.key) from e
        except httpx.HTTPError as e:
            raise errors.LLMConnectionError(
                f"{model.key}: GET /models: {type(e).__name__}: {e}", model=model.key
            ) from e
        if response.status_code >= 400:
            raise classify_status(
                response, model, self._clock.time(), secrets=self._secret_values(model)
            )
        try:
            doc = orjson.loads(response.content)
        except orjson.JSONDecodeError as e:
            raise _malformed(model, f"GET /models: not JSON ({e})") from e
        data = doc.get("data") if isinstance(doc, dict) else None
        if not isinstance(data, list):
            raise _malformed(model, "GET /models: no data array")
        return [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]

    async def chat(
        self,
        model: config.ModelConfig,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] = (),
        tool_choice: str | None = None,
        time_limit: float,
    ) -> Completion:
        """One call to ``model``; ``time_limit`` seconds bound all of it, connect to last byte.
        ``tool_choice`` (``auto``, ``required``, ``none`` or a tool's name) is sent only with
        tools."""
        if time_limit <= 0:
            raise errors.DeadlineExceeded(f"{model.key}: no time left for a call", model=model.key)
        body: dict[str, Any] = {
            "model": model.name,
            "messages": conversations.normalise_messages(messages),
        }
        if tools:
            body["tools"] = tools
            if tool_choice is not None:
                body["tool_choice"] = tool_choice_param(tool_choice)
        if model.max_output_tokens is not None:
            body["max_tokens"] = model.max_output_tokens
        if model.temperature is not None:
            body["temperature"] = model.temperature
        url = model.endpoint.rstrip("/") + "/chat/completions"
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "openai",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": model.name,
            "server.address": urlsplit(url).hostname or "",
        }
        with _tracer.start_as_current_span(
            f"chat {model.name}", kind=trace.SpanKind.CLIENT, attributes=attributes
        ) as span:
            started = self._clock.monotonic()
            try:
                completion = await self._post(model, url, body, time_limit, started)
            except errors.LLMError as e:
                span.set_attribute("error.type", e.reason)
                raise
            finally:
                metrics.LLM_REQUEST_DURATION.observe(self._clock.monotonic() - started)
            span.set_attribute("gen_ai.response.model", completion.model)
            span.set_attribute("gen_ai.usage.input_tokens", completion.input_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", completion.output_tokens)
            if completion.finish_reason:
                span.set_attribute("gen_ai.response.finish_reasons", [completion.finish_reason])
        metrics.LLM_TOKENS.labels(TOKEN_KIND_INPUT).inc(completion.input_tokens)
        metrics.LLM_TOKENS.labels(TOKEN_KIND_OUTPUT).inc(completion.output_tokens)
        if completion.cost_usd:
            metrics.LLM_COST.inc(completion.cost_usd)
        return completion

    async def _post(
        self,
        model: config.ModelConfig,
        url: str,
        body: dict[str, Any],
        time_limit: float,
        started: float,
    ) -> Completion:
        headers = self._headers(model)
        try:
            async with asyncio.timeout(time_limit):
                response = await self._pool(model).post(
                    url,
                    content=orjson.dumps(body),
                    headers=headers,
                    params=self._params(model),
                    timeout=time_limit,
                )
        except (TimeoutError, httpx.TimeoutException) as e:
            raise errors.LLMTimeout(
                f"{model.key}: no answer within {time_limit:.3g}s", model=model.key
            ) from e
        except httpx.DecodingError as e:
            raise _malformed(model, f"undecodable body ({e})") from e
        except httpx.HTTPError as e:
            raise errors.LLMConnectionError(
                f"{model.key}: {type(e).__name__}: {e}".rstrip(": "), model=model.key
            ) from e
        if response.status_code >= 400:
            raise classify_status(
                response, model, self._clock.time(), secrets=self._secret_values(model)
            )
        return parse_completion(response.content, model, self._clock.monotonic() - started)
