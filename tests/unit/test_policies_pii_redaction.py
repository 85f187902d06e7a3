"""PII: emails, phones, Luhn-valid cards and mod-97-valid IBANs are found and redacted;
look-alikes (invalid checksums, dates, ids, IPs, amounts) are left alone."""

from __future__ import annotations

import pytest

from pilothouse.runtime.policies import pii


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to jane.doe+x@example.co.uk today", "write to [REDACTED_EMAIL] today"),
        ("call +1 415-555-2671.", "call [REDACTED_PHONE]."),
        ("call (555) 123-4567 now", "call [REDACTED_PHONE] now"),
        ("or +442079460958", "or [REDACTED_PHONE]"),
        ("card 4111 1111 1111 1111 ok", "card [REDACTED_CARD] ok"),
        ("card 5500-0000-0000-0004", "card [REDACTED_CARD]"),
        ("iban DE89 3704 0044 0532 0130 00 please", "iban [REDACTED_IBAN] please"),
        ("GB82WEST12345698765432", "[REDACTED_IBAN]"),
    ],
)
def test_personal_data_is_replaced_by_a_placeholder(text: str, expected: str) -> None:
    assert pii.redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112",  # fails Luhn
        "iban DE89 3704 0044 0532 0130 02",  # fails mod 97
        "order 12345678 placed on 2024-01-15 for 1,000.50",
        "server 192.168.1.10 version 3.14.159",
        "What is 2+2?",
        "meeting 12:30-14:00",
    ],
)
def test_look_alikes_are_left_alone(text: str) -> None:
    assert pii.redact(text) == text
    assert pii.contains_pii(text) == []


def test_kinds_are_reported_in_a_stable_order() -> None:
    text = "a@b.io, 4111111111111111 and +1 415 555 2671"
    assert pii.contains_pii(text) == ["card", "email", "phone"]


def test_checksums() -> None:
    assert pii.luhn_valid("79927398713")
    assert not pii.luhn_valid("79927398710")
    assert pii.iban_valid("FR14 2004 1010 0505 0001 3M02 606")
    assert not pii.iban_valid("FR14 2004 1010 0505 0001 3M02 607")


def test_redact_is_exported_for_the_log_formatter() -> None:
    from pilothouse.runtime import policies

    assert policies.redact is pii.redact
