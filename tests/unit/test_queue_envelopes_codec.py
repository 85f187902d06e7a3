"""What a stream entry carries survives the trip, and an entry that cannot be decoded says why."""

from __future__ import annotations

import orjson
import pytest

from pilothouse.runtime import envelopes, errors, queue, requests


def test_an_envelope_round_trips_through_entry_fields() -> None:
    request = requests.AgentRequest(
        input="What is 2+2?",
        request_id="req-abc",
        session_id="s-1",
        user="u",
        metadata={"k": "v"},
        timeout_seconds=3,
    )
    env = envelopes.Envelope(
        request,
        1700000000.25,
        reply_to="p:ns:a:results:x",
        traceparent="00-t-s-01",
        tracestate="k=v",
    )
    fields = envelopes.encode_envelope(env)
    assert set(fields) == {b"r", b"at", b"rt", b"tp", b"ts"}
    assert envelopes.decode_envelope(fields) == env


def test_optional_fields_stay_out_of_the_entry() -> None:
    env = envelopes.Envelope(requests.AgentRequest(input="hi", request_id="req-1"), 1.5)
    fields = envelopes.encode_envelope(env)
    assert set(fields) == {b"r", b"at"}
    assert orjson.loads(fields[b"r"]) == {"request_id": "req-1", "input": "hi"}


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({}, "no request field 'r'"),
        ({b"r": b"not json"}, "invalid request"),
        ({b"r": b'{"input": 5}'}, "input"),
        ({b"r": b'{"input": "x", "surprise": 1}'}, "surprise"),
    ],
)
def test_undecodable_entries_name_the_problem(fields: dict[bytes, bytes], says: str) -> None:
    with pytest.raises(errors.UsageError, match="malformed entry") as caught:
        envelopes.decode_envelope(fields)
    assert says in str(caught.value)
    d = envelopes.delivery_of("1-0", fields, 2)
    assert d.envelope is None
    assert d.error == str(caught.value)
    assert d.deliveries == 2


def test_the_request_id_of_a_malformed_entry_is_recovered_when_valid() -> None:
    assert (
        envelopes.delivery_of("1-0", {b"r": b'{"request_id": "req-x", "input": 1}'}, 1).request_id
        == "req-x"
    )
    assert (
        envelopes.delivery_of("1-0", {b"r": b'{"request_id": "../x", "input": 1}'}, 1).request_id
        is None
    )
    assert envelopes.delivery_of("1-0", {b"r": b"[1]"}, 1).request_id is None


def test_fields_come_from_dicts_or_flat_lists() -> None:
    assert envelopes.fields_of({"a": "1", b"b": b"2"}) == {b"a": b"1", b"b": b"2"}
    assert envelopes.fields_of([b"a", b"1", "b", "2"]) == {b"a": b"1", b"b": b"2"}
    assert envelopes.fields_of(None) == {}


def test_request_states_parse() -> None:
    queued = envelopes.parse_state(b'q{"at": 12.5}')
    assert queued == envelopes.RequestState("queued", accepted_at=12.5)
    done = envelopes.parse_state(
        b'd{"request_id":"r","agent_id":"a","status":"completed","answer":"4"}'
    )
    assert done is not None
    assert done.state == "done"
    result = done.result()
    assert result is not None
    assert result.answer == "4"
    assert envelopes.parse_state(None) is None
    assert envelopes.parse_state(b"something else") is None
    assert envelopes.parse_state(b"q{broken") == envelopes.RequestState("queued")


def test_the_body_hash_ignores_field_order_the_id_an_approval_and_the_caller() -> None:
    a = requests.AgentRequest(request_id="r-1", input="hi", metadata={"a": "1", "b": "2"})
    b = requests.AgentRequest(
        metadata={"b": "2", "a": "1"},
        input="hi",
        request_id="r-2",
        approved_escalation="esc-1",
        caller="svc-a",
    )
    assert envelopes.body_hash(a) == envelopes.body_hash(b)
    assert envelopes.body_hash(a).startswith("sha256:")


@pytest.mark.parametrize(
    "change",
    [
        {"input": "hi!"},
        {"user": "eve"},
        {"tenant": "t"},
        {"session_id": "s-1"},
        {"metadata": {"a": "1"}},
        {"timeout_seconds": 5.0},
    ],
)
def test_the_body_hash_changes_with_anything_the_caller_asked(change: dict[str, object]) -> None:
    base = {"request_id": "r-1", "input": "hi", "metadata": {"a": "1", "b": "2"}}
    first = requests.AgentRequest.model_validate(base)
    other = requests.AgentRequest.model_validate({**base, **change})
    assert envelopes.body_hash(first) != envelopes.body_hash(other)


@pytest.mark.parametrize(
    ("appendonly", "appendfsync", "save", "says"),
    [
        ("yes", "everysec", "", None),
        ("yes", "always", "3600 1", None),
        ("yes", "no", "", "appendfsync everysec"),
        ("no", "everysec", "3600 1 300 100", "since the last snapshot"),
        ("no", "everysec", "", "keeps no data on disk"),
        (None, None, None, None),
    ],
)
def test_redis_persistence_settings_decide_the_durability_warning(
    appendonly: str | None, appendfsync: str | None, save: str | None, says: str | None
) -> None:
    warning = queue.durability_warning(appendonly=appendonly, appendfsync=appendfsync, save=save)
    if says is None:
        assert warning is None
    else:
        assert warning is not None
        assert says in warning
