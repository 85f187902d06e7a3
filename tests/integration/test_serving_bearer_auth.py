"""Bearer-token authentication from a mounted Secret file: the API needs a token, probes,
metrics and the OpenAPI document stay open, and the document declares the scheme (the real app
over ASGI, real Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from serving_support import runtime_config

from pilothouse.runtime import config, serving

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(
    redis_url: str, tmp_path: Path, unique_name: str
) -> AsyncIterator[httpx.AsyncClient]:
    secret = tmp_path / "tokens"
    secret.write_text("# rotated monthly\ngood-token ci submit\n")
    doc = runtime_config(
        unique_name,
        "http://127.0.0.1:9/v1",
        server={"authTokensFile": str(secret)},
        audit={"enabled": False},
    )
    rt = await serving.build_runtime(
        config.parse_config(doc),
        role=serving.Role.API,
        environ={"PILOTHOUSE_REDIS_URL": redis_url},
        tracing=False,
    )
    await rt.start()
    try:
        transport = httpx.ASGITransport(app=rt.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://runtime") as c:
            yield c
    finally:
        await rt.drain(0)
        await rt.close()


async def test_the_api_needs_a_listed_token(client: httpx.AsyncClient) -> None:
    body = {"input": "What is 2+2?"}
    missing = await client.post("/v1/requests", json=body)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert missing.json()["error"] == "unauthorized"
    wrong = await client.post("/v1/requests", json=body, headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert (await client.get("/v1/requests/req-x")).status_code == 401
    assert (await client.post("/agent/process", json=body)).status_code == 401
    assert (await client.get("/v1/escalations")).status_code == 401
    good = {"authorization": "Bearer good-token"}
    ok = await client.post("/v1/requests", json=body, headers=good)
    assert ok.status_code == 202
    rid = ok.json()["request_id"]
    assert (await client.get(f"/v1/requests/{rid}", headers=good)).json()["state"] == "queued"


async def test_probes_metrics_and_the_document_stay_open(client: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert (await client.get(path)).status_code == 200, path
    doc = (await client.get("/openapi.json")).json()
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
    }
    assert doc["paths"]["/v1/requests"]["post"]["security"] == [{"bearerAuth": []}]
    assert "security" not in doc["paths"]["/healthz"]["get"]


async def test_a_body_never_reaches_the_app_without_a_token(client: httpx.AsyncClient) -> None:
    # Unauthenticated callers learn nothing from validation: 401 comes before any parsing.
    r = await client.post(
        "/v1/requests", content=b"{broken", headers={"content-type": "application/json"}
    )
    assert r.status_code == 401
