"""Pydantic's JSON schema becomes a structural (apiextensions v1) schema, or a named error."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

from pilothouse.operator import errors, schemas


class _Base(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")


class Inner(_Base):
    """An inner section."""

    size: int = Field(default=3, gt=0, le=10)
    """How big, in ``units``."""


class Outer(_Base):
    """The outer model."""

    inner: Inner
    """The inner section, described at the field."""
    maybe: Inner | None = None
    """Optional section."""
    label: str | None = None
    """Optional text."""
    anything: dict[str, Any] = Field(default_factory=dict)
    """Free-form."""
    names: dict[str, str] = Field(default_factory=dict)
    """Name map."""
    items: tuple[Inner, ...] = ()
    """A list of sections."""
    flag: bool = True
    """A switch
    that wraps."""


def _convert(model: type[BaseModel], **kw: Any) -> dict[str, Any]:
    return schemas.to_structural(model.model_json_schema(by_alias=True), **kw)


def test_refs_are_inlined_with_the_field_description_winning() -> None:
    out = _convert(Outer)
    inner = out["properties"]["inner"]

    assert "$ref" not in str(out)
    assert inner["type"] == "object"
    assert inner["description"] == "The inner section, described at the field."
    assert inner["properties"]["size"]["type"] == "integer"
    assert out["description"] == "The outer model."


def test_optional_becomes_the_plain_type_and_stays_out_of_required() -> None:
    out = _convert(Outer)

    assert out["required"] == ["inner"]
    assert out["properties"]["label"] == {"type": "string", "description": "Optional text."}
    assert out["properties"]["maybe"]["type"] == "object"
    assert "anyOf" not in str(out)
    assert "default" not in out["properties"]["maybe"]


def test_exclusive_bounds_take_the_openapi_3_0_boolean_form() -> None:
    size = _convert(Outer)["properties"]["inner"]["properties"]["size"]

    assert size["minimum"] == 0
    assert size["exclusiveMinimum"] is True
    assert size["maximum"] == 10
    assert "exclusiveMaximum" not in size


def test_free_form_objects_preserve_unknown_fields_and_string_maps_keep_their_type() -> None:
    props = _convert(Outer)["properties"]

    assert props["anything"]["type"] == "object"
    assert props["anything"]["x-kubernetes-preserve-unknown-fields"] is True
    assert "additionalProperties" not in props["anything"]
    assert props["names"]["additionalProperties"] == {"type": "string"}


def test_only_scalar_defaults_survive_and_descriptions_state_them() -> None:
    props = _convert(Outer)["properties"]

    assert props["flag"]["default"] is True
    assert props["flag"]["description"] == "A switch that wraps. Default: `true`."
    assert "default" not in props["items"]  # ()
    assert "default" not in props["anything"]  # {}
    size = props["inner"]["properties"]["size"]
    assert size["description"] == "How big, in `units`. Default: `3`."


def test_additional_properties_false_is_dropped_since_the_server_prunes() -> None:
    out = _convert(Outer)

    assert "additionalProperties" not in out
    assert "additionalProperties" not in out["properties"]["inner"]


def test_titles_are_dropped() -> None:
    assert "title" not in str(_convert(Outer))


def test_int_or_string_passes_through() -> None:
    schema = {
        "type": "object",
        "properties": {
            "q": {
                "anyOf": [{"type": "integer"}, {"type": "string"}],
                "x-kubernetes-int-or-string": True,
                "description": "A quantity.",
            }
        },
    }
    out = schemas.to_structural(schema)

    assert out["properties"]["q"]["x-kubernetes-int-or-string"] is True
    assert out["properties"]["q"]["anyOf"] == [{"type": "integer"}, {"type": "string"}]


def test_a_union_of_two_types_is_refused_naming_the_field() -> None:
    class Either(_Base):
        value: int | str
        """Either."""

    with pytest.raises(errors.SchemaConversionError, match=r"^value: a union of 2 schemas"):
        _convert(Either)


def test_a_recursive_model_is_refused() -> None:
    class Node(_Base):
        children: tuple[Node, ...] = ()
        """Sub-nodes."""

    with pytest.raises(errors.SchemaConversionError, match="recursive model Node -> Node"):
        _convert(Node)


def test_sets_of_scalars_become_list_type_set() -> None:
    class Tags(_Base):
        tags: frozenset[str] = frozenset()
        """Tags."""

    out = _convert(Tags)["properties"]["tags"]

    assert out["x-kubernetes-list-type"] == "set"
    assert "uniqueItems" not in out


def test_unknown_schema_keys_are_refused() -> None:
    with pytest.raises(errors.SchemaConversionError, match="unsupported schema key 'oneOf'"):
        schemas.to_structural(
            {"type": "object", "properties": {"x": {"oneOf": [], "type": "string"}}}
        )


def test_extra_keys_attach_to_models_by_name() -> None:
    rule = {"rule": "self.size > 1", "message": "inner.size must exceed 1"}
    out = _convert(Outer, extra_by_model={"Inner": {"x-kubernetes-validations": [rule]}})

    assert out["properties"]["inner"]["x-kubernetes-validations"] == [rule]
    assert out["properties"]["items"]["items"]["x-kubernetes-validations"] == [rule]


def test_extra_keys_for_an_unused_model_are_refused() -> None:
    with pytest.raises(errors.SchemaConversionError, match="Missing"):
        _convert(Outer, extra_by_model={"Missing": {}})


def test_describe_unwraps_paragraphs_and_literals() -> None:
    text = "First line\n    continues ``here``.\n\n    Second paragraph."

    assert schemas.describe(text) == "First line continues `here`.\n\nSecond paragraph."


def test_the_input_schema_is_not_modified() -> None:
    raw = Outer.model_json_schema(by_alias=True)
    before = repr(raw)

    schemas.to_structural(raw)

    assert repr(raw) == before


def test_a_map_with_constrained_keys_becomes_a_cel_rule_over_its_keys() -> None:
    Key = Annotated[str, Field(max_length=9, pattern="^[a-z]+$", description="be lowercase")]

    class Labelled(_Base):
        tags: dict[Key, Annotated[str, Field(max_length=3)]] = Field(default_factory=dict)
        """Tags."""

    out = schemas.to_structural(Labelled.model_json_schema())
    tags = out["properties"]["tags"]

    assert tags["additionalProperties"] == {"type": "string", "maxLength": 3}
    assert tags["x-kubernetes-validations"] == [
        {
            "rule": "self.all(k, size(k) <= 9 && k.matches(r'^[a-z]+$'))",
            "message": "spec.tags: keys must be lowercase",
        }
    ]
    assert "patternProperties" not in tags
    assert "propertyNames" not in tags
