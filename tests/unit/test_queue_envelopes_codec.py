"""What a stream entry carries survives the trip, and an entry that cannot be decoded says why."""

from __future__ import annotations

import orjson
import pytest

from pilothouse.runtime import envelopes, errors, requests


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
