"""``pilothouse-operator``: run the operator.

Builds :class:`~pilothouse.operator.settings.OperatorSettings` from flags (the Helm chart passes
them), configures Kopf (namespaces to watch or cluster-wide, peering with a standby replica,
watch timeouts so a silent watch is re-established instead of freezing, the liveness endpoint,
server-side filtering of the children's watches, annotations instead of status for Kopf's own
bookkeeping, Kopf's per-handler Events only for warnings), starts the Prometheus endpoint and
JSON logs, wires the handlers and runs the Kopf event loop until SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
from collections.abc import Sequence
from typing import Any

import kopf
import prometheus_client
from pydantic import ValidationError

from pilothouse.operator import (
    api,
    backlogs,
    bookkeeping,
    cleanups,
    handlers,
    kube,
    labels,
    metrics,
    reconciling,
    scaling,
    settings,
)

__all__ = ["build_parser", "kopf_settings", "main", "settings_from_args"]

FINALIZER = "pilothouse.dev/finalizer"
KOPF_ANNOTATION_PREFIX = "pilothouse.dev"


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``pilothouse-operator``."""
    p = argparse.ArgumentParser(
        prog="pilothouse-operator",
        description="Reconcile AgentDeployment and AgentPolicy resources into agent runtimes.",
    )
    scope = p.add_argument_group("what to watch")
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        metavar="NS",
        help="watch this namespace (repeat for several); default: every namespace",
    )
    scope.add_argument(
        "--all-namespaces", "-A", action="store_true", help="watch every namespace (default)"
    )
    peers = p.add_mutually_exclusive_group()
    peers.add_argument(
        "--peering", metavar="NAME", help="coordinate with standby replicas via this Kopf peering"
    )
    peers.add_argument("--standalone", action="store_true", help="run without peering (default)")
    p.add_argument("--priority", type=int, help="peering priority (default: random)")
    p.add_argument(
        "--peering-lifetime",
        type=int,
        default=settings.DEFAULT_PEERING_LIFETIME,
        metavar="SECONDS",
        help="seconds a replica's peering record stays valid without a keepalive: a standby "
        "takes over at most this long after the active replica died",
    )

    run = p.add_argument_group("how to run")
    run.add_argument("--liveness-port", type=int, default=8081, help="/healthz port; 0: off")
    run.add_argument("--metrics-port", type=int, default=8080, help="/metrics port; 0: off")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")
    run.add_argument(
        "--autoscale-interval",
        type=float,
        default=settings.DEFAULT_AUTOSCALE_INTERVAL,
        metavar="SECONDS",
        help="seconds between two autoscaler decisions of an agent",
    )
    run.add_argument(
        "--resync-interval",
        type=float,
        default=settings.DEFAULT_RESYNC_INTERVAL,
        metavar="SECONDS",
        help="seconds between full reconciles of an unchanged agent; 0: never",
    )
    run.add_argument(
        "--redis-cleanup-timeout",
        type=float,
        default=settings.DEFAULT_REDIS_CLEANUP_TIMEOUT,
        metavar="SECONDS",
        help="how long the deletion of an agent retries deleting its Redis keys while Redis is "
        "unreachable before it completes without them",
    )
    run.add_argument("--watch-server-timeout", type=int, default=300, metavar="SECONDS")
    run.add_argument("--watch-client-timeout", type=float, default=330, metavar="SECONDS")
    run.add_argument(
        "--redis-url",
        default=os.environ.get("PILOTHOUSE_OPERATOR_REDIS_URL"),
        help="Redis the autoscaler reads backlogs from for agents naming no Redis Secret "
        "(env PILOTHOUSE_OPERATOR_REDIS_URL)",
    )
    run.add_argument(
        "--no-secret-reads",
        dest="read_secrets",
        action="store_false",
        help="never read a Secret: the autoscaler reads every agent's backlog from --redis-url "
        "(then the operator needs no RBAC on Secrets)",
    )

    rt = p.add_argument_group("runtime defaults (rendered into agents that set none)")
    rt.add_argument("--runtime-image", default=settings.DEFAULT_IMAGE)
    rt.add_argument("--runtime-image-pull-policy", choices=["Always", "IfNotPresent", "Never"])
    rt.add_argument("--redis-secret", metavar="NAME", help="Secret with the Redis URL")
    rt.add_argument("--redis-secret-key", default="url", metavar="KEY")
    rt.add_argument("--postgres-secret", metavar="NAME", help="Secret with the PostgreSQL DSN")
    rt.add_argument("--postgres-secret-key", default="dsn", metavar="KEY")
    rt.add_argument("--runtime-redis-url", help="plain Redis URL (development only)")
    rt.add_argument("--runtime-postgres-dsn", help="plain PostgreSQL DSN (development only)")
    rt.add_argument("--otlp-endpoint", help="OTLP/HTTP endpoint for the agents' traces")
    return p


def settings_from_args(args: argparse.Namespace) -> settings.OperatorSettings:
    """The settings a parsed command line asks for; ValidationError names a bad value."""

    def secret(name: str | None, key: str) -> api.SecretKeyRef | None:
        return None if not name else api.SecretKeyRef(name=name, key=key)

    runtime = settings.RuntimeDefaults(
        image=args.runtime_image,
        image_pull_policy=args.runtime_image_pull_policy,
        redis_secret=secret(args.redis_secret, args.redis_secret_key),
        redis_url=args.runtime_redis_url,
        postgres_secret=secret(args.postgres_secret, args.postgres_secret_key),
        postgres_dsn=args.runtime_postgres_dsn,
        otlp_endpoint=args.otlp_endpoint,
    )
    namespaces = () if args.all_namespaces else tuple(dict.fromkeys(args.namespace))
    return settings.OperatorSettings(
        namespaces=namespaces,
        peering=args.peering,
        liveness_port=args.liveness_port or None,
        metrics_port=args.metrics_port or None,
        log_level=args.log_level,
        autoscale_interval=args.autoscale_interval,
        resync_interval=args.resync_interval,
        redis_url=args.redis_url,
        read_secrets=args.read_secrets,
        watch_server_timeout=args.watch_server_timeout,
        watch_client_timeout=args.watch_client_timeout,
        peering_lifetime=args.peering_lifetime,
        redis_cleanup_timeout=args.redis_cleanup_timeout,
        runtime=runtime,
    )


def kopf_settings(s: settings.OperatorSettings, *, identity: str) -> kopf.OperatorSettings:
    """Kopf's settings for these operator settings."""
    ks = kopf.OperatorSettings()
    # A watch that goes silent (a dropped connection, a stuck proxy) is re-established.
    ks.watching.server_timeout = s.watch_server_timeout
    ks.watching.client_timeout = s.watch_client_timeout
    ks.watching.connect_timeout = 30
    # The children are watched for drift: only the operator's own (a server-side selector).
    for resource in handlers.CHILDREN.values():
        ks.watching.label_selectors[resource] = labels.managed_selector()
    ks.networking.request_timeout = max(60.0, s.request_timeout * 2)
    # Keepalives every 1-5 s with a 10 s lifetime (Kopf touches at lifetime minus 5-10 s): a
    # standby resumes at most 10 s after the active replica's last keepalive, and a keepalive
    # late by up to 5 s (a slow API server) does not wake it.
    ks.peering.lifetime = s.peering_lifetime
    # Kopf's bookkeeping in our own annotations and finalizer, never in status.
    ks.persistence.finalizer = FINALIZER
    ks.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_ANNOTATION_PREFIX)
    # A digest of the last handled state, never a copy of the spec (annotations are limited
    # to 256 KiB: a copy of a large spec could not be written, nor the finalizer removed).
    ks.persistence.diffbase_storage = bookkeeping.DigestDiffBaseStorage(
        prefix=KOPF_ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    # The reconciler posts the meaningful Events; Kopf only its warnings and errors.
    ks.posting.level = logging.WARNING
    ks.posting.reporting_component = labels.FIELD_MANAGER
    ks.posting.reporting_instance = identity
    ks.execution.max_workers = 8
    return ks


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pilothouse-operator`` console script."""
    args = build_parser().parse_args(argv)
    try:
        operator_settings = settings_from_args(args)
    except ValidationError as e:
        print(f"pilothouse-operator: invalid settings: {e}", file=sys.stderr)
        return 2

    kopf.configure(
        debug=args.log_level == "debug",
        quiet=args.log_level in ("warning", "error"),
        log_format=kopf.LogFormat.JSON,
        log_refkey="k8s",
    )
    logging.getLogger().setLevel(args.log_level.upper())
    if args.log_level != "debug":  # "Handler 'x' succeeded" for every event and timer tick
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    identity = os.environ.get("POD_ID") or f"{os.uname().nodename}-{os.getpid()}"

    client = kube.Kube.from_environment(
        timeout=operator_settings.request_timeout, instance=identity
    )
    reconciler = reconciling.Reconciler(client, operator_settings)
    reader = backlogs.BacklogReader()
    registry = kopf.OperatorRegistry()
    autoscaler = scaling.Autoscaler(reconciler, reader)
    cleanup = cleanups.RedisCleanup(
        reconciler, reader, autoscaler, timeout=operator_settings.redis_cleanup_timeout
    )
    handlers.register(registry, reconciler, autoscaler, operator_settings, cleanup)

    @kopf.on.cleanup(registry=registry)
    async def close(**_: Any) -> None:
        await reader.close()
        client.close()

    if operator_settings.metrics_port:
        prometheus_client.start_http_server(
            operator_settings.metrics_port, registry=metrics.REGISTRY
        )
    liveness = (
        f"http://0.0.0.0:{operator_settings.liveness_port}/healthz"
        if operator_settings.liveness_port
        else None
    )
    peering = operator_settings.peering
    kopf.run(
        registry=registry,
        settings=kopf_settings(operator_settings, identity=identity),
        clusterwide=not operator_settings.namespaces,
        namespaces=operator_settings.namespaces,
        standalone=peering is None,
        peering_name=peering,
        priority=args.priority if args.priority is not None else random.randint(1, 1_000_000),
        liveness_endpoint=liveness,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
