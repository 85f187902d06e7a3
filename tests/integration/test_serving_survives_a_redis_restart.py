"""Redis goes away and comes back under a running ``pilothouse serve``: while it is away the
pod says so (``/readyz`` 503 naming Redis; requests get 503 with ``Retry-After``, not a 500 or a
hang), and once it is back the same process takes and answers requests again without a
restart (consumer group, scripts and the result subscription are re-created)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serving_support import runtime_config, wait_for

from pilothouse.runtime import devservers, testing
from pilothouse.runtime.mockllm.process import MockLLMProcess

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_alone() -> Iterator[devservers.RedisServer]:
    """A Redis of this test only: it is stopped and started again."""
    with devservers.RedisServer() as server:
        yield server.start()


def test_the_runtime_reports_the_outage_and_recovers_by_itself(
    redis_alone: devservers.RedisServer, postgres_dsn: str, tmp_path: Path, unique_name: str
) -> None:
    env = {"PILOTHOUSE_REDIS_URL": redis_alone.url, "PILOTHOUSE_POSTGRES_DSN": postgres_dsn}
    with MockLLMProcess(seed=12) as llm:
        cfg = runtime_config(unique_name, llm.url)
        with (
            testing.RuntimeProcess(cfg, env=env, workdir=tmp_path / "rt") as rt,
            httpx.Client(base_url=rt.url, timeout=20) as client,
        ):
            assert (
                client.post("/v1/requests?wait=10", json={"input": "What is 2+2?"}).status_code
                == 200
            )

            redis_alone.stop()
            unready = wait_for(
                lambda: (r := client.get("/readyz")).status_code == 503 and r.json(),
                timeout=10,
                what="readiness to drop",
            )
            assert "redis" in unready["reasons"]
            assert client.get("/healthz").status_code == 200  # alive: no restart wanted
            r = client.post("/v1/requests", json={"input": "What is 2+2?"})
            assert r.status_code == 503
            assert r.headers["retry-after"] == "1"
            assert "Redis" in r.json()["message"]

            redis_alone.start()
            wait_for(
                lambda: client.get("/readyz").status_code == 200,
                timeout=15,
                what="readiness to come back",
            )
            again = wait_for(
                lambda: (
                    (
                        r := client.post("/v1/requests?wait=10", json={"input": "What is 2+2?"})
                    ).status_code
                    == 200
                    and r.json()
                ),
                timeout=20,
                what="an answer after the restart",
            )
            assert "4" in again["answer"]
            rt.terminate()
            assert rt.wait(30) == 0
