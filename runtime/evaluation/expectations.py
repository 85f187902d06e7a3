"""The built-in expectation kinds of a dataset, registered in :data:`scorers.REGISTRY`.

Imported by :mod:`scorers` (at its end), so every registry copy starts with these kinds:

==============  ==============================================================================
kind            spec
==============  ==============================================================================
exact           ``"4"`` or ``{"value": "4", "ignore_case": true}``: the stripped answer equals it
contains        ``"Tokyo"``, ``["Tokyo", "°C"]`` or ``{"value": [...], "ignore_case": true,
                "mode": "all"|"any"}``: partial credit for each string found
not_contains    like ``contains``; every string must be absent (e.g. a card number)
regex           ``"\\b4\\b"`` or ``{"pattern": "...", "ignore_case": true}``: searched in the answer
tool_used       ``"weather_api"``, ``{"name": "weather_api", "params": {"city": "Tokyo"},
                "ok": true}`` or a list of those; a parameter is an exact JSON value, or
                ``{"regex": "..."}`` / ``{"contains": "...", "ignore_case": true}`` /
                ``{"equals": <any>}``
tool_not_used   ``"initiate_return"``, a list of names, or ``"*"`` (no tool at all)
refused         ``true`` / ``false``
context         ``{"return_initiated": true}``: a subset of the final session context
max_cost_usd    total cost of all turns at most this
max_latency_ms  the slowest turn (as the agent measured it) at most this
status          ``"completed"`` or a list of accepted statuses of the final turn
judge           a rubric, or ``{"rubric": "...", "pass_score": 0.7}``: an LLM grades the answer
==============  ==============================================================================

Text kinds look at the final answer; ``tool_used`` at the tool calls of every turn.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from pilothouse.runtime import requests
from pilothouse.runtime.evaluation import scorers

__all__ = ["Contains", "Equals", "JudgeSpec", "Regex", "TextSpec", "ToolSpec", "json_equal"]

_TEXT_KEYS = frozenset({"value", "ignore_case", "mode"})
_MATCHER_KEYS = frozenset({"regex", "contains", "equals", "ignore_case"})
DEFAULT_JUDGE_PASS_SCORE = 0.7


def _keys(raw: dict[str, Any], allowed: frozenset[str], required: str | None = None) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    if required is not None and required not in raw:
        raise ValueError(f"missing {required!r}")


def _bool(raw: dict[str, Any], key: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise ValueError(f"{key!r} must be true or false, not {value!r}")
    return value


def _number(raw: object, what: str, *, positive: bool = False) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or math.isnan(raw):
        raise ValueError(f"{what} must be a number, not {raw!r}")
    if raw < 0 or (positive and raw == 0):
        raise ValueError(f"{what} must be {'> 0' if positive else '>= 0'}, not {raw!r}")
    return float(raw)


def _strings(raw: object, what: str) -> tuple[str, ...]:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items or not all(isinstance(s, str) for s in items):
        raise ValueError(f"{what} must be a string or a non-empty list of strings, not {raw!r}")
    if any(not s for s in items):
        raise ValueError(f"{what}: empty strings match everything")
    return tuple(items)


def json_equal(a: object, b: object) -> bool:
    """JSON equality: ``true`` is not ``1``, ``1`` is ``1.0``, containers compare deeply."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


# --- text kinds -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextSpec:
    """Strings looked for in the answer."""

    values: tuple[str, ...]
    ignore_case: bool = False
    mode: Literal["all", "any"] = "all"

    def found_in(self, answer: str) -> list[bool]:
        """Whether each value occurs in ``answer``."""
        hay = answer.casefold() if self.ignore_case else answer
        return [(v.casefold() if self.ignore_case else v) in hay for v in self.values]


def _check_text(raw: object) -> TextSpec:
    if isinstance(raw, dict):
        _keys(raw, _TEXT_KEYS, required="value")
        mode = raw.get("mode", "all")
        if mode not in ("all", "any"):
            raise ValueError(f"'mode' must be 'all' or 'any', not {mode!r}")
        return TextSpec(_strings(raw["value"], "'value'"), _bool(raw, "ignore_case"), mode)
    return TextSpec(_strings(raw, "the spec"))


@scorers.register("contains", check=_check_text, description="the answer contains strings")
def _contains(spec: TextSpec, observed: scorers.Observed, ctx: scorers.ScoringContext) -> Any:
    found = spec.found_in(observed.answer)
    missing = [v for v, f in zip(spec.values, found, strict=True) if not f]
    if spec.mode == "any":
        if any(found):
            return scorers.Score.ok()
        return scorers.Score.fail(
            f"answer contains none of {list(spec.values)}: {scorers.clip(observed.answer)}"
        )
    return scorers.Score.fraction(
        sum(found),
        len(found),
        f"answer lacks {missing}: {scorers.clip(observed.answer)}",
    )


@scorers.register("not_contains", check=_check_text, description="the answer lacks strings")
def _not_contains(spec: TextSpec, observed: scorers.Observed, ctx: scorers.ScoringContext) -> Any:
    found = spec.found_in(observed.answer)
    present = [v for v, f in zip(spec.values, found, strict=True) if f]
    return scorers.Score.fraction(
        len(found) - len(present),
        len(found),
        f"answer contains {present}, which it must not: {scorers.clip(observed.answer)}",
    )


@dataclass(frozen=True, slots=True)
class _Exact:
    value: str
    ignore_case: bool


def _check_exact(raw: object) -> _Exact:
    if isinstance(raw, dict):
        _keys(raw, frozenset({"value", "ignore_case"}), required="value")
        value, ignore_case = raw["value"], _bool(raw, "ignore_case")
    else:
        value, ignore_case = raw, False
    if not isinstance(value, str):
        raise ValueError(f"the expected answer must be a string, not {value!r}")
    return _Exact(value.strip(), ignore_case)


@scorers.register("exact", check=_check_exact, description="the answer is exactly this")
def _exact(spec: _Exact, observed: scorers.Observed, ctx: scorers.ScoringContext) -> Any:
    answer = observed.answer.strip()
    same = answer.casefold() == spec.value.casefold() if spec.ignore_case else answer == spec.value
    if same:
        return scorers.Score.ok()
    return scorers.Score.fail(f"answer {scorers.clip(answer)} is not {spec.value!r}")


def _compile(pattern: object, ignore_case: bool) -> re.Pattern[str]:
    if not isinstance(pattern, str):
        raise ValueError(f"a regex must be a string, not {pattern!r}")
    try:
        return re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    except re.error as e:
        raise ValueError(f"invalid regex {pattern!r}: {e}") from e


def _check_regex(raw: object) -> re.Pattern[str]:
    if isinstance(raw, dict):
        _keys(raw, frozenset({"pattern", "ignore_case"}), required="pattern")
        return _compile(raw["pattern"], _bool(raw, "ignore_case"))
    return _compile(raw, False)


@scorers.register("regex", check=_check_regex, description="the answer matches a regex")
def _regex(spec: re.Pattern[str], observed: scorers.Observed, ctx: scorers.ScoringContext) -> Any:
    if spec.search(observed.answer):
        return scorers.Score.ok()
    return scorers.Score.fail(
        f"answer does not match /{spec.pattern}/: {scorers.clip(observed.answer)}"
    )


# --- tools ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Equals:
    """A parameter equal to a JSON value."""

    value: Any

    def test(self, actual: object) -> bool:
        return json_equal(actual, self.value)

    def describe(self) -> str:
        return f"= {self.value!r}"


@dataclass(frozen=True, slots=True)
class Regex:
    """A string parameter matching a regex."""

    pattern: re.Pattern[str]

    def test(self, actual: object) -> bool:
        return isinstance(actual, str) and self.pattern.search(actual) is not None

    def describe(self) -> str:
        return f"matching /{self.pattern.pattern}/"


@dataclass(frozen=True, slots=True)
class Contains:
    """A string parameter containing a string."""

    text: str
    ignore_case: bool

    def test(self, actual: object) -> bool:
        if not isinstance(actual, str):
            return False
        if self.ignore_case:
            return self.text.casefold() in actual.casefold()
        return self.text in actual

    def describe(self) -> str:
        return f"containing {self.text!r}" + (" (any case)" if self.ignore_case else "")


Matcher = Equals | Regex | Contains


def _matcher(raw: object) -> Matcher:
    if isinstance(raw, dict) and raw and set(raw) <= _MATCHER_KEYS and set(raw) - {"ignore_case"}:
        ops = sorted(set(raw) - {"ignore_case"})
        if len(ops) != 1:
            raise ValueError(f"a parameter matcher takes one of regex/contains/equals, not {ops}")
        ignore_case = _bool(raw, "ignore_case")
        if "equals" in raw:
            if ignore_case:
                raise ValueError("'ignore_case' goes with 'regex' or 'contains'")
            return Equals(raw["equals"])
        if "regex" in raw:
            return Regex(_compile(raw["regex"], ignore_case))
        text = raw["contains"]
        if not isinstance(text, str) or not text:
            raise ValueError(f"'contains' needs a non-empty string, not {text!r}")
        return Contains(text, ignore_case)
    return Equals(raw)


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool call that must have happened."""

    name: str
    params: tuple[tuple[str, Matcher], ...] = ()
    ok: bool | None = None
    """Whether the call must have succeeded (true) or failed (false); none: either."""

    def mismatch(self, action: requests.ActionTaken) -> str | None:
        """Why ``action`` is not this call (None when it is)."""
        for key, matcher in self.params:
            if key not in action.params:
                return f"has no parameter {key!r}"
            if not matcher.test(action.params[key]):
                return f"{key}={action.params[key]!r} is not {matcher.describe()}"
        if self.ok is not None and action.ok != self.ok:
            return "failed" + (f" ({action.error})" if action.error else "") if self.ok else "ok"
        return None


def _tool_spec(raw: object) -> ToolSpec:
    if isinstance(raw, str) and raw:
        return ToolSpec(raw)
    if not isinstance(raw, dict):
        raise ValueError(f"a tool is a name or an object with 'name', not {raw!r}")
    _keys(raw, frozenset({"name", "params", "ok"}), required="name")
    name, params, ok = raw["name"], raw.get("params", {}), raw.get("ok")
    if not isinstance(name, str) or not name:
        raise ValueError(f"'name' must be a tool name, not {name!r}")
    if not isinstance(params, dict):
        raise ValueError(f"'params' must be an object, not {params!r}")
    if ok is not None and not isinstance(ok, bool):
        raise ValueError(f"'ok' must be true or false, not {ok!r}")
    return ToolSpec(name, tuple((k, _matcher(v)) for k, v in params.items()), ok)


def _check_tools(raw: object) -> tuple[ToolSpec, ...]:
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise ValueError("an empty list expects nothing; use tool_not_used: '*' for no tools")
    return tuple(_tool_spec(item) for item in items)


def _why_not(spec: ToolSpec, actions: tuple[requests.ActionTaken, ...]) -> str:
    same_name = [a for a in actions if a.tool == spec.name]
    if not same_name:
        called = sorted({a.tool for a in actions})
        return f"{spec.name} was not called (tools called: {', '.join(called) or 'none'})"
    why = "; ".join(f"{a.params} {spec.mismatch(a)}" for a in same_name)
    return f"{spec.name} was called, but not as expected: {why}"


@scorers.register("tool_used", check=_check_tools, description="these tool calls were made")
def _tool_used(
    spec: tuple[ToolSpec, ...], observed: scorers.Observed, ctx: scorers.ScoringContext
) -> Any:
    actions = observed.actions
    reasons = [
        _why_not(tool, actions)
        for tool in spec
        if not any(a.tool == tool.name and tool.mismatch(a) is None for a in actions)
    ]
    return scorers.Score.fraction(len(spec) - len(reasons), len(spec), "; ".join(reasons))


def _check_no_tools(raw: object) -> tuple[str, ...]:
    return _strings(raw, "tool_not_used")


@scorers.register("tool_not_used", check=_check_no_tools, description="tools not called")
def _tool_not_used(
    spec: tuple[str, ...], observed: scorers.Observed, ctx: scorers.ScoringContext
) -> Any:
    used = [a.tool for a in observed.actions if "*" in spec or a.tool in spec]
    if not used:
        return scorers.Score.ok()
    return scorers.Score.fail(f"called {', '.join(dict.fromkeys(used))}, which it must not")


# --- result fields ----------------------------------------------------------------------------


def _check_bool(raw: object) -> bool:
    if not isinstance(raw, bool):
        raise ValueError(f"must be true or false, not {raw!r}")
    return raw


@scorers.register("refused", check=_check_bool, description="a policy refused the request")
def _refused(spec: bool, observed: scorers.Observed, ctx: scorers.ScoringContext) -> Any:
    if observed.refused == spec:
        return scorers.Score.ok()
    if spec:
        return scorers.Score.fail(
            f"not refused (status {observed.status.value}): {scorers.clip(observed.answer)}"
        )
    reason = observed.final.refusal_reason or "no reason given"
    return scorers.Score.fail(f"refused by {observed.final.policy or 'a policy'}: {reason}")


def _check_context(raw: object) -> dict[str, Any]:
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"must be a non-empty object of expected context keys, not {raw!r}")
    return raw


def _subset_mismatch(expected: Any, actual: Any, path: str) -> str | None:
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{path} is {actual!r}, expected an object"
        for key, value in expected.items():
            if key not in actual:
                return f"{path}.{key} is missing"
            why = _subset_mismatch(value, actual[key], f"{path}.{key}")
            if why:
                return why
        return None
    return None if json_equal(actual, expected) else f"{path} is {actual!r}, expected {expected!r}"


@scorers.register("context", check=_check_context, description="the session context has keys")
def _context(spec: dict[str, Any], observed: scorers.Observed, ctx: scorers.ScoringContext) -> Any:
    why = _subset_mismatch(spec, observed.context, "context")
    if why is None:
        return scorers.Score.ok()
    return scorers.Score.fail(f"{why} (context: {observed.context})")


def _check_cost(raw: object) -> float:
    return _number(raw, "max_cost_usd")


@scorers.register("max_cost_usd", check=_check_cost, description="total cost at most this")
def _max_cost(spec: float, observed: scorers.Observed, ctx: scorers.ScoringContext) -> Any:
    if observed.cost_usd <= spec:
        return scorers.Score.ok()
    return scorers.Score.fail(f"cost ${observed.cost_usd:.6f} is above ${spec:.6f}")


def _check_latency(raw: object) -> float:
    return _number(raw, "max_latency_ms", positive=True)


@scorers.register("max_latency_ms", check=_check_latency, description="slowest turn at most")
def _max_latency(spec: float, observed: scorers.Observed, ctx: scorers.ScoringContext) -> Any:
    if observed.latency_ms <= spec:
        return scorers.Score.ok()
    return scorers.Score.fail(f"latency {observed.latency_ms:.0f} ms is above {spec:.0f} ms")


def _check_status(raw: object) -> frozenset[requests.ResultStatus]:
    known = [s.value for s in requests.ResultStatus]
    names = _strings(raw, "status")
    bad = [n for n in names if n not in known]
    if bad:
        raise ValueError(f"unknown status {bad}; known: {known}")
    return frozenset(requests.ResultStatus(n) for n in names)


@scorers.register("status", check=_check_status, description="how the final turn ended")
def _status(
    spec: frozenset[requests.ResultStatus],
    observed: scorers.Observed,
    ctx: scorers.ScoringContext,
) -> Any:
    if observed.status in spec:
        return scorers.Score.ok()
    wanted = " or ".join(sorted(s.value for s in spec))
    return scorers.Score.fail(f"status is {observed.status.value}, expected {wanted}")


# --- LLM as judge -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JudgeSpec:
    """What the judge is asked, and the score that passes."""

    rubric: str
    pass_score: float = DEFAULT_JUDGE_PASS_SCORE


def _check_judge(raw: object) -> JudgeSpec:
    if isinstance(raw, str) and raw.strip():
        return JudgeSpec(raw.strip())
    if not isinstance(raw, dict):
        raise ValueError(f"must be a rubric or an object with 'rubric', not {raw!r}")
    _keys(raw, frozenset({"rubric", "pass_score"}), required="rubric")
    rubric = raw["rubric"]
    if not isinstance(rubric, str) or not rubric.strip():
        raise ValueError("'rubric' must be a non-empty string")
    pass_score = _number(raw.get("pass_score", DEFAULT_JUDGE_PASS_SCORE), "'pass_score'")
    if pass_score > 1:
        raise ValueError(f"'pass_score' must be in [0, 1], not {pass_score}")
    return JudgeSpec(rubric.strip(), pass_score)


@scorers.register("judge", check=_check_judge, description="an LLM grades the answer")
async def _judge(spec: JudgeSpec, observed: scorers.Observed, ctx: scorers.ScoringContext) -> Any:
    if ctx.judge is None:
        return scorers.Score.fail("no judge model is configured (see --judge-endpoint)")
    verdict = await ctx.judge.grade(spec.rubric, observed.inputs, observed.answer)
    if verdict.score is None:
        return scorers.Score.fail(f"judge gave no score: {verdict.reason}")
    if verdict.score >= spec.pass_score:
        return scorers.Score(verdict.score, True)
    return scorers.Score.fail(
        f"judge scored {verdict.score:.2f} (< {spec.pass_score:.2f}): {verdict.reason}",
        verdict.score,
    )
