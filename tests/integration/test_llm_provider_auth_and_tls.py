"""Provider authentication beyond ``Authorization: Bearer``, over real HTTPS: an internal
gateway with its own certificate authority (``caBundleFile``), the key in Azure OpenAI's
``api-key`` header, the ``api-version`` query parameter, and extra headers from Secrets.

The gateway is a real TLS server (Python's ``http.server`` wrapped in ``ssl``) whose
certificate is signed by a CA made for the test with ``openssl``; it answers a fixed
completion and records what it received."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pilothouse.runtime import config, errors, llm

pytestmark = pytest.mark.integration

COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "gw-model",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1},
}


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Gateway:
    url: str
    ca_file: Path
    seen: list[Seen] = field(default_factory=list)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_certs(tmp: Path) -> tuple[Path, Path, Path]:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
             "/CN=Test Gateway CA", "-keyout", "ca.key", "-out", "ca.pem", cwd=tmp)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", "server.key", "-out", "server.csr", cwd=tmp)  # fmt: skip
    (tmp / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "1", "-extfile", "san.ext", "-out", "server.pem",
             cwd=tmp)  # fmt: skip
    return tmp / "ca.pem", tmp / "server.pem", tmp / "server.key"


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    ca, cert, key = _make_certs(tmp_path)
    seen: list[Seen] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            seen.append(
                Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, json.loads(raw))
            )
            body = json.dumps(COMPLETION).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Gateway(f"https://127.0.0.1:{server.server_address[1]}/openai/v1", ca, seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _model(gw: Gateway, **changes: Any) -> config.ModelConfig:
    return config.ModelConfig(
        endpoint=gw.url,
        name="gw-model",
        api_key_env="GW_KEY",
        api_key_header="api-key",
        api_version="2024-10-21",
        headers={"x-route": "blue"},
        headers_from_env={"x-gateway-token": "GW_TOKEN"},
        ca_bundle_file=str(gw.ca_file),
    ).model_copy(update=changes)


ENV = {"GW_KEY": "k-123", "GW_TOKEN": "t-456"}
MESSAGES = [{"role": "user", "content": "hello"}]


async def test_azure_style_auth_through_a_gateway_with_its_own_ca(gateway: Gateway) -> None:
    client = llm.LLMClient(environ=ENV)
    try:
        completion = await client.chat(_model(gateway), MESSAGES, time_limit=5)
    finally:
        await client.aclose()

    assert completion.content == "hi"
    [seen] = gateway.seen
    assert seen.path == "/openai/v1/chat/completions?api-version=2024-10-21"
    assert seen.headers["api-key"] == "k-123"
    assert "authorization" not in seen.headers
    assert seen.headers["x-gateway-token"] == "t-456"
    assert seen.headers["x-route"] == "blue"


async def test_without_the_ca_bundle_the_gateway_is_not_trusted(gateway: Gateway) -> None:
    client = llm.LLMClient(environ=ENV)
    try:
        with pytest.raises(errors.LLMConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.chat(_model(gateway, ca_bundle_file=None), MESSAGES, time_limit=5)
    finally:
        await client.aclose()
    assert gateway.seen == []


async def test_a_missing_header_secret_is_named(gateway: Gateway) -> None:
    client = llm.LLMClient(environ={"GW_KEY": "k-123"})
    try:
        with pytest.raises(
            errors.LLMRequestRejected, match="header x-gateway-token variable GW_TOKEN"
        ):
            await client.chat(_model(gateway), MESSAGES, time_limit=5)
    finally:
        await client.aclose()
    assert gateway.seen == []


async def test_bearer_stays_the_default(gateway: Gateway) -> None:
    client = llm.LLMClient(environ=ENV)
    try:
        await client.chat(_model(gateway, api_key_header="Authorization"), MESSAGES, time_limit=5)
    finally:
        await client.aclose()
    assert gateway.seen[0].headers["authorization"] == "Bearer k-123"
    assert "api-key" not in gateway.seen[0].headers
