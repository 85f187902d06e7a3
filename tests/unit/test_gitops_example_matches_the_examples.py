"""deploy/gitops is what a GitOps pipeline applies: it must not drift from crds/examples."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
GITOPS = ROOT / "deploy" / "gitops"


def test_every_resource_is_listed_and_the_copies_match_the_examples() -> None:
    kustomization = yaml.safe_load((GITOPS / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in GITOPS.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    copies = sorted(listed - {"namespace.yaml"})
    assert copies, "the GitOps example deploys no agent or policy"
    for name in copies:
        example = ROOT / "crds" / "examples" / name
        assert example.exists(), f"{name} has no counterpart in crds/examples"
        assert list(yaml.safe_load_all((GITOPS / name).read_text())) == list(
            yaml.safe_load_all(example.read_text())
        ), f"deploy/gitops/{name} differs from crds/examples/{name}"


def test_the_target_namespace_enforces_restricted_pod_security() -> None:
    kustomization = yaml.safe_load((GITOPS / "kustomization.yaml").read_text())
    namespace = yaml.safe_load((GITOPS / "namespace.yaml").read_text())
    assert namespace["metadata"]["name"] == kustomization["namespace"]
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
