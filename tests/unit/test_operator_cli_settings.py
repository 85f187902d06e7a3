"""The operator's flags (as the Helm chart passes them) become its settings and Kopf's."""

from __future__ import annotations

import logging

import kopf
import pytest
from pydantic import ValidationError

from pilothouse.operator import cli, handlers, labels, settings


def _settings(*argv: str) -> settings.OperatorSettings:
    return cli.settings_from_args(cli.build_parser().parse_args(list(argv)))


def test_defaults_watch_everything_standalone_with_probes_and_metrics() -> None:
    s = _settings()

    assert s.namespaces == ()
    assert s.peering is None
    assert (s.liveness_port, s.metrics_port) == (8081, 8080)
    assert s.runtime.image == settings.DEFAULT_IMAGE
    assert s.runtime.redis_secret is None
    assert s.autoscale_interval == settings.DEFAULT_AUTOSCALE_INTERVAL


def test_the_charts_flags_map_onto_the_settings() -> None:
    s = _settings(
        "--namespace=team-a",
        "--namespace=team-b",
        "--namespace=team-a",
        "--liveness-port=9001",
        "--metrics-port=9002",
        "--peering=pilothouse",
        "--runtime-image=registry.example.com/pilothouse:1.0",
        "--redis-secret=shared-redis",
        "--redis-secret-key=uri",
        "--postgres-secret=shared-pg",
        "--postgres-secret-key=dsn",
        "--otlp-endpoint=http://otel:4318",
        "--log-level=warning",
    )

    assert s.namespaces == ("team-a", "team-b")
    assert (s.liveness_port, s.metrics_port, s.peering) == (9001, 9002, "pilothouse")
    assert s.runtime.image == "registry.example.com/pilothouse:1.0"
    assert s.runtime.redis_secret is not None
    assert (s.runtime.redis_secret.name, s.runtime.redis_secret.key) == ("shared-redis", "uri")
    assert s.runtime.postgres_secret is not None
    assert s.runtime.postgres_secret.name == "shared-pg"
    assert s.runtime.otlp_endpoint == "http://otel:4318"
    assert s.log_level == "warning"


def test_all_namespaces_wins_and_zero_ports_disable_endpoints() -> None:
    s = _settings("--namespace=a", "--all-namespaces", "--liveness-port=0", "--metrics-port=0")

    assert s.namespaces == ()
    assert (s.liveness_port, s.metrics_port) == (None, None)


def test_peering_and_standalone_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["--peering=x", "--standalone"])


def test_bad_values_are_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="autoscale_interval"):
        _settings("--autoscale-interval=0")
    with pytest.raises(ValidationError, match="name"):
        _settings("--redis-secret=Not_A_Name")


def test_kopf_is_configured_to_never_freeze_and_to_keep_its_books_in_annotations() -> None:
    ks = cli.kopf_settings(
        _settings("--watch-server-timeout=120", "--watch-client-timeout=150"), identity="op-1"
    )

    assert ks.watching.server_timeout == 120
    assert ks.watching.client_timeout == 150
    assert ks.watching.connect_timeout is not None
    assert ks.persistence.finalizer == "pilothouse.dev/finalizer"
    assert isinstance(ks.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert isinstance(ks.persistence.diffbase_storage, kopf.AnnotationsDiffBaseStorage)
    assert ks.posting.level == logging.WARNING
    assert ks.posting.reporting_instance == "op-1"
    selectors = [ks.watching.label_selectors[key] for key in ks.watching.label_selectors]
    assert selectors == [labels.managed_selector()] * len(handlers.CHILDREN)
