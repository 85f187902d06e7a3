"""Kopf's own bookkeeping on the custom resources, of a size independent of the spec.

Kopf remembers the last state it handled of each AgentDeployment and AgentPolicy (its "diff
base") to tell a real change from a status write or its own annotations. Its default copies
the whole spec into the ``last-handled-configuration`` annotation; annotations are limited to
256 KiB in total, so an agent with a long system prompt could never be patched again, not even
to remove the finalizer: it stayed Terminating for good. The operator's handlers read the
resource afresh and never look at Kopf's diff, so a digest of the handled state is enough:
:class:`DigestDiffBaseStorage` stores a SHA-256 of the essence Kopf would have stored, a few
dozen bytes for any spec. :mod:`pilothouse.operator.cli` installs it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any, Final, cast

import kopf

__all__ = ["DigestDiffBaseStorage", "digest"]

DIGEST_KEY: Final = "sha256"


def digest(essence: Any) -> str:
    """SHA-256 of a JSON document, independent of key order."""
    encoded = json.dumps(essence, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


class DigestDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """Kopf's annotation diff base, storing ``{"sha256": ...}`` instead of the spec.

    Kopf compares the stored essence with the one it builds from the current body: both are
    digests here, so a change of the spec, labels or annotations is still a change, and the
    annotation stays small. Handlers get the digests as ``old`` / ``new`` / ``diff``; the
    operator's handlers do not use them.
    """

    def build(
        self,
        *,
        body: kopf.Body,
        extra_fields: Iterable[kopf.FieldSpec] | None = None,
    ) -> kopf.BodyEssence:
        essence = super().build(body=body, extra_fields=extra_fields)
        return cast(kopf.BodyEssence, {DIGEST_KEY: digest(essence)})
