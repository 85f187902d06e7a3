"""Run the Argo CD health checks of deploy/gitops/argocd/ on live objects, as Argo CD does.

Argo CD evaluates a custom resource's health with a Lua 5.1 script from ``argocd-cm``: the object
is the global ``obj``, the script returns a table with ``status`` and ``message``. Used by the
e2e tests that read agents' health at every step of their life; the unit tests run the same
scripts on recorded statuses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lupa.lua51
import yaml

SNIPPET = (
    Path(__file__).resolve().parents[1]
    / "deploy"
    / "gitops"
    / "argocd"
    / "argocd-cm-pilothouse-health.yaml"
)


def health(obj: dict[str, Any]) -> str:
    """Argo CD's health of a Pilothouse object: Healthy, Progressing or Degraded."""
    data = yaml.safe_load(SNIPPET.read_text())["data"]
    script = data[f"resource.customizations.health.pilothouse.dev_{obj['kind']}"]
    lua = lupa.lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    return str(lua.execute(script)["status"])
