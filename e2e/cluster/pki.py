"""Certificates and keys for the local control plane, made with the ``openssl`` CLI.

The launcher needs a cluster CA, a serving certificate for kube-apiserver, client
certificates for the admin (group ``system:masters``), kube-controller-manager and
kube-scheduler (whose bootstrap RBAC roles are bound to their user names), and a key pair
that signs ServiceAccount tokens. ECDSA P-256 keys keep generation fast. Files are made once
per state directory and reused by later starts; ``ensure()`` is idempotent.
``kubeconfig()`` wraps a client certificate into a self-contained kubeconfig.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

DAYS = "3650"
CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
# Names a client inside the cluster may use for the API server (first service IP included).
SERVING_SANS = (
    "IP:127.0.0.1",
    "DNS:localhost",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
)


class PKIError(RuntimeError):
    """openssl is missing or failed."""


@dataclasses.dataclass(frozen=True)
class ClientCert:
    cert: Path
    key: Path


@dataclasses.dataclass(frozen=True)
class PKI:
    """Paths of every file the control plane components read."""

    dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def serving(self) -> ClientCert:
        return ClientCert(self.dir / "apiserver.crt", self.dir / "apiserver.key")

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"

    def client(self, name: str) -> ClientCert:
        return ClientCert(self.dir / f"{name}.crt", self.dir / f"{name}.key")


# name -> (common name = user, organisation = group or None)
CLIENTS = {
    "admin": ("pilothouse-admin", "system:masters"),
    "kube-controller-manager": ("system:kube-controller-manager", None),
    "kube-scheduler": ("system:kube-scheduler", None),
}


def _openssl(*args: str) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise PKIError("the 'openssl' command is needed to make the test cluster's certificates")
    proc = subprocess.run([openssl, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise PKIError(f"openssl {args[0]} failed: {proc.stderr.strip()}")


def _issue(pki: PKI, out: ClientCert, subject: str, extensions: list[str]) -> None:
    addext: list[str] = []
    for ext in extensions:
        addext += ["-addext", ext]
    _openssl(
        "req",
        "-x509",
        "-nodes",
        *CURVE,
        "-days",
        DAYS,
        "-subj",
        subject,
        "-CA",
        str(pki.ca_cert),
        "-CAkey",
        str(pki.ca_key),
        "-keyout",
        str(out.key),
        "-out",
        str(out.cert),
        *addext,
    )


def ensure(
    directory: Path,
    service_ip: str,
    *,
    extra_ips: tuple[str, ...] = (),
    clients: dict[str, tuple[str, str | None]] | None = None,
) -> PKI:
    """Create the CA, certificates and ServiceAccount keys that do not exist yet.

    ``extra_ips``: more addresses the API server is reached on (a real node's link); the
    serving certificate is issued again when its names change. ``clients``: client
    certificates besides ``CLIENTS`` (a kubelet, kube-proxy).
    """
    pki = PKI(directory)
    directory.mkdir(parents=True, exist_ok=True)
    sans = ",".join((*SERVING_SANS, f"IP:{service_ip}", *(f"IP:{ip}" for ip in extra_ips)))
    sans_file = directory / "apiserver.sans"
    if pki.serving.cert.exists() and (not sans_file.exists() or sans_file.read_text() != sans):
        pki.serving.cert.unlink()
    if not pki.ca_cert.exists() or not pki.ca_key.exists():
        _openssl(
            "req",
            "-x509",
            "-nodes",
            *CURVE,
            "-days",
            DAYS,
            "-subj",
            "/CN=pilothouse-test-ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
            "-keyout",
            str(pki.ca_key),
            "-out",
            str(pki.ca_cert),
        )
    if not pki.serving.cert.exists():
        _issue(
            pki,
            pki.serving,
            "/CN=kube-apiserver",
            [
                "basicConstraints=CA:FALSE",
                "keyUsage=critical,digitalSignature,keyEncipherment",
                "extendedKeyUsage=serverAuth",
                f"subjectAltName={sans}",
            ],
        )
        sans_file.write_text(sans)
    for name, (user, group) in {**CLIENTS, **(clients or {})}.items():
        cert = pki.client(name)
        if not cert.cert.exists():
            subject = (f"/O={group}" if group else "") + f"/CN={user}"
            _issue(
                pki,
                cert,
                subject,
                [
                    "basicConstraints=CA:FALSE",
                    "keyUsage=critical,digitalSignature,keyEncipherment",
                    "extendedKeyUsage=clientAuth",
                ],
            )
    if not pki.sa_key.exists() or not pki.sa_pub.exists():
        _openssl(
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-out",
            str(pki.sa_key),
        )
        _openssl("pkey", "-in", str(pki.sa_key), "-pubout", "-out", str(pki.sa_pub))
    for key in directory.glob("*.key"):
        key.chmod(0o600)
    return pki


def kubeconfig(server: str, ca: Path, client: ClientCert, user: str) -> str:
    """A kubeconfig with everything embedded. JSON is YAML: every Kubernetes client reads it."""

    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "pilothouse",
                "cluster": {"server": server, "certificate-authority-data": b64(ca)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(client.cert),
                    "client-key-data": b64(client.key),
                },
            }
        ],
        "contexts": [{"name": "pilothouse", "context": {"cluster": "pilothouse", "user": user}}],
        "current-context": "pilothouse",
    }
    return json.dumps(config, indent=2) + "\n"
