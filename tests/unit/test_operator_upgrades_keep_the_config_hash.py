"""An upgrade that adds fields with defaults does not change any agent's config, so no pod rolls.

Pods roll when the config hash in their template changes. The hash covers the rendered
document, which leaves out every value equal to its default (``RuntimeConfig.to_document``): a
release that adds a field with a default renders the same bytes for every agent that does not
set it. These tests add such fields to the runtime models, as a new release would, and render
the example agent with them.
"""

from __future__ import annotations

import hashlib

import yaml
from operator_support import DEFAULTS, example_policies, support_agent, targeting_order
from pydantic import Field

from pilothouse.operator import rendering
from pilothouse.runtime import config


def _rendered() -> rendering.RenderedConfig:
    agent = support_agent()
    policies = targeting_order(agent, example_policies())
    return rendering.render(agent, policies, system_prompt="Be kind.", defaults=DEFAULTS)


def _document_of(model: type[config.RuntimeConfig], rendered: rendering.RenderedConfig) -> str:
    loaded = model.model_validate(yaml.safe_load(rendered.document))
    return yaml.safe_dump(loaded.to_document(), sort_keys=False, allow_unicode=True, width=100)


class _WithNewKnob(config.RuntimeConfig):
    new_knob: int = Field(default=3, alias="newKnob")


class _ReliabilityWithNewKnob(config.ReliabilityConfig):
    jitter_cap_seconds: float = Field(default=1.5, alias="jitterCapSeconds")


class _WithNewNestedKnob(config.RuntimeConfig):
    reliability: _ReliabilityWithNewKnob = _ReliabilityWithNewKnob()


def test_a_new_top_level_field_with_a_default_renders_the_same_document() -> None:
    rendered = _rendered()
    before = _document_of(config.RuntimeConfig, rendered)

    assert _document_of(_WithNewKnob, rendered) == before
    assert "newKnob" not in before


def test_a_new_nested_field_with_a_default_renders_the_same_document() -> None:
    rendered = _rendered()

    assert _document_of(_WithNewNestedKnob, rendered) == _document_of(
        config.RuntimeConfig, rendered
    )


def test_the_hash_is_the_rendered_document_so_it_does_not_move_either() -> None:
    rendered = _rendered()
    body = rendered.document.split("\n", 2)[2]  # after the two header comment lines

    assert body == _document_of(config.RuntimeConfig, rendered)
    assert rendered.hash == hashlib.sha256(rendered.document.encode()).hexdigest()[:16]


def test_a_field_set_to_a_non_default_value_does_change_the_document() -> None:
    rendered = _rendered()
    doc = yaml.safe_load(rendered.document)
    doc["reliability"] = {**doc.get("reliability", {}), "jitterCapSeconds": 9.0}

    changed = _WithNewNestedKnob.model_validate(doc).to_document()

    assert changed["reliability"]["jitterCapSeconds"] == 9.0
