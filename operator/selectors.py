"""Label selectors: the API model (``AgentPolicy.spec.targetSelector``) and its semantics.

Kubernetes' ``metav1.LabelSelector`` as a pydantic model (the CRD schema is generated from it,
with a CEL rule for the values each operator takes), and :func:`matches`, the pure evaluation
:mod:`pilothouse.operator.targeting` uses to decide which agents a policy selects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

__all__ = ["LabelKey", "LabelSelector", "LabelSelectorRequirement", "LabelValue", "matches"]

MAX_VALUES: Final = 64
LABEL_KEY_PATTERN: Final = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
"""A label key: an optional DNS-subdomain prefix and ``/``, then a name of at most 63
characters (letters, digits, ``-``, ``_``, ``.``, alphanumeric at both ends)."""
LABEL_VALUE_PATTERN: Final = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
"""A label value: empty, or letters, digits, ``-``, ``_``, ``.``, alphanumeric at both ends."""

LabelKey = Annotated[
    str,
    Field(
        min_length=1,
        max_length=317,
        pattern=LABEL_KEY_PATTERN,
        description="be label keys: an optional DNS subdomain and '/', then a name of at most "
        "63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
    ),
]
LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
    )


_REQUIREMENT = (
    "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0)"
    " : (!has(self.values) || size(self.values) == 0)"
)
_REQUIREMENT_MESSAGE = (
    "spec.targetSelector.matchExpressions: In and NotIn need values; Exists and DoesNotExist "
    "take none"
)


class LabelSelectorRequirement(_Model):
    """A label key, an operator and values."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": _REQUIREMENT, "message": _REQUIREMENT_MESSAGE, "fieldPath": ".values"}
            ]
        }
    )

    key: str = Field(min_length=1, max_length=317, pattern=LABEL_KEY_PATTERN)
    """Label key."""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    """How the label's value is compared with ``values``."""
    values: tuple[LabelValue, ...] = Field(default=(), max_length=MAX_VALUES)
    """Values for ``In`` and ``NotIn``; empty for ``Exists`` and ``DoesNotExist``."""

    @model_validator(mode="after")
    def _values_fit_operator(self) -> LabelSelectorRequirement:
        if (self.operator in ("In", "NotIn")) != bool(self.values):
            raise ValueError(_REQUIREMENT_MESSAGE)
        return self


class LabelSelector(_Model):
    """Selects AgentDeployments by label; ``{}`` selects every agent of the namespace."""

    match_labels: dict[LabelKey, LabelValue] = Field(default_factory=dict, max_length=MAX_VALUES)
    """Labels an agent must have, with these values."""
    match_expressions: tuple[LabelSelectorRequirement, ...] = Field(
        default=(), max_length=MAX_VALUES
    )
    """Further requirements, all of which must hold."""


def matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` satisfy ``selector`` (Kubernetes semantics: ``{}`` matches all)."""
    for key, value in selector.match_labels.items():
        if labels.get(key) != value:
            return False
    for req in selector.match_expressions:
        present = req.key in labels
        if req.operator == "In" and not (present and labels[req.key] in req.values):
            return False
        if req.operator == "NotIn" and present and labels[req.key] in req.values:
            return False
        if req.operator == "Exists" and not present:
            return False
        if req.operator == "DoesNotExist" and present:
            return False
    return True
