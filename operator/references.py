"""The Secrets an agent's pods need, and which of them are missing, judged from metadata alone.

A pod whose ``secretKeyRef`` names a missing Secret or key never starts
(``CreateContainerConfigError``), so the reconciler checks every reference before it rolls
anything out, and a missing one makes the agent Stalled (``SecretNotFound``) naming the field and
the Secret, while the pods keep their last config. The check never reads a value: the operator
fetches each Secret as ``PartialObjectMetadata`` (metadata only) and learns its keys from
``managedFields``, which list the keys each writer set but none of their values. Pure: the
reconciler (:mod:`pilothouse.operator.reconciling`) fetches, these functions decide.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pilothouse.operator import api, conditions, rendering, statuses

__all__ = ["Needed", "keys_of", "missing", "needed"]


@dataclass(frozen=True, slots=True)
class Needed:
    """A Secret key the agent's pods need, and the field that asks for it."""

    field: str
    ref: api.SecretKeyRef


def needed(rendered: rendering.RenderedConfig) -> tuple[Needed, ...]:
    """Every Secret key the rendered agent's pods reference, in spec order."""
    found = [Needed(e.field or e.name, e.secret) for e in rendered.secret_env]
    if rendered.auth_tokens is not None:
        found.append(Needed("spec.server.authTokensSecretRef", rendered.auth_tokens))
    return tuple(found)


def keys_of(metadata: Mapping[str, Any]) -> frozenset[str] | None:
    """The keys of a Secret from its ``managedFields`` (``f:data`` / ``f:stringData``); None
    when the server recorded no field ownership (the keys are then unknown, not absent)."""
    entries = metadata.get("managedFields") or []
    keys: set[str] = set()
    known = False
    for entry in entries:
        fields = entry.get("fieldsV1") if isinstance(entry, Mapping) else None
        if not isinstance(fields, Mapping):
            continue
        for section in ("f:data", "f:stringData"):
            owned = fields.get(section)
            if isinstance(owned, Mapping):
                known = True
                keys.update(k[2:] for k in owned if isinstance(k, str) and k.startswith("f:"))
    return frozenset(keys) if known else None


def missing(
    wanted: Sequence[Needed], secrets: Mapping[str, Mapping[str, Any] | None], namespace: str
) -> statuses.Problem | None:
    """Why the pods could not start for want of a Secret, or None.

    ``secrets`` maps each referenced Secret's name to its metadata (None: it does not exist).
    """
    problems = []
    for item in wanted:
        meta = secrets.get(item.ref.name)
        if meta is None:
            problems.append(f"{item.field}: Secret {item.ref.name} not found in {namespace}")
            continue
        keys = keys_of(meta)
        if keys is not None and item.ref.key not in keys:
            problems.append(f"{item.field}: Secret {item.ref.name} has no key {item.ref.key}")
    if not problems:
        return None
    message = "; ".join(dict.fromkeys(problems)) + (
        "; rollouts wait until it exists (the pods keep their last config)"
    )
    return statuses.Problem(conditions.SECRET_NOT_FOUND, message)
