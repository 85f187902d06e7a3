"""Where the autoscaler reads an agent's backlog from: the agent's Redis Secret, the operator's
own Redis URL, the default Secret; and with ``--no-secret-reads`` never a Secret."""

from __future__ import annotations

import pytest
from operator_support import MINIMAL_AGENT, agent_body

from pilothouse.operator import api, cli, errors, resources, scaling, settings


def _spec(**redis: object) -> api.AgentDeploymentSpec:
    return resources.parse_agent(agent_body({**MINIMAL_AGENT, "redis": redis})).spec


def _settings(*argv: str) -> settings.OperatorSettings:
    return cli.settings_from_args(cli.build_parser().parse_args(list(argv)))


def test_the_agents_secret_comes_first_then_the_operators_url_then_the_default() -> None:
    own = _spec(urlSecretRef={"name": "agent-redis", "key": "url"})
    bare = _spec()
    operator = _settings("--redis-url", "redis://ops:6379/0", "--redis-secret", "shared")
    assert scaling.backlog_source(own, operator) == api.SecretKeyRef(name="agent-redis", key="url")
    assert scaling.backlog_source(bare, operator) == "redis://ops:6379/0"
    only_default = _settings("--redis-secret", "shared")
    assert scaling.backlog_source(bare, only_default) == api.SecretKeyRef(name="shared", key="url")
    with pytest.raises(errors.BacklogUnavailable, match=r"set spec\.redis\.urlSecretRef"):
        scaling.backlog_source(bare, _settings())


def test_without_secret_reads_every_agent_uses_the_operators_url() -> None:
    own = _spec(urlSecretRef={"name": "agent-redis", "key": "url"})
    operator = _settings("--no-secret-reads", "--redis-url", "redis://ops:6379/0")
    assert operator.read_secrets is False
    assert scaling.backlog_source(own, operator) == "redis://ops:6379/0"
    with pytest.raises(errors.BacklogUnavailable, match="reads no Secrets"):
        scaling.backlog_source(own, _settings("--no-secret-reads"))
