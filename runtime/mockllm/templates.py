"""Reply templates of scenario rules, and the small arithmetic they may ask for.

Scenario rules answer with text such as ``"It is {tool_result.temperature|unknown} in {city}"``.
:func:`compile_template` parses such a string once, when the scenario loads, so rendering a
reply is a list walk. :mod:`scenarios` calls it; nothing here does I/O.

Placeholder syntax::

    {name}              a variable (a regex group, or a built-in such as message / tool_result)
    {name.key.0}        a field of the variable's value parsed as JSON (object key, list index)
    {name|fallback}     the fallback text when the variable or field is missing or empty
    {{  }}              literal braces

A ``{`` that does not start a placeholder is kept as it is, so JSON in a reply needs no escaping
unless it looks like a placeholder.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Final

import orjson

__all__ = [
    "ArgumentsTemplate",
    "Context",
    "Template",
    "compile_arguments",
    "compile_template",
    "evaluate_arithmetic",
]

_PLACEHOLDER: Final = re.compile(r"\{\{|\}\}|\{([A-Za-z_]\w*)((?:\.[\w-]+)*)(?:\|([^{}]*))?\}")
_MISSING: Final = object()


class Context:
    """The variables one reply is rendered with; JSON values are parsed once, on first use."""

    __slots__ = ("_parsed", "variables")

    def __init__(self, variables: Mapping[str, str]) -> None:
        self.variables = variables
        self._parsed: dict[str, Any] = {}

    def lookup(self, name: str, path: tuple[str, ...]) -> object:
        """The value of ``name`` (and ``path`` into its JSON), or a sentinel when missing."""
        value = self.variables.get(name, _MISSING)
        if value is _MISSING or not path:
            return value
        if name not in self._parsed:
            try:
                self._parsed[name] = orjson.loads(str(value))
            except orjson.JSONDecodeError:
                self._parsed[name] = _MISSING
        node: Any = self._parsed[name]
        for key in path:
            if isinstance(node, dict) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                return _MISSING
        return node


def _as_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if value is None or value is _MISSING:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return orjson.dumps(value).decode() if isinstance(value, dict | list | bool) else str(value)


@dataclass(frozen=True, slots=True)
class _Slot:
    name: str
    path: tuple[str, ...]
    fallback: str | None


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled template: literal text and placeholders."""

    source: str
    parts: tuple[str | _Slot, ...]

    @property
    def variables(self) -> frozenset[str]:
        """The variable names the template refers to (without field paths)."""
        return frozenset(p.name for p in self.parts if isinstance(p, _Slot))

    def render(self, context: Context) -> str:
        """The text with every placeholder replaced."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            text = _as_text(context.lookup(part.name, part.path))
            if not text and part.fallback is not None:
                text = part.fallback
            out.append(text)
        return "".join(out)


def compile_template(source: str) -> Template:
    """Parse a template once; rendering it later does no parsing."""
    parts: list[str | _Slot] = []
    literal: list[str] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(source):
        literal.append(source[pos : m.start()])
        pos = m.end()
        token = m.group(0)
        if token in ("{{", "}}"):
            literal.append(token[0])
            continue
        if literal:
            parts.append("".join(literal))
            literal = []
        path = tuple(m.group(2)[1:].split(".")) if m.group(2) else ()
        parts.append(_Slot(m.group(1), path, m.group(3)))
    literal.append(source[pos:])
    if any(literal):
        parts.append("".join(literal))
    return Template(source, tuple(p for p in parts if p != ""))


@dataclass(frozen=True, slots=True)
class ArgumentsTemplate:
    """Tool-call arguments whose string values (at any depth) are templates."""

    value: Any

    @property
    def variables(self) -> frozenset[str]:
        """Every variable name used anywhere in the arguments."""
        found: set[str] = set()

        def walk(node: Any) -> None:
            if isinstance(node, Template):
                found.update(node.variables)
            elif isinstance(node, dict):
                for v in node.values():
                    walk(v)
            elif isinstance(node, list):
                for v in node:
                    walk(v)

        walk(self.value)
        return frozenset(found)

    def render(self, context: Context) -> Any:
        """The arguments with every template string rendered."""

        def walk(node: Any) -> Any:
            if isinstance(node, Template):
                return node.render(context)
            if isinstance(node, dict):
                return {k: walk(v) for k, v in node.items()}
            if isinstance(node, list):
                return [walk(v) for v in node]
            return node

        return walk(self.value)


def compile_arguments(arguments: Mapping[str, Any]) -> ArgumentsTemplate:
    """Compile every string inside a tool call's arguments."""

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            return compile_template(node)
        if isinstance(node, Mapping):
            return {str(k): walk(v) for k, v in node.items()}
        if isinstance(node, list | tuple):
            return [walk(v) for v in node]
        return node

    return ArgumentsTemplate(walk(dict(arguments)))


# --- arithmetic ---------------------------------------------------------------------------------

_MAX_EXPRESSION_CHARS: Final = 200
_MAX_NUMBER_DIGITS: Final = 30
_WORDS: Final = (
    (re.compile(r"\bmultiplied\s+by\b|\btimes\b|(?<=[\d\s)])x(?=[\s\d(])|\u00d7"), "*"),
    (re.compile(r"\bdivided\s+by\b|\bover\b|\u00f7"), "/"),
    (re.compile(r"\bplus\b"), "+"),
    (re.compile(r"\bminus\b|\u2212"), "-"),
)
_TOKEN: Final = re.compile(r"\s*(?:(\d+(?:\.\d+)?|\.\d+)|([-+*/()]))")
UNDEFINED: Final = "undefined"


class _ArithmeticError(Exception):
    pass


class _Parser:
    """Recursive descent over + - * / and parentheses, exact with fractions."""

    def __init__(self, text: str) -> None:
        self.tokens: list[str] = []
        pos = 0
        text = text.rstrip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:
                raise _ArithmeticError(text[pos:])
            number = m.group(1)
            if number is not None and len(number) > _MAX_NUMBER_DIGITS:
                raise _ArithmeticError("number too long")
            self.tokens.append(number if number is not None else m.group(2))
            pos = m.end()
        self.i = 0

    def _peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _take(self) -> str:
        token = self._peek()
        if token is None:
            raise _ArithmeticError("unexpected end")
        self.i += 1
        return token

    def parse(self) -> Fraction:
        value = self._sum()
        if self._peek() is not None:
            raise _ArithmeticError("trailing input")
        return value

    def _sum(self) -> Fraction:
        value = self._product()
        while self._peek() in ("+", "-"):
            value = value + self._product() if self._take() == "+" else value - self._product()
        return value

    def _product(self) -> Fraction:
        value = self._unary()
        while self._peek() in ("*", "/"):
            op = self._take()
            right = self._unary()
            if op == "*":
                value *= right
            elif right == 0:
                raise _ArithmeticError("division by zero")
            else:
                value /= right
        return value

    def _unary(self) -> Fraction:
        if self._peek() in ("+", "-"):
            sign = self._take()
            value = self._unary()
            return -value if sign == "-" else value
        token = self._take()
        if token == "(":
            value = self._sum()
            if self._take() != ")":
                raise _ArithmeticError("unbalanced parentheses")
            return value
        if token in ("+", "-", "*", "/", ")"):
            raise _ArithmeticError(f"unexpected {token}")
        return Fraction(token)


def _format_number(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    text = f"{float(value):.6f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def evaluate_arithmetic(expression: str) -> str:
    """The value of a simple arithmetic expression as text, or ``"undefined"``.

    Understands numbers, ``+ - * /`` (also ``x``, the multiplication and division signs, and
    the words plus, minus, times, multiplied by, divided by, over) and parentheses. Exact:
    ``0.1 + 0.2`` is ``0.3``.
    """
    text = expression.lower().strip().rstrip("?.!= ")
    if not text or len(text) > _MAX_EXPRESSION_CHARS:
        return UNDEFINED
    for pattern, symbol in _WORDS:
        text = pattern.sub(symbol, text)
    try:
        return _format_number(_Parser(text).parse())
    except (_ArithmeticError, ValueError, ZeroDivisionError):
        return UNDEFINED
