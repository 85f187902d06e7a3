"""The API's request body: everything a caller may set of an AgentRequest (and nothing that only
the runtime sets), with text the rest of the system can store."""

from __future__ import annotations

import pydantic
import pytest

from pilothouse.runtime import api_models, requests


def test_body_fields_are_the_request_fields_minus_what_the_runtime_sets_plus_wait() -> None:
    body = set(api_models.RequestBody.model_fields)
    request = set(requests.AgentRequest.model_fields)
    # ``history`` comes from the messages of POST /v1/chat/completions only: a native caller
    # keeps a conversation in a session.
    assert body == (request - {"approved_escalation", "caller", "history"}) | {"wait_seconds"}


def test_a_caller_cannot_approve_its_own_escalation() -> None:
    with pytest.raises(pydantic.ValidationError, match="approved_escalation"):
        api_models.RequestBody.model_validate({"input": "hi", "approved_escalation": "esc-1"})


def test_to_request_keeps_the_id_or_makes_one() -> None:
    given = api_models.RequestBody(input="hi", request_id="req-mine", wait_seconds=3).to_request()
    assert given.request_id == "req-mine"
    made = api_models.RequestBody(input="hi").to_request()
    assert made.request_id.startswith("req-")
    assert made.approved_escalation is None


@pytest.mark.parametrize(
    ("doc", "where"),
    [
        ({"input": "a\ud800b"}, "(?i)unicode"),
        ({"input": "a\x00b"}, "NUL character at position 1"),
        ({"input": "ok", "user": "\udc00"}, "(?i)unicode"),
        ({"input": "ok", "metadata": {"k\x00": "v"}}, "key"),
        ({"input": "ok", "metadata": {"k": "\ud83d"}}, "value of 'k'"),
        ({"input": "ok", "metadata": {str(i): "v" for i in range(65)}}, "at most 64"),
        ({"input": "ok", "wait_seconds": 301}, "less than or equal to 300"),
        ({"input": ""}, "at least 1 character"),
    ],
)
def test_unstorable_or_out_of_bounds_values_are_rejected(
    doc: dict[str, object], where: str
) -> None:
    with pytest.raises(pydantic.ValidationError, match=where):
        api_models.RequestBody.model_validate(doc)


def test_odd_but_valid_text_is_accepted() -> None:
    text = "\u202eRTL \u200b zero width \U0001f680 e\u0301 \U0010fffd"
    assert api_models.RequestBody(input=text).input == text


def test_check_text_names_the_position() -> None:
    assert api_models.check_text("fine") == "fine"
    with pytest.raises(ValueError, match="position 3"):
        api_models.check_text("abc\x00")
