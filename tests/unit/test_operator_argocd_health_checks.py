"""The Argo CD health checks shipped in deploy/gitops/argocd/ read recorded statuses rightly.

Argo CD judges a custom resource's health with a Lua script from its ``argocd-cm`` ConfigMap.
The scripts are run here with Lua 5.1 (the dialect of Argo CD's interpreter, through ``lupa``)
against statuses recorded from the operator on a real API server (``argocd_statuses/``, one
file per case, named ``<Kind>-<expected health>-<case>.json``), the way Argo CD calls them: the
object as the global ``obj``, the script's returned table read for ``status`` and ``message``.
The chart's README carries the same snippet.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lupa.lua51
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SNIPPET = ROOT / "deploy" / "gitops" / "argocd" / "argocd-cm-pilothouse-health.yaml"
CHART_README = ROOT / "charts" / "pilothouse" / "README.md"
RECORDED = Path(__file__).parent / "argocd_statuses"
KEY = "resource.customizations.health.pilothouse.dev_{kind}"


def health(script: str, obj: dict[str, Any]) -> dict[str, str]:
    """Run an Argo CD health script on ``obj``; its result as a dict."""
    lua = lupa.lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(script)
    return {key: result[key] for key in ("status", "message") if result[key] is not None}


def scripts() -> dict[str, str]:
    data: dict[str, str] = yaml.safe_load(SNIPPET.read_text())["data"]
    return data


CASES = sorted(RECORDED.glob("*.json"))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_recorded_status_reads_as_expected(path: Path) -> None:
    kind, expected, _ = path.stem.split("-", 2)
    obj = json.loads(path.read_text())
    assert obj["kind"] == kind

    result = health(scripts()[KEY.format(kind=kind)], obj)

    assert result["status"] == expected, result
    assert result["message"]


def test_every_health_is_recorded_for_both_kinds() -> None:
    covered = {tuple(p.stem.split("-", 2)[:2]) for p in CASES}
    for kind in ("AgentDeployment", "AgentPolicy"):
        for expected in ("Progressing", "Healthy", "Degraded"):
            assert (kind, expected) in covered


def test_the_message_names_the_stalled_reason() -> None:
    (stalled,) = RECORDED.glob("AgentDeployment-Degraded-*policy*.json")
    result = health(scripts()[KEY.format(kind="AgentDeployment")], json.loads(stalled.read_text()))

    assert result["message"].startswith("PolicyNotFound: ")


def test_a_resource_without_status_is_progressing() -> None:
    for kind in ("AgentDeployment", "AgentPolicy"):
        obj = {"apiVersion": "pilothouse.dev/v1alpha1", "kind": kind, "metadata": {"generation": 1}}
        assert health(scripts()[KEY.format(kind=kind)], obj)["status"] == "Progressing"


def test_the_chart_readme_ships_the_same_snippet() -> None:
    assert SNIPPET.read_text().split("apiVersion: v1", 1)[1] in CHART_README.read_text()
