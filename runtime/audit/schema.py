"""The audit schema's versioned migrations: SQL files in ``sql/``, applied in order.

Each file is ``NNNN_what.sql``; its version is the number. The store applies the pending
ones at start-up, each in its own transaction, under a PostgreSQL advisory lock, and records
them in ``schema_migrations``, so N replicas starting together migrate once. A migration is
never edited once released: changes come as a new file. Pure: reads package files only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Final

from pilothouse.runtime import errors

__all__ = ["Migration", "load"]

_NAME: Final = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load() -> list[Migration]:
    """Every migration shipped with this version of Pilothouse, oldest first."""
    found: list[Migration] = []
    for entry in resources.files("pilothouse.runtime.audit").joinpath("sql").iterdir():
        m = _NAME.match(entry.name)
        if m is None:
            if entry.name.endswith(".sql"):
                raise errors.PilothouseError(f"audit migration {entry.name}: not NNNN_name.sql")
            continue
        found.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise errors.PilothouseError(f"audit migrations: duplicate versions in {versions}")
    return found
