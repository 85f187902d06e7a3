"""Pydantic JSON schema -> apiextensions v1 *structural* schema.

The CRD generator (:mod:`pilothouse.operator.crdgen`) calls :func:`to_structural` on the JSON
schema pydantic produces for the API models. Kubernetes accepts only a subset of OpenAPI v3:
no ``$ref`` (definitions are inlined), a ``type`` on every node, ``anyOf`` only inside
``x-kubernetes-int-or-string``, no ``additionalProperties`` beside ``properties``, the OpenAPI
3.0 boolean form of ``exclusiveMinimum``, no ``uniqueItems``. This module rewrites pydantic's
output into that subset and refuses, with the path of the offending node, anything it cannot
express faithfully, so a model change that the API server would reject fails here first.

Rules:

* ``Optional[X]`` (``anyOf: [X, null]``) becomes ``X``, left out of ``required``: the API
  server prunes an explicit ``null`` of a non-nullable field, which is what "absent" means.
* ``dict[str, Any]`` becomes an object with ``x-kubernetes-preserve-unknown-fields``.
* Only scalar defaults are kept (objects and lists are left to the models' own defaults, so a
  stored resource does not freeze a whole default section at the version that wrote it).
* Descriptions (pydantic's field and class docstrings) are unwrapped, reST literals become
  single backquotes and scalar defaults are appended (``Default: `5`.``), which is how
  ``kubectl explain`` (which does not print defaults) reads best.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pilothouse.operator import errors

__all__ = ["describe", "to_structural"]

# Keys of OpenAPI v3 schemas that apiextensions v1 understands, besides the x-kubernetes-* ones.
_KEPT = frozenset(
    {
        "type",
        "format",
        "description",
        "enum",
        "pattern",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "multipleOf",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "required",
        "nullable",
    }
)
# Keys dropped on purpose: documentation-only or handled structurally elsewhere.
_DROPPED = frozenset({"title", "examples", "$defs", "deprecated", "readOnly", "writeOnly"})
_SCALARS = (str, int, float, bool)
_NULL = {"type": "null"}


def to_structural(
    schema: Mapping[str, Any],
    *,
    extra_by_model: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Convert a pydantic ``model_json_schema()`` into a structural schema.

    ``extra_by_model`` adds keys (CEL ``x-kubernetes-validations``, say) to the inlined
    definition of a model, by class name: the way to attach rules to models this package
    reuses from the runtime without touching them.
    """
    converter = _Converter(schema.get("$defs", {}), extra_by_model or {})
    return converter.convert(schema, path="", stack=())


def describe(text: str) -> str:
    """A docstring as a schema description: paragraphs unwrapped, ``literal`` -> `literal`."""
    text = re.sub(r"``([^`]+)``", r"`\1`", text.strip())
    paragraphs = re.split(r"\n\s*\n", text)
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


class _Converter:
    def __init__(
        self, defs: Mapping[str, Any], extra_by_model: Mapping[str, Mapping[str, Any]]
    ) -> None:
        self._defs = defs
        self._extra = extra_by_model
        unknown = set(extra_by_model) - set(defs)
        if unknown:
            raise errors.SchemaConversionError(
                f"extra keys for models that the schema does not use: {sorted(unknown)}"
            )

    def convert(
        self, node: Mapping[str, Any], *, path: str, stack: tuple[str, ...]
    ) -> dict[str, Any]:
        where = path or "(root)"
        if "$ref" in node:
            return self._inline(node, path=path, stack=stack)
        if "allOf" in node:
            parts = node["allOf"]
            if len(parts) != 1:
                raise errors.SchemaConversionError(f"{where}: allOf with {len(parts)} schemas")
            rest = {k: v for k, v in node.items() if k != "allOf"}
            return self.convert({**parts[0], **rest}, path=path, stack=stack)
        if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
            return self._optional(node, path=path, stack=stack)
        if "patternProperties" in node:  # a map with constrained keys (pydantic's dict[K, V])
            ((pattern, values),) = node["patternProperties"].items()
            names = {**node.get("propertyNames", {}), "pattern": pattern}
            rest = {k: v for k, v in node.items() if k != "patternProperties"}
            node = {**rest, "additionalProperties": values, "propertyNames": names}

        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _DROPPED or key in ("properties", "items", "additionalProperties"):
                continue
            if key == "description":
                out[key] = describe(value)
            elif key == "default":
                if isinstance(value, _SCALARS):
                    out[key] = value
            elif key == "const":
                out["enum"] = [value]
            elif key in ("exclusiveMinimum", "exclusiveMaximum"):
                bound = "minimum" if key == "exclusiveMinimum" else "maximum"
                if isinstance(value, bool):
                    out[key] = value
                else:
                    out[bound] = value
                    out[key] = True
            elif key == "uniqueItems":
                if value:
                    out["x-kubernetes-list-type"] = "set"
            elif key == "anyOf":  # int-or-string: the only anyOf Kubernetes allows
                out[key] = [dict(b) for b in value]
            elif key == "propertyNames":  # no structural equivalent: a CEL rule on the keys
                rules = out.setdefault("x-kubernetes-validations", [])
                rules.append(_key_rule(value, where))
            elif key in _KEPT or key.startswith("x-kubernetes-"):
                out[key] = value
            else:
                raise errors.SchemaConversionError(f"{where}: unsupported schema key {key!r}")

        if out.get("default", "") != "" and "description" in out:
            out["description"] += f" Default: `{_literal(out['default'])}`."
        if "enum" in out and "type" not in out:
            out["type"] = _enum_type(out["enum"], where)
        kind = out.get("type")
        if kind == "object" or "properties" in node or "additionalProperties" in node:
            self._object(node, out, path=path, stack=stack)
        elif kind == "array":
            if "prefixItems" in node:
                raise errors.SchemaConversionError(
                    f"{where}: fixed-length tuples are not supported"
                )
            if "items" not in node:
                raise errors.SchemaConversionError(f"{where}: an array needs an item schema")
            out["items"] = self.convert(node["items"], path=f"{path}[]", stack=stack)
            if out.get("x-kubernetes-list-type") == "set" and out["items"].get("type") in (
                "object",
                "array",
                None,
            ):
                raise errors.SchemaConversionError(f"{where}: a set of non-scalar items")
        elif kind is None and not (
            out.get("x-kubernetes-int-or-string") or out.get("x-kubernetes-preserve-unknown-fields")
        ):
            if set(out) - {"description", "default"}:
                raise errors.SchemaConversionError(f"{where}: a schema without a type")
            out["x-kubernetes-preserve-unknown-fields"] = True  # `Any`
        return out

    # ------------------------------------------------------------------------------ helpers

    def _inline(
        self, node: Mapping[str, Any], *, path: str, stack: tuple[str, ...]
    ) -> dict[str, Any]:
        ref: str = node["$ref"]
        name = ref.rsplit("/", 1)[-1]
        if not ref.startswith("#/$defs/") or name not in self._defs:
            raise errors.SchemaConversionError(f"{path or '(root)'}: unresolvable $ref {ref!r}")
        if name in stack:
            chain = " -> ".join((*stack, name))
            raise errors.SchemaConversionError(
                f"{path or '(root)'}: recursive model {chain} cannot be inlined"
            )
        target = {**self._defs[name], **self._extra.get(name, {})}
        # The field's own keys (description, default) win over the model's.
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return self.convert(merged, path=path, stack=(*stack, name))

    def _optional(
        self, node: Mapping[str, Any], *, path: str, stack: tuple[str, ...]
    ) -> dict[str, Any]:
        branches: Sequence[Mapping[str, Any]] = node["anyOf"]
        real = [b for b in branches if dict(b) != _NULL]
        if len(real) != 1:
            raise errors.SchemaConversionError(
                f"{path or '(root)'}: a union of {len(real)} schemas has no structural form "
                "(only Optional[X] and int-or-string are supported)"
            )
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if rest.get("default", ...) is None:
            del rest["default"]
        return self.convert({**real[0], **rest}, path=path, stack=stack)

    def _object(
        self,
        node: Mapping[str, Any],
        out: dict[str, Any],
        *,
        path: str,
        stack: tuple[str, ...],
    ) -> None:
        out["type"] = "object"
        props: Mapping[str, Any] = node.get("properties", {})
        extra = node.get("additionalProperties")
        if props:
            if isinstance(extra, Mapping):
                raise errors.SchemaConversionError(
                    f"{path or '(root)'}: properties and additionalProperties together"
                )
            out["properties"] = {
                name: self.convert(sub, path=f"{path}.{name}" if path else name, stack=stack)
                for name, sub in props.items()
            }
        elif isinstance(extra, Mapping):
            out["additionalProperties"] = self.convert(extra, path=f"{path}{{}}", stack=stack)
        elif extra is True or (extra is None and not out.get("required")):
            out["x-kubernetes-preserve-unknown-fields"] = True
        # additionalProperties: false -> nothing: the API server prunes unknown fields, and
        # kubectl's strict field validation reports them by name.


def _key_rule(names: Mapping[str, Any], where: str) -> dict[str, str]:
    """``propertyNames`` (a pattern and a length) as a CEL rule over a map's keys."""
    checks = []
    if "maxLength" in names:
        checks.append(f"size(k) <= {int(names['maxLength'])}")
    if "pattern" in names:
        if "'" in names["pattern"]:
            raise errors.SchemaConversionError(f"{where}: a key pattern with a quote")
        checks.append(f"k.matches(r'{names['pattern']}')")
    if not checks or set(names) - {"type", "pattern", "maxLength", "minLength", "description"}:
        raise errors.SchemaConversionError(f"{where}: propertyNames other than a pattern/length")
    what = names.get("description") or f"match {names.get('pattern', 'the pattern')}"
    return {
        "rule": f"self.all(k, {' && '.join(checks)})",
        "message": f"spec.{where}: keys must {what}",
    }


def _literal(value: str | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _enum_type(values: Sequence[Any], where: str) -> str:
    kinds = {type(v) for v in values}
    if kinds == {str}:
        return "string"
    if kinds == {int}:
        return "integer"
    raise errors.SchemaConversionError(f"{where}: an enum of mixed or unsupported types")
