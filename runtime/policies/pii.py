"""Personal data detection and redaction: emails, phone numbers, card numbers, IBANs.

Why: the audit trail and the JSON logs must not become a second copy of the users' personal
data. :func:`redact` is the one function that removes it; the audit writer applies it to every
stored input, answer and tool call when a Compliance policy says ``redactPII``, and the JSON
log formatter of the serving layer applies it to every log line. :func:`find` tells the
Compliance policy whether an input carries personal data (``blockPII``).

Everything here is pure and precompiled. Card numbers are only taken for card numbers when
their digits pass the Luhn check, IBANs only when they pass the ISO 13616 mod-97 check, so
order numbers and amounts are left alone. Phone numbers are heuristic: 7 to 15 digits written
with a leading ``+`` or with separators (``555-123-4567``, ``(555) 123 4567``,
``+44 20 7946 0958``); bare digit runs and ISO dates are not phones.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = ["KINDS", "PiiMatch", "contains_pii", "find", "iban_valid", "luhn_valid", "redact"]

KINDS: Final = ("iban", "card", "email", "phone")
"""Kinds of personal data recognised, in the order they are looked for."""

PLACEHOLDERS: Final = {kind: f"[REDACTED_{kind.upper()}]" for kind in KINDS}
"""What each kind is replaced with."""

_EMAIL: Final = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])"
)
_CARD: Final = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")
_IBAN: Final = re.compile(
    r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?![A-Za-z0-9])"
)
_PHONE: Final = re.compile(
    r"(?<![\w.+/-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{1,14}(?:[ .-]\d{1,4}){0,5}"
    r"(?![\w/-])"
)
_NOT_PHONE: Final = re.compile(r"^(?:\d{4}-\d{2}-\d{2}|\d{1,3}(?:\.\d{1,3}){3})$")
"""ISO dates and IPv4 addresses look like phone numbers but are not."""
_HINT: Final = re.compile(r"@|\d(?:[ ().-]?\d){6}")
"""Every kind needs an ``@`` or seven digits in a row (single separators allowed): text without
either, most text, is answered by this one search."""


@dataclass(frozen=True, slots=True)
class PiiMatch:
    """One piece of personal data found in a text."""

    kind: str
    start: int
    end: int


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn checksum (payment card numbers do)."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    """Whether a string (spaces allowed) is an IBAN with a correct mod-97 check."""
    s = candidate.replace(" ", "").upper()
    if not 15 <= len(s) <= 34 or not s[:2].isalpha() or not s[2:4].isdigit() or not s.isalnum():
        return False
    rearranged = s[4:] + s[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def _iban_prefix(text: str) -> str | None:
    """The longest prefix of ``text``, cut at a space, that is a valid IBAN (a trailing word in
    capitals may have been swallowed by the pattern)."""
    while True:
        if iban_valid(text):
            return text
        if " " not in text:
            return None
        text = text.rsplit(" ", 1)[0]


def _is_card(text: str) -> bool:
    digits = re.sub(r"[ -]", "", text)
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


def _is_phone(text: str) -> bool:
    digits = sum(ch.isdigit() for ch in text)
    if not 7 <= digits <= 15 or _NOT_PHONE.match(text):
        return False
    # A bare run of digits is an id or an amount, not a phone number.
    return text.startswith("+") or any(ch in " .-()" for ch in text)


def _whole(valid: Callable[[str], bool]) -> Callable[[str], str | None]:
    return lambda text: text if valid(text) else None


_VALIDATORS: Final = (
    ("iban", _IBAN, _iban_prefix),
    ("card", _CARD, _whole(_is_card)),
    ("email", _EMAIL, _whole(lambda _: True)),
    ("phone", _PHONE, _whole(_is_phone)),
)


def find(text: str) -> list[PiiMatch]:
    """Every piece of personal data in ``text``, in text order, without overlaps."""
    if not text or not _HINT.search(text):
        return []
    taken: list[PiiMatch] = []
    for kind, pattern, valid in _VALIDATORS:
        for m in pattern.finditer(text):
            start = m.start()
            found = valid(m.group())
            if found is None:
                continue
            end = start + len(found)
            if any(start < t.end and t.start < end for t in taken):
                continue
            taken.append(PiiMatch(kind, start, end))
    taken.sort(key=lambda t: t.start)
    return taken


def contains_pii(text: str) -> list[str]:
    """The kinds of personal data in ``text`` (empty when there is none)."""
    return sorted({m.kind for m in find(text)}, key=KINDS.index)


def redact(text: str) -> str:
    """``text`` with every email, phone number, card number and IBAN replaced by a placeholder
    such as ``[REDACTED_EMAIL]``. Text without personal data is returned unchanged."""
    if len(text) <= _CACHED_LENGTH:
        return _redact_cached(text)
    return _redact(text)


_CACHED_LENGTH: Final = 2048
"""Short texts are remembered (a request's input recurs in every step's record and log line)."""


def _redact(text: str) -> str:
    matches = find(text)
    if not matches:
        return text
    parts: list[str] = []
    pos = 0
    for m in matches:
        parts.append(text[pos : m.start])
        parts.append(PLACEHOLDERS[m.kind])
        pos = m.end
    parts.append(text[pos:])
    return "".join(parts)


_redact_cached: Final = functools.lru_cache(maxsize=4096)(_redact)
