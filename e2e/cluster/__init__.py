"""A real Kubernetes control plane for Pilothouse's end-to-end tests and demo.

``binaries`` builds etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl,
KWOK and helm from Go modules; ``pki`` makes the certificates; ``processes`` keeps track of
process groups; ``launcher`` starts and stops the cluster. e2e/conftest.py puts ``e2e/`` on
sys.path and imports ``cluster.launcher``.
"""

__all__ = ["binaries", "launcher", "pki", "processes"]
