"""The committed CRDs are what the models generate, structural, and documented field by field."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilothouse.operator import crdgen

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
CHART_CRDS = ROOT / "charts" / "pilothouse" / "files" / "crds"


def _crds() -> dict[str, dict[str, Any]]:
    return {"agd": crdgen.agent_crd(), "agp": crdgen.policy_crd()}


def _nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in (schema.get("properties") or {}).items():
        yield from _nodes(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], f"{path}{{}}")


def _root(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


@pytest.mark.parametrize("folder", [CRDS, CHART_CRDS], ids=["crds", "chart"])
def test_committed_crds_match_the_models(folder: Path) -> None:
    assert folder.is_dir(), f"{folder} is missing: run `make crds`"
    stale = crdgen.stale_files(folder)

    assert not stale, f"stale CRDs, run `make crds`: {[str(p) for p in stale]}"


def test_check_mode_fails_on_a_stale_file_and_passes_after_regenerating(tmp_path: Path) -> None:
    assert crdgen.main([str(tmp_path), "--chart-crds", str(tmp_path / "chart")]) == 0
    target = tmp_path / "pilothouse.dev_agentpolicies.yaml"
    target.write_text(target.read_text().replace("agp", "pol"))

    assert crdgen.main([str(tmp_path), "--check", "--chart-crds", str(tmp_path / "chart")]) == 1
    assert crdgen.main([str(tmp_path), "--chart-crds", str(tmp_path / "chart")]) == 0
    assert crdgen.main([str(tmp_path), "--check", "--chart-crds", str(tmp_path / "chart")]) == 0


def test_generated_yaml_has_no_anchors_and_round_trips() -> None:
    for text in crdgen.crd_files().values():
        assert "&id" not in text
        assert yaml.safe_load(text)["kind"] == "CustomResourceDefinition"


@pytest.mark.parametrize("short", ["agd", "agp"])
def test_every_field_has_a_description(short: str) -> None:
    root = _root(_crds()[short])
    undocumented = [
        path
        for path, node in _nodes(root)
        if path not in ("", ".metadata")
        # a field, or an object inside a list or map (scalar items are described by their field)
        and (not path.endswith(("[]", "{}")) or node.get("type") == "object")
        and not node.get("description")
    ]

    assert not undocumented, f"fields without a description: {undocumented}"


@pytest.mark.parametrize("short", ["agd", "agp"])
def test_every_node_is_structural(short: str) -> None:
    for path, node in _nodes(_root(_crds()[short])):
        special = node.get("x-kubernetes-int-or-string") or node.get(
            "x-kubernetes-preserve-unknown-fields"
        )
        assert node.get("type") or special, f"{path}: no type"
        assert "$ref" not in node, f"{path}: unresolved reference"
        assert "$defs" not in node, f"{path}: definitions left"
        assert "anyOf" not in node or node.get("x-kubernetes-int-or-string"), f"{path}: anyOf"
        assert not ("properties" in node and "additionalProperties" in node), path
        assert not isinstance(node.get("exclusiveMinimum"), int | float) or isinstance(
            node.get("exclusiveMinimum"), bool
        ), f"{path}: numeric exclusiveMinimum"
        assert "uniqueItems" not in node, path
        assert "nullable" not in node or node["nullable"] is True, path


def test_agent_crd_has_names_columns_and_subresources() -> None:
    crd = _crds()["agd"]
    names = crd["spec"]["names"]
    version = crd["spec"]["versions"][0]

    assert crd["metadata"]["name"] == "agentdeployments.pilothouse.dev"
    assert names["shortNames"] == ["agd"]
    assert names["categories"] == ["pilothouse"]
    assert crd["spec"]["scope"] == "Namespaced"
    assert version["name"] == "v1alpha1"
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    default_columns = [
        c["name"] for c in version["additionalPrinterColumns"] if "priority" not in c
    ]
    assert default_columns == ["Ready", "Replicas", "Queue", "Age"]


def test_policy_crd_has_names_columns_and_status() -> None:
    crd = _crds()["agp"]
    version = crd["spec"]["versions"][0]

    assert crd["spec"]["names"]["shortNames"] == ["agp"]
    assert crd["spec"]["names"]["categories"] == ["pilothouse"]
    assert version["subresources"] == {"status": {}}
    default_columns = [
        c["name"] for c in version["additionalPrinterColumns"] if "priority" not in c
    ]
    assert default_columns == ["Enforcement", "Agents", "Age"]


@pytest.mark.parametrize("short", ["agd", "agp"])
def test_cel_rule_messages_name_the_field(short: str) -> None:
    rules = [
        rule
        for _, node in _nodes(_root(_crds()[short]))
        for rule in node.get("x-kubernetes-validations", [])
    ]

    assert rules
    for rule in rules:
        assert rule["message"].startswith(("spec.", "metadata.")), rule


def test_agent_crd_encodes_the_cross_field_rules() -> None:
    root = _root(_crds()["agd"])
    spec = root["properties"]["spec"]
    rules = {r["rule"] for _, n in _nodes(root) for r in n.get("x-kubernetes-validations", [])}

    assert "!(has(self.replicas) && has(self.scaling))" in rules
    assert "has(self.systemPrompt) != has(self.systemPromptFrom)" in rules
    assert "self.minReplicas <= self.maxReplicas" in rules
    assert "self.maxBackoffSeconds >= self.initialBackoffSeconds" in rules
    assert any("metadata.name" in r for r in rules)
    tools = spec["properties"]["agent"]["properties"]["tools"]
    assert tools["x-kubernetes-list-type"] == "map"
    assert tools["x-kubernetes-list-map-keys"] == ["name"]
    assert spec["properties"]["policyRefs"]["x-kubernetes-list-map-keys"] == ["name"]


def test_policy_spec_schema_is_the_runtime_policy_spec_plus_targeting() -> None:
    from pilothouse.runtime import config

    spec = _root(_crds()["agp"])["properties"]["spec"]
    runtime_fields = {f.alias or n for n, f in config.PolicySpec.model_fields.items()}

    assert set(spec["properties"]) == runtime_fields | {"targetSelector"}
    assert spec["properties"]["enforcement"]["enum"] == ["enforce", "dryRun"]
    assert spec["properties"]["enforcement"]["default"] == "enforce"


def test_every_example_validates_against_the_models() -> None:
    from operator_support import example_documents

    from pilothouse.operator import resources

    kinds = []
    for doc in example_documents():
        kinds.append(doc["kind"])
        body = {**doc, "metadata": {**doc["metadata"], "namespace": "shop"}}
        if doc["kind"] == "AgentDeployment":
            resources.parse_agent(body)
        elif doc["kind"] == "AgentPolicy":
            resources.parse_policy(body)

    assert kinds.count("AgentDeployment") >= 1
    assert kinds.count("AgentPolicy") >= 3
