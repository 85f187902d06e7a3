"""Play the kubelet for `helm test` pods: run their command on this machine, report the result.

KWOK, the test control plane's kubelet, marks pods Running but runs nothing, so on its own a
`helm test` pod would never finish. :class:`TestPodRunner` watches a namespace for pods carrying
the ``helm.sh/hook: test`` annotation; once KWOK reports one Running, it runs the pod's container
command here, the way a kubelet would: with the pod's environment, a token of the pod's
ServiceAccount (TokenRequest) and the cluster CA in a folder named by ``SERVICEACCOUNT_DIR``,
``KUBERNETES_SERVICE_HOST/PORT`` pointing at the API server. Then it writes the exit code into
the pod's status (``Succeeded`` or ``Failed``), which is what `helm test` waits for.

Only what a cluster network would do differently is translated: Service URLs in the pod's
environment are rewritten to local addresses (``service_urls``), like kube-proxy would route
them, and ``python3`` is this interpreter (the image's Python runs the same script). Anything
else the pod asks for (a volume, a field reference) is refused with an error naming it.
"""

from __future__ import annotations

import base64
import datetime
import json
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cluster.launcher import Cluster

HOOK_ANNOTATION = "helm.sh/hook"
SERVICEACCOUNT_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
"""Where admission mounts the token; here, a folder named by ``SERVICEACCOUNT_DIR``."""
POLL_INTERVAL = 0.5
RUN_TIMEOUT = 300


class TestPodRunner:
    """Runs every `helm test` pod of a namespace while active (a context manager)."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        cluster: Cluster,
        namespace: str,
        workdir: Path,
        *,
        service_urls: Mapping[str, str] | None = None,
    ) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.workdir = workdir
        self.service_urls = dict(service_urls or {})
        self.results: dict[str, subprocess.CompletedProcess[str]] = {}  # by pod name
        self.errors: list[str] = []
        self._done: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> TestPodRunner:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=RUN_TIMEOUT)

    # ------------------------------------------------------------------------------ loop

    def _loop(self) -> None:
        while not self._stop.wait(POLL_INTERVAL):
            try:
                for pod in self._test_pods():
                    uid = pod["metadata"]["uid"]
                    if uid in self._done or pod.get("status", {}).get("phase") != "Running":
                        continue
                    self._done.add(uid)
                    self._run(pod)
            except Exception as e:  # reported by the test, never lost in the thread
                self.errors.append(f"{type(e).__name__}: {e}")

    def _test_pods(self) -> list[dict[str, Any]]:
        out = self.cluster.kubectl("get", "pods", "-n", self.namespace, "-o", "json").stdout
        pods: list[dict[str, Any]] = json.loads(out)["items"]
        return [p for p in pods if HOOK_ANNOTATION in (p["metadata"].get("annotations") or {})]

    # -------------------------------------------------------------------------- one pod

    def _run(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        spec = pod["spec"]
        if len(spec["containers"]) != 1 or spec.get("initContainers"):
            raise ValueError(f"pod {name}: only single-container pods are supported")
        container = spec["containers"][0]
        argv = [*container.get("command", []), *container.get("args", [])]
        if not argv:
            raise ValueError(f"pod {name}: no command (the image's default is unknown here)")
        if argv[0] in ("python3", "python"):
            argv[0] = sys.executable
        started_at = _now()
        result = subprocess.run(
            argv,
            env=self._environment(pod, container),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            cwd=self.workdir,
        )
        self.results[name] = result
        (self.workdir / f"{name}.log").write_text(result.stdout + result.stderr)
        self._report(pod, container, result.returncode, started_at)

    def _environment(self, pod: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
        name = pod["metadata"]["name"]
        env: dict[str, str] = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(self.workdir)}
        for var in container.get("env", []):
            if "value" not in var:
                raise ValueError(f"pod {name}: env {var['name']} is not a plain value")
            env[var["name"]] = self._translate(var["value"])
        mounts = [m["mountPath"] for m in container.get("volumeMounts", [])]
        if container.get("envFrom") or set(mounts) - {SERVICEACCOUNT_MOUNT}:
            raise ValueError(f"pod {name}: envFrom and volumes (but the token's) are unsupported")
        server = self._api_server()
        env["KUBERNETES_SERVICE_HOST"] = server.hostname or "127.0.0.1"
        env["KUBERNETES_SERVICE_PORT"] = str(server.port or 443)
        if pod["spec"].get("automountServiceAccountToken", True):
            env["SERVICEACCOUNT_DIR"] = str(self._service_account(pod))
        return env

    def _translate(self, value: str) -> str:
        for service_url, local_url in self.service_urls.items():
            value = value.replace(service_url, local_url)
        return value

    def _api_server(self) -> Any:
        view = self._kubeconfig_view()
        return urlsplit(view["clusters"][0]["cluster"]["server"])

    def _kubeconfig_view(self) -> dict[str, Any]:
        out = self.cluster.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout
        view: dict[str, Any] = json.loads(out)
        return view

    def _service_account(self, pod: dict[str, Any]) -> Path:
        account = pod["spec"].get("serviceAccountName") or "default"
        folder = self.workdir / f"serviceaccount-{pod['metadata']['name']}"
        folder.mkdir(exist_ok=True)
        token = self.cluster.kubectl(
            "create", "token", account, "-n", self.namespace, "--duration=10m",
            "--bound-object-kind=Pod", f"--bound-object-name={pod['metadata']['name']}",
            f"--bound-object-uid={pod['metadata']['uid']}",
        ).stdout.strip()  # fmt: skip
        (folder / "token").write_text(token)
        ca = self._kubeconfig_view()["clusters"][0]["cluster"]["certificate-authority-data"]
        (folder / "ca.crt").write_bytes(base64.b64decode(ca))
        (folder / "namespace").write_text(self.namespace)
        return folder

    def _report(
        self, pod: dict[str, Any], container: dict[str, Any], code: int, started_at: str
    ) -> None:
        terminated = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": started_at,
            "finishedAt": _now(),
        }
        status = {
            "phase": "Succeeded" if code == 0 else "Failed",
            "containerStatuses": [
                {
                    "name": container["name"],
                    "image": container["image"],
                    "imageID": "",
                    "ready": False,
                    "started": False,
                    "restartCount": 0,
                    "state": {"terminated": terminated},
                }
            ],
        }
        self.cluster.kubectl(
            "patch", "pod", pod["metadata"]["name"], "-n", self.namespace,
            "--subresource=status", "--type=merge", "-p", json.dumps({"status": status}),
        )  # fmt: skip


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
