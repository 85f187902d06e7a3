"""Scenarios: what the mock LLM answers, as ordered rules loaded from YAML or JSON.

A scenario is data, so an evaluation dataset's expected conversations can be scripted as just
another file. The server loads one at start (``--scenario FILE``, else the built-in
``default_scenario.yaml``) and can swap it at run time (``PUT /admin/scenario``); for every
request it calls :func:`respond`, which walks the rules in order and renders the first that
matches. Loading checks everything it can (regexes, keys, template variables) and names the
source and the rule in its error; answering never fails.

File format::

    name: shop-assistant
    models: [mock-llm]                 # listed by GET /v1/models (any model name is accepted)
    rules:                             # first match wins
      - name: weather
        match: 'weather in (?P<city>\\w+)'   # regex searched in the latest user message
        tool_calls:                    # only when weather_api is offered (require_offered)
          - name: weather_api
            arguments: {city: "{city}"}
      - name: weather-answer
        after_tool: weather_api        # the last message is weather_api's result ("*": any tool)
        match: 'weather in (?P<city>\\w+)'
        content: "In {city}: {tool_result.conditions|unknown}"
      - name: confirm-return
        match: '^(yes|correct)'
        history: 'order number is (?P<order_id>\\d+)'  # searched in earlier user messages
        model: [gpt-4o*]               # fnmatch patterns on the request's model
        latency_ms: 20
        tool_calls: [{name: initiate_return, arguments: {order_id: "{order_id}"}}]
      - name: arithmetic
        match: 'what is (?P<expression>[-+*/\\d\\s().]+)'
        evaluate: {result: "{expression}"}   # arithmetic; the rule is skipped when undefined
        content: "{expression} is {result}"

Rules without ``after_tool`` do not match when the last message is a tool result, so a rule
that calls a tool is not triggered again by its own result. Template variables: the regexes'
named groups, ``evaluate`` results, and the built-ins ``message`` (latest user message),
``model``, ``tool_name`` and ``tool_result`` (content of the last tool message).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

import orjson
import pydantic
import yaml

from pilothouse.runtime.mockllm import completions, errors, templates

__all__ = [
    "BUILTIN_VARIABLES",
    "DEFAULT_SCENARIO_RESOURCE",
    "Conversation",
    "Rule",
    "Scenario",
    "from_data",
    "load_default",
    "load_file",
    "load_text",
    "respond",
]

BUILTIN_VARIABLES: Final = frozenset({"message", "model", "tool_name", "tool_result"})
DEFAULT_SCENARIO_RESOURCE: Final = "default_scenario.yaml"
ANY_TOOL: Final = "*"

_ECHO: Final = templates.compile_template("Echo: {message}")
_TOOL_ECHO: Final = templates.compile_template("The {tool_name} tool returned: {tool_result}")


# --- file format (validated with pydantic, then compiled) -------------------------------------


class _ToolCallSpec(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    name: str = pydantic.Field(min_length=1)
    """Function name of the call."""
    arguments: dict[str, Any] = pydantic.Field(default_factory=dict)
    """Arguments; every string inside is a template."""


class _RuleSpec(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    """Name shown in stats and errors; defaults to ``rule-<index>``."""
    match: str | None = None
    """Regex searched (case-insensitive) in the latest user message; absent matches anything."""
    history: str | None = None
    """Regex that must match one of the earlier user messages (the most recent match counts)."""
    after_tool: str | None = None
    """The last message must be this tool's result (``*``: any tool's)."""
    model: str | list[str] | None = None
    """fnmatch pattern(s) the request's model must match."""
    require_offered: bool = True
    """A rule with tool calls fires only when the request offers every tool it calls."""
    evaluate: dict[str, str] = pydantic.Field(default_factory=dict)
    """Variables computed as arithmetic from templates; the rule is skipped if one is undefined."""
    content: str | None = None
    """Reply text (a template)."""
    tool_calls: list[_ToolCallSpec] | None = None
    """Tool calls to reply with."""
    latency_ms: float = pydantic.Field(default=0.0, ge=0)
    """Extra delay of this rule's answers."""


class _ScenarioSpec(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    name: str = "scenario"
    description: str | None = None
    models: list[str] = pydantic.Field(default_factory=lambda: ["mock-llm"])
    rules: list[_RuleSpec] = pydantic.Field(default_factory=list)


# --- compiled form ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled rule: conditions, then the reply it renders."""

    index: int
    name: str
    match: re.Pattern[str] | None
    history: re.Pattern[str] | None
    after_tool: str | None
    models: tuple[re.Pattern[str], ...]
    require_offered: bool
    evaluate: tuple[tuple[str, templates.Template], ...]
    content: templates.Template | None
    tool_calls: tuple[tuple[str, templates.ArgumentsTemplate], ...]
    latency_s: float


@dataclass(frozen=True, slots=True)
class Scenario:
    """A loaded scenario: ordered rules, first match wins."""

    name: str
    source: str
    models: tuple[str, ...]
    rules: tuple[Rule, ...]
    description: str | None = None

    def summary(self) -> dict[str, Any]:
        """What ``GET /admin/scenario`` shows."""
        return {
            "name": self.name,
            "source": self.source,
            "description": self.description,
            "models": list(self.models),
            "rules": [r.name for r in self.rules],
        }


@dataclass(frozen=True, slots=True)
class Conversation:
    """What the rules look at in a request."""

    model: str
    message: str
    """The latest user message ("" when there is none)."""
    earlier: tuple[str, ...] = ()
    """The earlier user messages, most recent first."""
    tool_name: str | None = None
    """Set when the last message is a tool result: the tool it came from ("" if unknown)."""
    tool_result: str | None = None
    offered_tools: frozenset[str] = frozenset()

    @classmethod
    def of(cls, request: completions.ChatRequest) -> Conversation:
        """The conversation view of a validated request."""
        users = [m.content for m in request.messages if m.role == "user"]
        last = request.messages[-1]
        tool_name: str | None = None
        tool_result: str | None = None
        if last.role == "tool":
            tool_result = last.content
            tool_name = last.name or _tool_name_of(request.messages, last.tool_call_id) or ""
        return cls(
            model=request.model,
            message=users[-1] if users else "",
            earlier=tuple(reversed(users[:-1])),
            tool_name=tool_name,
            tool_result=tool_result,
            offered_tools=request.offered_tools,
        )


def _tool_name_of(messages: tuple[completions.Message, ...], call_id: str | None) -> str | None:
    for m in reversed(messages):
        for call in m.tool_calls:
            if call.id == call_id:
                return call.name
    return None


# --- loading ----------------------------------------------------------------------------------


def _rule_label(index: int, raw: object) -> str:
    name = raw.get("name") if isinstance(raw, dict) else None
    return f"rules[{index}] ({name!r})" if isinstance(name, str) else f"rules[{index}]"


def _validation_message(source: str, data: object, e: pydantic.ValidationError) -> str:
    raw_rules = data.get("rules") if isinstance(data, dict) else None
    lines = []
    for err in e.errors():
        loc = list(err["loc"])
        where = "scenario"
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
            raw = raw_rules[loc[1]] if isinstance(raw_rules, list) else None
            where = _rule_label(loc[1], raw)
            loc = loc[2:]
        field = ".".join(str(p) for p in loc)
        lines.append(f"{source}: {where}: {field + ': ' if field else ''}{err['msg']}")
    return "\n".join(lines)


def _compile_regex(pattern: str | None, where: str, key: str) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    try:
        compiled = re.compile(pattern, re.IGNORECASE)
    except re.error as e:
        raise errors.ScenarioError(f"{where}: invalid regex in {key!r}: {e}") from e
    shadowed = BUILTIN_VARIABLES & set(compiled.groupindex)
    if shadowed:
        raise errors.ScenarioError(
            f"{where}: group name(s) {sorted(shadowed)} in {key!r} shadow built-in variables"
        )
    return compiled


def _check_variables(used: frozenset[str], known: set[str], where: str, key: str) -> None:
    unknown = sorted(used - known)
    if unknown:
        raise errors.ScenarioError(
            f"{where}: {key} uses unknown variable(s) {unknown}; known here: {sorted(known)}"
        )


def _compile_rule(index: int, spec: _RuleSpec, source: str) -> Rule:
    name = spec.name or f"rule-{index}"
    where = f"{source}: rules[{index}] ({name!r})"
    if spec.content is None and not spec.tool_calls:
        raise errors.ScenarioError(f"{where}: a rule needs 'content' or 'tool_calls'")
    match = _compile_regex(spec.match, where, "match")
    history = _compile_regex(spec.history, where, "history")
    known = set(BUILTIN_VARIABLES)
    for regex in (match, history):
        if regex is not None:
            known.update(regex.groupindex)
    evaluate: list[tuple[str, templates.Template]] = []
    for var, expression in spec.evaluate.items():
        if not var.isidentifier() or var in known:
            raise errors.ScenarioError(f"{where}: evaluate name {var!r} is not a new identifier")
        compiled = templates.compile_template(expression)
        _check_variables(compiled.variables, known, where, f"evaluate.{var}")
        evaluate.append((var, compiled))
        known.add(var)
    content = None
    if spec.content is not None:
        content = templates.compile_template(spec.content)
        _check_variables(content.variables, known, where, "content")
    calls: list[tuple[str, templates.ArgumentsTemplate]] = []
    for i, call in enumerate(spec.tool_calls or ()):
        arguments = templates.compile_arguments(call.arguments)
        _check_variables(arguments.variables, known, where, f"tool_calls[{i}].arguments")
        calls.append((call.name, arguments))
    patterns = [spec.model] if isinstance(spec.model, str) else (spec.model or [])
    return Rule(
        index=index,
        name=name,
        match=match,
        history=history,
        after_tool=spec.after_tool,
        models=tuple(re.compile(fnmatch.translate(p)) for p in patterns),
        require_offered=spec.require_offered,
        evaluate=tuple(evaluate),
        content=content,
        tool_calls=tuple(calls),
        latency_s=spec.latency_ms / 1000.0,
    )


def from_data(data: object, *, source: str = "<scenario>") -> Scenario:
    """Compile a scenario from parsed YAML/JSON; raise :class:`errors.ScenarioError`."""
    if not isinstance(data, dict):
        raise errors.ScenarioError(f"{source}: a scenario must be a mapping with 'rules'")
    try:
        spec = _ScenarioSpec.model_validate(data)
    except pydantic.ValidationError as e:
        raise errors.ScenarioError(_validation_message(source, data, e)) from e
    rules = tuple(_compile_rule(i, r, source) for i, r in enumerate(spec.rules))
    return Scenario(
        name=spec.name,
        source=source,
        models=tuple(spec.models),
        rules=rules,
        description=spec.description,
    )


def load_text(text: str, *, source: str = "<scenario>") -> Scenario:
    """Compile a scenario from YAML (or JSON, which YAML reads too)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise errors.ScenarioError(f"{source}: not valid YAML{at}: {problem}") from e
    return from_data(data, source=source)


def load_file(path: str | Path) -> Scenario:
    """Compile the scenario in a YAML or JSON file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise errors.ScenarioError(f"{path}: cannot read scenario: {e.strerror or e}") from e
    return load_text(text, source=str(path))


def load_default() -> Scenario:
    """The built-in scenario shipped with the package."""
    text = (
        resources.files("pilothouse.runtime.mockllm")
        .joinpath(DEFAULT_SCENARIO_RESOURCE)
        .read_text(encoding="utf-8")
    )
    return load_text(text, source=f"<built-in {DEFAULT_SCENARIO_RESOURCE}>")


# --- answering --------------------------------------------------------------------------------


def _groups(m: re.Match[str]) -> dict[str, str]:
    return {k: v or "" for k, v in m.groupdict().items()}


def _variables(rule: Rule, conv: Conversation) -> dict[str, str] | None:
    """The template variables if ``rule`` matches ``conv``, else None."""
    if rule.after_tool is None:
        if conv.tool_name is not None:
            return None
    elif conv.tool_name is None or rule.after_tool not in (ANY_TOOL, conv.tool_name):
        return None
    if rule.models and not any(p.match(conv.model) for p in rule.models):
        return None
    if (
        rule.require_offered
        and rule.tool_calls
        and not all(name in conv.offered_tools for name, _ in rule.tool_calls)
    ):
        return None
    found: dict[str, str] = {}
    if rule.match is not None:
        m = rule.match.search(conv.message)
        if m is None:
            return None
        found = _groups(m)
    if rule.history is not None:
        for earlier in conv.earlier:
            h = rule.history.search(earlier)
            if h is not None:
                found = {**_groups(h), **found}
                break
        else:
            return None
    variables = {
        "message": conv.message,
        "model": conv.model,
        "tool_name": conv.tool_name or "",
        "tool_result": conv.tool_result or "",
        **found,
    }
    for var, expression in rule.evaluate:
        value = templates.evaluate_arithmetic(expression.render(templates.Context(variables)))
        if value == templates.UNDEFINED:
            return None
        variables[var] = value
    return variables


def _render(rule: Rule, variables: Mapping[str, str], call_id_prefix: str) -> completions.Reply:
    context = templates.Context(variables)
    calls = tuple(
        completions.ToolCall(
            id=f"{call_id_prefix}_{i}",
            name=name,
            arguments=orjson.dumps(arguments.render(context)).decode(),
        )
        for i, (name, arguments) in enumerate(rule.tool_calls)
    )
    content = rule.content.render(context) if rule.content is not None else None
    return completions.Reply(
        content=content, tool_calls=calls, rule=rule.name, latency_s=rule.latency_s
    )


def respond(
    scenario: Scenario, conv: Conversation, *, call_id_prefix: str = "call"
) -> completions.Reply:
    """The reply of the first matching rule; an echo when none matches.

    Tool call ids are ``<call_id_prefix>_<n>``: the caller makes the prefix unique.
    """
    for rule in scenario.rules:
        variables = _variables(rule, conv)
        if variables is not None:
            return _render(rule, variables, call_id_prefix)
    context = templates.Context(
        {
            "message": conv.message,
            "tool_name": conv.tool_name or "unknown",
            "tool_result": conv.tool_result or "",
        }
    )
    fallback = _TOOL_ECHO if conv.tool_name is not None else _ECHO
    return completions.Reply(content=fallback.render(context), rule="default")
