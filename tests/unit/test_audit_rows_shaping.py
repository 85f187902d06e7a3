"""What the audit trail stores: redacted when asked, inputs/outputs dropped when asked, safe
for PostgreSQL, settings derived from the agent's policies."""

from __future__ import annotations

from datetime import UTC, datetime

from pilothouse.runtime import config, records, requests
from pilothouse.runtime.audit import rows

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _decision(**kw: object) -> records.AgentDecision:
    base: dict[str, object] = {
        "request_id": "r1",
        "agent_id": "a",
        "step": 0,
        "action": "tool_call",
        "input": "mail me at bob@example.com",
        "action_params": {"to": "bob@example.com", "n": 1},
        "result": {"echo": "card 4111 1111 1111 1111"},
        "timestamp": NOW,
    }
    base.update(kw)
    return records.AgentDecision.model_validate(base)


def test_redaction_reaches_inputs_params_and_results() -> None:
    row = rows.decision_row(_decision(), rows.AuditSettings(redact_pii=True))
    assert row.input == "mail me at [REDACTED_EMAIL]"
    assert row.action_params == {"to": "[REDACTED_EMAIL]", "n": 1}
    assert row.result == {"echo": "card [REDACTED_CARD]"}


def test_redaction_reaches_the_request_summary_as_it_does_the_decisions() -> None:
    request = requests.AgentRequest(
        input="I am bob@example.com",
        user="bob@example.com",
        tenant="acme",
        metadata={"callback": "+1 415-555-2671", "channel": "web"},
    )
    result = requests.AgentResult(
        request_id=request.request_id, agent_id="a", status="completed", answer="Hi bob@example.com"
    )
    summary = rows.request_row(request, result, rows.AuditSettings(redact_pii=True), NOW)
    assert summary.input == "I am [REDACTED_EMAIL]"
    assert summary.answer == "Hi [REDACTED_EMAIL]"
    assert summary.user_id == "[REDACTED_EMAIL]"
    assert summary.tenant == "acme"
    assert summary.metadata == {"callback": "[REDACTED_PHONE]", "channel": "web"}
    # The decision records of the same request carry the same fields, redacted alike.
    params = {"user": request.user, "tenant": request.tenant, "metadata": dict(request.metadata)}
    decision = rows.decision_row(
        _decision(action="request", action_params=params), rows.AuditSettings(redact_pii=True)
    )
    assert decision.action_params == {
        "user": summary.user_id,
        "tenant": summary.tenant,
        "metadata": summary.metadata,
    }
    kept = rows.request_row(request, result, rows.AuditSettings(redact_pii=False), NOW)
    assert (kept.user_id, kept.metadata) == (request.user, dict(request.metadata))


def test_without_redaction_the_text_is_kept() -> None:
    row = rows.decision_row(_decision(), rows.AuditSettings(redact_pii=False))
    assert row.input == "mail me at bob@example.com"


def test_inputs_and_outputs_can_be_left_out() -> None:
    settings = rows.AuditSettings(log_inputs=False, log_outputs=False)
    row = rows.decision_row(_decision(), settings)
    assert row.input is None
    assert row.result is None
    request = requests.AgentRequest(input="secret question")
    result = requests.AgentResult(
        request_id=request.request_id, agent_id="a", status="completed", answer="secret answer"
    )
    summary = rows.request_row(request, result, settings, NOW)
    assert summary.input is None
    assert summary.answer is None
    assert summary.status == "completed"


def test_nul_characters_and_naive_timestamps_are_made_safe() -> None:
    row = rows.decision_row(
        _decision(input="a\x00b", timestamp=datetime(2026, 1, 1)), rows.AuditSettings()
    )
    assert row.input == "a\ufffdb"
    assert row.ts.tzinfo is not None


def test_settings_come_from_the_policies() -> None:
    cfg = config.parse_config(
        {
            "agent": "a",
            "model": {"endpoint": "http://x/v1", "name": "m"},
            "audit": {"retentionDays": 90},
            "policies": [
                {"name": "p1", "compliance": {"redactPii": True}, "audit": {"logOutputs": False}},
                {"name": "p2", "audit": {"retentionDays": 7}},
            ],
        }
    )
    s = rows.AuditSettings.from_config(cfg)
    assert s == rows.AuditSettings(
        log_inputs=True, log_outputs=False, redact_pii=True, retention_days=7
    )
