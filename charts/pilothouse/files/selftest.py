"""`helm test` for Pilothouse: is the operator healthy and are its CRDs established?

Run by the chart's test pod (templates/tests/) as ``python3 -c <this file>`` in the Pilothouse
image, so it uses the standard library only. It talks to the Kubernetes API with the pod's
ServiceAccount token (the chart grants that account `get` on the Pilothouse CRDs and nothing
else) and to the operator's health endpoint through its Service. Prints one line per check and
exits 1 when any check fails.

Environment: PILOTHOUSE_HEALTH_URL, PILOTHOUSE_CRDS (comma-separated CRD names),
KUBERNETES_SERVICE_HOST/PORT (set by the kubelet), SERVICEACCOUNT_DIR (default: the mounted
token's folder), PILOTHOUSE_TEST_TIMEOUT (seconds per check, default 60: the operator may still
be starting when the test begins).
"""

import functools
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

SA_DIR = os.environ.get("SERVICEACCOUNT_DIR", "/var/run/secrets/kubernetes.io/serviceaccount")
TIMEOUT = float(os.environ.get("PILOTHOUSE_TEST_TIMEOUT", "60"))


def retry(check: Callable[[], str | None], what: str) -> str | None:
    """Run check() until it returns None (passed) or TIMEOUT passes; return the last problem."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            problem = check()
        except (OSError, ValueError) as e:  # URLError, HTTPError, TLS errors, bad JSON
            problem = f"{type(e).__name__}: {e}"
        if problem is None:
            print(f"ok   {what}", flush=True)
            return None
        if time.monotonic() >= deadline:
            print(f"FAIL {what}: {problem}", flush=True)
            return problem
        time.sleep(1)


def operator_healthy(url: str) -> str | None:
    with urllib.request.urlopen(url, timeout=5) as resp:
        status: int = resp.status
    return None if status == 200 else f"HTTP {status}"


def crd_established(name: str) -> str | None:
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if ":" in host:
        host = f"[{host}]"
    with open(os.path.join(SA_DIR, "token")) as f:
        token = f.read().strip()
    ctx = ssl.create_default_context(cafile=os.path.join(SA_DIR, "ca.crt"))
    req = urllib.request.Request(
        f"https://{host}:{port}/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=5, context=ctx) as resp:
            crd: dict[str, Any] = json.load(resp)
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code} {e.reason}"
    conditions = {c["type"]: c for c in crd.get("status", {}).get("conditions", [])}
    established = conditions.get("Established", {})
    if established.get("status") != "True":
        return f"not established: {established.get('message') or 'no Established condition'}"
    return None


def main() -> int:
    failures: list[str | None] = []
    health_url = os.environ["PILOTHOUSE_HEALTH_URL"]
    failures.append(retry(lambda: operator_healthy(health_url), f"operator health {health_url}"))
    for name in filter(None, os.environ["PILOTHOUSE_CRDS"].split(",")):
        failures.append(retry(functools.partial(crd_established, name), f"CRD {name} established"))
    return 1 if any(failures) else 0


if __name__ == "__main__":
    sys.exit(main())
