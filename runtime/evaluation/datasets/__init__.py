"""Evaluation datasets: the file format, and a loader whose errors name the file and line.

Called by the ``pilothouse eval`` command, the pytest plugin and the runner. A dataset is a
JSONL file, one example per line (or a YAML file holding a list of examples)::

    {"id": "weather-tokyo", "input": "What's the weather in Tokyo?",
     "expect": {"tool_used": {"name": "weather_api", "params": {"city": "Tokyo"}},
                "contains": "Tokyo"},
     "tags": ["weather", "tools"], "weight": 2}
    {"id": "return-flow", "conversation": ["I want to return my order",
     "The order number is 12345", "Yes, that's correct"],
     "expect": {"context": {"return_initiated": true}}}

Keys: ``id`` (unique), ``input`` or ``conversation`` (user messages sent in order in one
session), ``expect`` (expectation kind -> spec, see :mod:`expectations`; custom kinds from
:mod:`scorers`), ``tags``, ``weight`` (> 0, at most 1e6, default 1), ``description``. Every
problem is reported, each as ``FILE:LINE: example ID: reason``, in one :class:`errors.UsageError`.

A name without a path (``customer_support_v1``) finds a dataset shipped with Pilothouse: the
``.jsonl`` files beside this module (this package holds the loader and the shipped data).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from pilothouse.runtime import errors
from pilothouse.runtime.evaluation import scorers

__all__ = ["Dataset", "Example", "Expectation", "load_dataset", "parse_jsonl", "resolve", "shipped"]

_KEYS = frozenset({"id", "input", "conversation", "expect", "tags", "weight", "description"})
_SHIPPED_PACKAGE = "pilothouse.runtime.evaluation.datasets"
_MAX_REPORTED_PROBLEMS = 50
MAX_WEIGHT = 1e6
"""Largest example weight: weights are summed, and sums of huge ones overflow to a NaN score."""


@dataclass(frozen=True, slots=True)
class Expectation:
    """One checked expectation of an example."""

    kind: str
    spec: Any
    """What the kind's ``check`` made of the raw spec."""
    raw: Any
    """The spec as written."""


@dataclass(frozen=True, slots=True)
class Example:
    """One example: what to send, and what to expect of the result."""

    id: str
    turns: tuple[str, ...]
    """User messages: one for ``input``, several for a ``conversation``."""
    expectations: tuple[Expectation, ...]
    tags: tuple[str, ...] = ()
    weight: float = 1.0
    line: int = 0
    """Line of the example in its file (1-based)."""
    description: str = ""

    @property
    def is_conversation(self) -> bool:
        """Whether the example sends several messages in one session."""
        return len(self.turns) > 1


@dataclass(frozen=True, slots=True)
class Dataset:
    """A loaded dataset."""

    name: str
    source: str
    examples: tuple[Example, ...]
    sha256: str = ""
    """Digest of the file's bytes: reports say which version of the dataset was run."""

    def __iter__(self) -> Iterator[Example]:
        return iter(self.examples)

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def kinds(self) -> frozenset[str]:
        """Every expectation kind used."""
        return frozenset(e.kind for ex in self.examples for e in ex.expectations)


class _Problems:
    """Collects every problem of a file, each with its line."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.found: list[tuple[int, str]] = []

    def add(self, line: int, message: str, example_id: str | None = None) -> None:
        who = f"example {example_id!r}: " if example_id else ""
        self.found.append((line, f"{self.source}:{line}: {who}{message}"))

    def raise_if_any(self) -> None:
        if not self.found:
            return
        lines = [text for _, text in sorted(self.found, key=lambda p: p[0])]
        shown = lines[:_MAX_REPORTED_PROBLEMS]
        more = len(lines) - len(shown)
        tail = [f"... and {more} more problem(s)"] if more else []
        head = f"{self.source}: invalid dataset ({len(lines)} problem(s))"
        raise errors.UsageError("\n".join([head, *shown, *tail]))


def _turns(raw: dict[str, Any]) -> tuple[str, ...]:
    has_input, has_conversation = "input" in raw, "conversation" in raw
    if has_input == has_conversation:
        raise ValueError("needs exactly one of 'input' (a message) or 'conversation' (a list)")
    if has_input:
        value = raw["input"]
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"'input' must be a non-empty string, not {value!r}")
        return (value,)
    turns = raw["conversation"]
    if not isinstance(turns, list) or not turns:
        raise ValueError("'conversation' must be a non-empty list of user messages")
    for i, turn in enumerate(turns):
        if not isinstance(turn, str) or not turn.strip():
            raise ValueError(f"conversation[{i}] must be a non-empty string, not {turn!r}")
    return tuple(turns)


def _expectations(raw: object, registry: scorers.Registry) -> tuple[Expectation, ...]:
    if not isinstance(raw, dict) or not raw:
        raise ValueError("'expect' must be a non-empty object of expectation kind -> spec")
    out = []
    for kind, spec in raw.items():
        scorer = registry.get(kind)
        if scorer is None:
            close = difflib.get_close_matches(kind, registry.kinds(), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"unknown expectation kind {kind!r}{hint}; known kinds: "
                f"{', '.join(registry.kinds())}"
            )
        try:
            checked = scorer.check(spec)
        except (ValueError, TypeError) as e:
            raise ValueError(f"expect.{kind}: {e}") from e
        out.append(Expectation(kind, checked, spec))
    return tuple(out)


def _example(raw: object, line: int, registry: scorers.Registry) -> Example:
    if not isinstance(raw, dict):
        raise ValueError(f"an example must be an object, not {type(raw).__name__}")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown}; allowed: {sorted(_KEYS)}")
    example_id = raw.get("id")
    if not isinstance(example_id, str) or not example_id.strip():
        raise ValueError(f"'id' must be a non-empty string, not {example_id!r}")
    tags = raw.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
        raise ValueError(f"'tags' must be a list of non-empty strings, not {tags!r}")
    weight = raw.get("weight", 1)
    if (
        isinstance(weight, bool)
        or not isinstance(weight, int | float)
        or not math.isfinite(weight)
        or not 0 < weight <= MAX_WEIGHT
    ):
        raise ValueError(f"'weight' must be a number > 0 and <= {MAX_WEIGHT:g}, not {weight!r}")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ValueError("'description' must be a string")
    if "expect" not in raw:
        raise ValueError("missing 'expect': what should the agent do?")
    return Example(
        id=example_id,
        turns=_turns(raw),
        expectations=_expectations(raw["expect"], registry),
        tags=tuple(dict.fromkeys(tags)),
        weight=float(weight),
        line=line,
        description=description,
    )


def _build(
    items: Sequence[tuple[int, object]], problems: _Problems, registry: scorers.Registry
) -> tuple[Example, ...]:
    examples: list[Example] = []
    seen: dict[str, int] = {}
    for line, raw in items:
        raw_id = raw.get("id") if isinstance(raw, dict) else None
        label = raw_id if isinstance(raw_id, str) and raw_id else None
        if label is not None and label in seen:
            problems.add(line, f"duplicate id (first on line {seen[label]})", label)
            continue
        if label is not None:
            seen[label] = line
        try:
            examples.append(_example(raw, line, registry))
        except ValueError as e:
            problems.add(line, str(e), label)
    if not items and not problems.found:
        problems.add(1, "the dataset has no examples")
    problems.raise_if_any()
    return tuple(examples)


def parse_jsonl(
    text: str, *, source: str = "<dataset>", registry: scorers.Registry | None = None
) -> tuple[Example, ...]:
    """Examples of JSONL text (blank lines are skipped)."""
    problems = _Problems(source)
    items: list[tuple[int, object]] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            items.append((number, json.loads(line)))
        except json.JSONDecodeError as e:
            problems.add(number, f"invalid JSON: {e.msg} (column {e.colno})")
    # Syntax errors are reported with whatever else is wrong in the lines that did parse.
    return _build(items, problems, registry or scorers.REGISTRY)


def parse_yaml(
    text: str, *, source: str = "<dataset>", registry: scorers.Registry | None = None
) -> tuple[Example, ...]:
    """Examples of a YAML list (each example's line is where its item starts)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(e, "problem", None) or str(e)
        raise errors.UsageError(f"{source}:{line}: invalid YAML: {problem}") from e
    if data is None:
        data = []
    if not isinstance(data, list) or not isinstance(node, yaml.SequenceNode):
        raise errors.UsageError(f"{source}:1: a YAML dataset must be a list of examples")
    lines = [item.start_mark.line + 1 for item in node.value]
    items = list(zip(lines, data, strict=True))
    return _build(items, _Problems(source), registry or scorers.REGISTRY)


def shipped() -> dict[str, Path]:
    """Datasets shipped with Pilothouse, by name."""
    folder = resources.files(_SHIPPED_PACKAGE)
    return {
        Path(entry.name).stem: Path(str(entry))
        for entry in folder.iterdir()
        if entry.name.endswith(".jsonl")
    }


def resolve(name_or_path: str | Path) -> Path:
    """A dataset file: the path itself when it exists, else a shipped dataset of that name."""
    path = Path(name_or_path)
    if path.exists():
        return path
    found = shipped().get(str(name_or_path))
    if found is not None:
        return found
    names = ", ".join(sorted(shipped())) or "none"
    raise errors.UsageError(f"{name_or_path}: no such dataset file (shipped datasets: {names})")


def load_dataset(name_or_path: str | Path, *, registry: scorers.Registry | None = None) -> Dataset:
    """Load and check a dataset file (``.jsonl``, or ``.yaml``/``.yml``) or a shipped name."""
    path = resolve(name_or_path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise errors.UsageError(f"{path}: cannot read dataset: {e.strerror or e}") from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise errors.UsageError(f"{path}:{line}: not UTF-8 text") from e
    parse = parse_yaml if path.suffix in (".yaml", ".yml") else parse_jsonl
    examples = parse(text, source=str(path), registry=registry)
    name = path.name.split(".", 1)[0]
    return Dataset(name, str(path), examples, hashlib.sha256(data).hexdigest())
