"""``make kind-demo``'s manifests are accepted by a real API server and do what they say.

kind itself needs Docker and a registry, so the target cannot run here; its two files can be
checked all the same: the in-cluster services pass a server-side dry run, and the JSON patch
turns the example agent into one that talks to them (and refuses to apply if the example's tools
change order, thanks to its ``test`` operations).
"""

from __future__ import annotations

import json
from pathlib import Path

import operator_harness as h
import yaml
from cluster.launcher import Cluster

KIND_DIR = Path(__file__).resolve().parent / "demo" / "kind"


def test_the_services_pass_a_server_side_dry_run(k8s_cluster: Cluster, k8s_namespace: str) -> None:
    text = (KIND_DIR / "services.yaml").read_text().replace("pilothouse-system", k8s_namespace)

    out = k8s_cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=text).stdout

    assert sorted(line.split()[0] for line in out.splitlines()) == sorted(
        [f"deployment.apps/{n}" for n in ("redis", "postgres", "mock-llm", "tools")]
        + [f"service/{n}" for n in ("redis", "postgres", "mock-llm", "tools")]
    )


def test_the_patch_points_the_example_agent_at_them(
    k8s_cluster: Cluster, k8s_namespace: str
) -> None:
    h.install_crds(k8s_cluster)
    k8s_cluster.kubectl("apply", "-n", k8s_namespace, "-f", str(h.EXAMPLES))

    k8s_cluster.kubectl(
        "patch", "agd", "customer-support", "-n", k8s_namespace, "--type", "json",
        "--patch-file", str(KIND_DIR / "agent-patch.json"),
    )  # fmt: skip

    agent = json.loads(
        k8s_cluster.kubectl(
            "get", "agd", "customer-support", "-n", k8s_namespace, "-o", "json"
        ).stdout
    )["spec"]
    models = [agent["agent"]["model"], *agent["agent"]["fallbackModels"]]
    assert {m["endpoint"] for m in models} == {"http://mock-llm.pilothouse-system.svc:8090/v1"}
    assert {t["name"]: t["url"] for t in agent["agent"]["tools"]} == {
        "weather_api": "http://tools.pilothouse-system.svc:8095/weather",
        "initiate_return": "http://tools.pilothouse-system.svc:8095/returns",
    }


def test_the_example_secrets_name_the_services_and_credentials_it_runs() -> None:
    services = [d for d in yaml.safe_load_all((KIND_DIR / "services.yaml").read_text()) if d]
    ports = {
        d["metadata"]["name"]: d["spec"]["ports"][0]["port"]
        for d in services
        if d["kind"] == "Service"
    }
    postgres = next(
        d for d in services if d["kind"] == "Deployment" and d["metadata"]["name"] == "postgres"
    )
    env = {
        e["name"]: e["value"] for e in postgres["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    examples = yaml.safe_load_all((h.EXAMPLES / "00-secrets.yaml").read_text())
    data = {d["metadata"]["name"]: d["stringData"] for d in examples if d}

    assert (
        data["pilothouse-redis"]["url"] == f"redis://redis.pilothouse-system.svc:{ports['redis']}/0"
    )
    assert data["pilothouse-postgres"]["dsn"] == (
        f"postgresql://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}"
        f"@postgres.pilothouse-system.svc:{ports['postgres']}/{env['POSTGRES_DB']}"
    )
