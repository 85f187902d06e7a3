"""kubectl, as the demo uses it: JSON reads, applies from documents, Secrets, conditions.

The demo drives the cluster with the kubectl built by ``e2e/cluster`` (as an admin, from the
launcher's kubeconfig; the operator alone runs as its ServiceAccount), and shows some of its
output verbatim (``kubectl get agd -o wide``): what a person would type is what the demo runs.
A failed command becomes a :class:`~demo.waiting.DemoError` carrying kubectl's own message.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Sequence
from typing import Any

import yaml
from cluster import launcher

from demo import waiting

__all__ = ["Kube", "condition", "is_ready"]

Doc = dict[str, Any]


def condition(obj: Doc, type_: str) -> Doc:
    """The status condition of this type ({} when absent)."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            found: Doc = cond
            return found
    return {}


def is_ready(obj: Doc) -> bool:
    """Ready=True, computed from the current generation (kstatus' reading)."""
    return condition(obj, "Ready").get("status") == "True" and (obj.get("status") or {}).get(
        "observedGeneration"
    ) == (obj.get("metadata") or {}).get("generation")


class Kube:
    """kubectl against the demo's cluster, as admin."""

    def __init__(self, cluster: launcher.Cluster) -> None:
        self.cluster = cluster

    def run(self, *args: str, input: str | None = None, timeout: float = 60) -> str:
        """kubectl's stdout; :class:`DemoError` with its stderr when it fails."""
        try:
            result = self.cluster.kubectl(*args, input=input, check=False, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise waiting.DemoError(f"kubectl {' '.join(args)}: no answer in {timeout:g} s") from e
        if result.returncode != 0:
            raise waiting.DemoError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def show(self, *args: str) -> str:
        """The output of ``kubectl ARGS`` (for printing), led by the command itself."""
        return f"$ kubectl {' '.join(args)}\n{self.run(*args)}"

    def apply(
        self, docs: Sequence[Doc], *, namespace: str | None = None, server_side: bool = False
    ) -> str:
        text = "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)
        args = ["apply", "-f", "-"]
        if namespace:
            args += ["-n", namespace]
        if server_side:
            args += ["--server-side", "--force-conflicts"]
        return self.run(*args, input=text)

    def get(self, kind: str, name: str, namespace: str) -> Doc | None:
        """One object, or None when it does not exist."""
        result = self.cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr:
                return None
            raise waiting.DemoError(f"kubectl get {kind} {name}: {result.stderr.strip()}")
        found: Doc = json.loads(result.stdout)
        return found

    def items(self, kind: str, namespace: str, *args: str) -> list[Doc]:
        out = self.run("get", kind, "-n", namespace, *args, "-o", "json")
        found: list[Doc] = json.loads(out)["items"]
        return found

    def secret_data(self, name: str, namespace: str) -> dict[str, str]:
        """A Secret's decoded data; {} when it does not exist."""
        secret = self.get("secret", name, namespace) or {}
        return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}

    def server_and_ca(self) -> tuple[str, str]:
        """The API server's URL and CA bundle (base64 PEM), from the admin kubeconfig."""
        view = json.loads(self.run("config", "view", "--raw", "--minify", "-o", "json"))
        entry = view["clusters"][0]["cluster"]
        return str(entry["server"]), str(entry["certificate-authority-data"])

    def established(self, crds: Sequence[Doc]) -> None:
        names = [f"crd/{d['metadata']['name']}" for d in crds]
        self.run("wait", "--for=condition=Established", "--timeout=60s", *names, timeout=70)
