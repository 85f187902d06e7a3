"""Scorers: how an agent's result is judged against one expectation of an example.

Every expectation kind of a dataset (``contains``, ``tool_used``, ``refused``...) is a scorer
in a :class:`Registry`. A scorer has two halves: ``check`` runs when the dataset is loaded and
turns the raw JSON of the expectation into a checked spec (raising ``ValueError`` with the
reason, which the loader reports with the file and line); ``score`` runs on each result and
returns a :class:`Score` between 0 and 1, with the reason when it is not a pass.

Custom scorers join the default registry with a decorator::

    from pilothouse.runtime.evaluation import scorers

    @scorers.register("mentions_order_id", check=str)
    def mentions_order_id(expected, observed, ctx):
        return expected in observed.answer     # bool, float in [0, 1], or a Score

The loader (:mod:`datasets`) calls ``check``; the runner (:mod:`runner`) calls ``score``. The
built-in kinds live in :mod:`expectations`; the LLM judge's client in :mod:`judges`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from pilothouse.runtime import errors, requests

if TYPE_CHECKING:
    from pilothouse.runtime.evaluation import judges

__all__ = [
    "REGISTRY",
    "CheckFn",
    "Observed",
    "Registry",
    "Score",
    "ScoreFn",
    "ScorerDef",
    "ScoringContext",
    "clip",
    "register",
]

_REASON_ANSWER_CHARS = 160
"""How much of an answer a failure reason quotes."""


@dataclass(frozen=True, slots=True)
class Score:
    """How well a result meets one expectation: ``value`` in [0, 1] and why it fell short."""

    value: float
    passed: bool
    reason: str | None = None

    @classmethod
    def ok(cls) -> Score:
        """A full pass."""
        return cls(1.0, True)

    @classmethod
    def fail(cls, reason: str, value: float = 0.0) -> Score:
        """A failure with its reason (and partial credit, if any)."""
        return cls(max(0.0, min(1.0, value)), False, reason)

    @classmethod
    def fraction(cls, good: int, total: int, reason: str) -> Score:
        """``good`` of ``total`` parts met: a pass only when all are."""
        if total <= 0 or good >= total:
            return cls.ok()
        return cls.fail(reason, good / total)


@dataclass(frozen=True, slots=True)
class Observed:
    """What the agent did for one example: the result of every turn, in order."""

    inputs: tuple[str, ...]
    """The user messages sent (one, or the turns of a conversation)."""
    results: tuple[requests.AgentResult, ...]
    """One result per message; never empty when a scorer sees it."""

    @property
    def final(self) -> requests.AgentResult:
        """The result of the last message."""
        return self.results[-1]

    @property
    def answer(self) -> str:
        """The final answer."""
        return self.final.answer

    @property
    def refused(self) -> bool:
        """Whether the final message was refused."""
        return self.final.refused

    @property
    def status(self) -> requests.ResultStatus:
        """How the final message ended."""
        return self.final.status

    @property
    def context(self) -> dict[str, Any]:
        """The session context after the final message."""
        return self.final.context

    @property
    def actions(self) -> tuple[requests.ActionTaken, ...]:
        """Every tool call of every turn, in order."""
        return tuple(a for r in self.results for a in r.actions)

    @property
    def cost_usd(self) -> float:
        """Total cost of all turns."""
        return sum(r.cost_usd for r in self.results)

    @property
    def latency_ms(self) -> float:
        """The slowest turn, as the agent measured it."""
        return max(r.latency_ms for r in self.results)


@dataclass(frozen=True, slots=True)
class ScoringContext:
    """What a scorer may need beyond the result."""

    example_id: str
    judge: judges.Judge | None = None
    """The LLM judge, when one is configured."""


ScoreValue: TypeAlias = Score | float | bool
ScoreFn: TypeAlias = Callable[[Any, Observed, ScoringContext], ScoreValue | Awaitable[ScoreValue]]
"""``score(expected, observed, ctx)``: ``expected`` is what ``check`` returned."""
CheckFn: TypeAlias = Callable[[Any], Any]
"""``check(raw) -> expected``: raise ``ValueError``/``TypeError`` saying what is wrong."""


def _unchecked(raw: Any) -> Any:
    return raw


@dataclass(frozen=True, slots=True)
class ScorerDef:
    """A registered expectation kind."""

    kind: str
    score: ScoreFn
    check: CheckFn = _unchecked
    description: str = ""

    async def evaluate(self, expected: Any, observed: Observed, ctx: ScoringContext) -> Score:
        """Score one result; a scorer that raises fails the expectation, not the run."""
        try:
            value = self.score(expected, observed, ctx)
            if inspect.isawaitable(value):
                value = await value
        except Exception as e:  # a custom scorer's bug is that example's failure
            return Score.fail(f"scorer {self.kind!r} raised {type(e).__name__}: {e}")
        return _as_score(value, self.kind)


def _as_score(value: object, kind: str) -> Score:
    if isinstance(value, Score):
        if not 0.0 <= value.value <= 1.0 or math.isnan(value.value):
            return Score.fail(f"scorer {kind!r} returned {value.value}, outside [0, 1]")
        return value
    if isinstance(value, bool):
        return Score.ok() if value else Score.fail(f"{kind} not met")
    if isinstance(value, int | float) and 0.0 <= value <= 1.0:
        return Score.ok() if value >= 1.0 else Score.fail(f"{kind} scored {value:.2f}", value)
    return Score.fail(f"scorer {kind!r} returned {value!r}: expected a Score, float or bool")


class Registry:
    """Expectation kinds by name."""

    def __init__(self, defs: dict[str, ScorerDef] | None = None) -> None:
        self._defs: dict[str, ScorerDef] = dict(defs or {})

    def register(
        self,
        kind: str,
        *,
        check: CheckFn | None = None,
        description: str = "",
        replace: bool = False,
    ) -> Callable[[ScoreFn], ScoreFn]:
        """Decorator registering ``score`` under ``kind``; ``check`` validates specs at load."""
        if not kind.isidentifier():
            raise errors.UsageError(f"scorer kind {kind!r} must be an identifier")

        def decorate(score: ScoreFn) -> ScoreFn:
            if kind in self._defs and not replace:
                raise errors.UsageError(
                    f"scorer kind {kind!r} is already registered; pass replace=True to override"
                )
            self._defs[kind] = ScorerDef(kind, score, check or _unchecked, description)
            return score

        return decorate

    def unregister(self, kind: str) -> None:
        """Forget a kind (no error when it is unknown)."""
        self._defs.pop(kind, None)

    def get(self, kind: str) -> ScorerDef | None:
        """The scorer of ``kind``, if registered."""
        return self._defs.get(kind)

    def kinds(self) -> list[str]:
        """Registered kinds, sorted."""
        return sorted(self._defs)

    def copy(self) -> Registry:
        """An independent registry with the same kinds (to add kinds for one run only)."""
        return Registry(self._defs)

    def __contains__(self, kind: object) -> bool:
        return kind in self._defs

    def __iter__(self) -> Iterator[ScorerDef]:
        return iter(self._defs.values())


REGISTRY = Registry()
"""The default registry: the built-in kinds and every custom scorer registered with
:func:`register`."""


def register(
    kind: str, *, check: CheckFn | None = None, description: str = "", replace: bool = False
) -> Callable[[ScoreFn], ScoreFn]:
    """Register a custom expectation kind in the default registry (a decorator)."""
    return REGISTRY.register(kind, check=check, description=description, replace=replace)


def clip(text: str, limit: int = _REASON_ANSWER_CHARS) -> str:
    """``text`` quoted for a failure reason, shortened to ``limit`` characters."""
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[: limit - 1] + "…")


# The built-in kinds register themselves in REGISTRY; imported last so that they can use
# everything above.
from pilothouse.runtime.evaluation import expectations as _builtin_kinds  # noqa: E402, F401
