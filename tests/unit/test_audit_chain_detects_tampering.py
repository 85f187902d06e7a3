"""The hash chain: linking, and the verifier naming the first altered or removed record."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from pilothouse.runtime import records
from pilothouse.runtime.audit import chain, rows

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _rows(n: int) -> list[rows.DecisionRow]:
    return [
        rows.decision_row(
            records.AgentDecision(
                request_id=f"r{i // 3}",
                agent_id="a",
                step=i % 3,
                action="llm_call",
                input="hi",
                action_params={"model": "m", "t": 0.1 * i},
                result={"answer": i},
                latency_ms=1.5,
                cost_usd=1e-7,
                timestamp=T0 + timedelta(seconds=i),
            ),
            rows.AuditSettings(),
        )
        for i in range(n)
    ]


def _verify(
    linked: list[chain.LinkedRow], head: chain.ChainPoint | None, anchor=None
) -> tuple[int, str | None]:  # type: ignore[no-untyped-def]
    v = chain.ChainVerifier("a", anchor)
    for r in linked:
        if not v.feed(r):
            break
    return v.verified, v.finish(head)


def _head(linked: list[chain.LinkedRow]) -> chain.ChainPoint:
    return chain.ChainPoint(linked[-1].chain_seq, linked[-1].hash)


def test_an_untouched_chain_verifies() -> None:
    linked = chain.link(chain.ChainPoint(0, chain.GENESIS), _rows(10))
    assert [r.chain_seq for r in linked] == list(range(1, 11))
    assert _verify(linked, _head(linked)) == (10, None)


def test_appending_continues_from_the_head() -> None:
    first = chain.link(chain.ChainPoint(0, chain.GENESIS), _rows(4))
    more = chain.link(_head(first), _rows(6)[4:])
    assert _verify(first + more, _head(more)) == (6, None)


def test_an_altered_field_is_found() -> None:
    linked = chain.link(chain.ChainPoint(0, chain.GENESIS), _rows(10))
    bad = dataclasses.replace(linked[4].row, cost_usd=0.0)
    linked[4] = dataclasses.replace(linked[4], row=bad)
    verified, problem = _verify(linked, _head(linked))
    assert verified == 4
    assert problem is not None
    assert "#5" in problem
    assert "altered" in problem


def test_an_altered_record_with_a_recomputed_hash_is_found_through_its_successor() -> None:
    linked = chain.link(chain.ChainPoint(0, chain.GENESIS), _rows(10))
    bad = dataclasses.replace(linked[4].row, outcome="ok!")
    new_hash = chain.link_hash(linked[4].prev_hash, chain.canonical(bad))
    linked[4] = dataclasses.replace(linked[4], row=bad, hash=new_hash)
    _, problem = _verify(linked, _head(linked))
    assert problem is not None
    assert "#5" in problem
    assert "altered" in problem


def test_a_removed_record_is_found() -> None:
    linked = chain.link(chain.ChainPoint(0, chain.GENESIS), _rows(10))
    head = _head(linked)
    del linked[6]
    _, problem = _verify(linked, head)
    assert problem is not None
    assert "#7" in problem
    assert "removed" in problem


def test_removed_newest_records_are_found_from_the_head() -> None:
    linked = chain.link(chain.ChainPoint(0, chain.GENESIS), _rows(10))
    _, problem = _verify(linked[:8], _head(linked))
    assert problem is not None
    assert "#9..#10" in problem


def test_verification_starts_at_the_retention_anchor() -> None:
    linked = chain.link(chain.ChainPoint(0, chain.GENESIS), _rows(10))
    anchor = chain.ChainPoint(linked[3].chain_seq, linked[3].hash)
    assert _verify(linked[4:], _head(linked), anchor) == (6, None)


def test_the_hash_survives_a_json_round_trip_of_the_stored_values() -> None:
    row = _rows(1)[0]
    again = rows.DecisionRow.from_json(rows.loads_json(rows.dumps_json(row.to_json())))
    assert chain.canonical(again) == chain.canonical(row)
