"""The evaluation tool server: a real HTTP server whose answers a dataset can rely on, and a
launcher that says at once why it could not start one."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from pilothouse.runtime import errors
from pilothouse.runtime.evaluation import toolserver

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server() -> Iterator[toolserver.ToolServerProcess]:
    with toolserver.ToolServerProcess() as s:
        yield s


def test_weather_is_the_same_for_get_and_post_and_across_calls(
    server: toolserver.ToolServerProcess,
) -> None:
    posted = httpx.post(f"{server.url}/weather", json={"city": "tokyo"}).json()
    got = httpx.get(f"{server.url}/weather", params={"city": "Tokyo"}).json()
    assert posted == got == toolserver.weather("Tokyo")
    assert posted["conditions"] == "sunny"
    unknown = [httpx.get(f"{server.url}/weather", params={"city": "Ulm"}).json() for _ in "ab"]
    assert unknown[0] == unknown[1]
    assert unknown[0]["city"] == "Ulm"


def test_returns_are_initiated_and_listed(server: toolserver.ToolServerProcess) -> None:
    made = httpx.post(f"{server.url}/returns", json={"order_id": 424242}).json()
    assert made == {"order_id": "424242", "status": "initiated", "return_id": "RET-424242"}
    listed = httpx.get(f"{server.url}/returns").json()["returns"]
    assert made in listed


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/weather", {}, 422, "'city' must be a city name"),
        ("/weather", [1], 400, "must be a JSON object"),
        ("/returns", {"order_id": "12 34"}, 422, "'order_id' must be an order number"),
    ],
)
def test_bad_arguments_get_a_4xx_naming_the_problem(
    server: toolserver.ToolServerProcess, path: str, body: object, status: int, message: str
) -> None:
    response = httpx.post(f"{server.url}{path}", json=body)
    assert response.status_code == status
    assert message in response.json()["error"]


def test_a_server_that_cannot_listen_is_reported_when_it_exits() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        launcher = toolserver.ToolServerProcess(port=port, start_timeout=60)
        # Reported when the process exited (with its output), not after the start timeout.
        with pytest.raises(
            errors.DependencyUnavailable,
            match=rf"exited with code 2:(.|\n)*cannot listen on .*:{port}",
        ):
            launcher.start()
