"""``POST /agent/process`` waits the request's deadline plus grace, never more than the API's
maximum wait, and its 504 names the wait it really made (not the longer request deadline)."""

from __future__ import annotations

from pilothouse.runtime import api, api_models, workers


def test_a_short_deadline_is_waited_in_full_with_grace_and_margin() -> None:
    expected = 10.0 + workers.DEADLINE_GRACE_SECONDS + api.SYNC_WAIT_MARGIN_SECONDS
    assert api.sync_wait_seconds(10.0) == expected


def test_a_long_deadline_is_capped_at_the_maximum_wait() -> None:
    assert api.sync_wait_seconds(3600.0) == api_models.MAX_WAIT_SECONDS


def test_the_504_message_reports_the_capped_wait_and_where_to_read_the_answer() -> None:
    message = api.no_answer_message("req-1", api.sync_wait_seconds(3600.0))
    assert message == "no answer within 300s; read it later at /v1/requests/req-1"
    assert "3607" not in message
