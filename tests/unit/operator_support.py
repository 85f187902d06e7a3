"""Shared inputs of the operator's unit tests: the example resources, parsed, and golden files.

The example manifests in ``crds/examples/`` are what users apply first, so the unit tests build
from them; ``assert_golden`` compares builder output with ``tests/unit/golden/`` and rewrites
the files instead when ``PILOTHOUSE_UPDATE_GOLDEN=1``.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from pilothouse.operator import resources, settings, targeting

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "crds" / "examples"
GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE_GOLDEN = os.environ.get("PILOTHOUSE_UPDATE_GOLDEN") == "1"
NAMESPACE = "shop"

DEFAULTS = settings.RuntimeDefaults(image="pilothouse:test")


def example_documents() -> list[dict[str, Any]]:
    """Every document of every example file, in file order."""
    docs: list[dict[str, Any]] = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def example(kind: str, name: str) -> dict[str, Any]:
    """One example resource as the API server would hand it over (namespace, uid, generation)."""
    for doc in example_documents():
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            body = dict(doc)
            body["metadata"] = {
                **doc["metadata"],
                "namespace": NAMESPACE,
                "uid": f"uid-{name}",
                "generation": 1,
            }
            return body
    raise LookupError(f"no example {kind} {name}")


def agent_body(spec: Mapping[str, Any], *, name: str = "helper", **meta: Any) -> dict[str, Any]:
    """An AgentDeployment body with this spec."""
    metadata = {"name": name, "namespace": NAMESPACE, "uid": f"uid-{name}", "generation": 1}
    metadata.update(meta)
    return {
        "apiVersion": "pilothouse.dev/v1alpha1",
        "kind": "AgentDeployment",
        "metadata": metadata,
        "spec": dict(spec),
    }


def policy_body(spec: Mapping[str, Any], *, name: str, generation: int = 1) -> dict[str, Any]:
    """An AgentPolicy body with this spec."""
    metadata = {
        "name": name,
        "namespace": NAMESPACE,
        "uid": f"uid-{name}",
        "generation": generation,
    }
    return {
        "apiVersion": "pilothouse.dev/v1alpha1",
        "kind": "AgentPolicy",
        "metadata": metadata,
        "spec": dict(spec),
    }


MINIMAL_AGENT: dict[str, Any] = {
    "agent": {
        "systemPrompt": "You help.",
        "model": {"endpoint": "http://mock-llm:8000/v1", "name": "mock-llm"},
    },
    "redis": {"urlSecretRef": {"name": "redis", "key": "url"}},
    "audit": {"enabled": False},
}


def support_agent() -> resources.Agent:
    return resources.parse_agent(example("AgentDeployment", "customer-support"))


def example_policies() -> list[resources.Policy]:
    return [
        resources.parse_policy(example("AgentPolicy", name))
        for name in ("cost-guard", "safety", "returns-review")
    ]


def targeting_order(
    agent: resources.Agent, policies: list[resources.Policy]
) -> list[resources.Policy]:
    """The policies that apply to the agent, in evaluation order."""
    return list(targeting.select_policies(agent, policies).applied)


class _GoldenDumper(yaml.SafeDumper):
    """Multi-line strings (the rendered config) as literal blocks, so diffs read line by line."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_GoldenDumper.add_representer(str, _str)


def assert_golden(name: str, documents: Iterable[Any]) -> None:
    """Compare YAML documents with ``golden/<name>``; rewrite it with PILOTHOUSE_UPDATE_GOLDEN=1."""
    text = yaml.dump_all(
        list(documents), Dumper=_GoldenDumper, sort_keys=False, allow_unicode=True, width=100
    )
    path = GOLDEN / name
    if UPDATE_GOLDEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    assert path.exists(), f"{path} is missing: run PILOTHOUSE_UPDATE_GOLDEN=1 pytest {__file__}"
    expected = path.read_text()
    if text != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                text.splitlines(keepends=True),
                fromfile=f"golden/{name}",
                tofile="built",
            )
        )
        raise AssertionError(
            f"builder output differs from golden/{name} (if intended, regenerate with "
            f"PILOTHOUSE_UPDATE_GOLDEN=1):\n{diff}"
        )
