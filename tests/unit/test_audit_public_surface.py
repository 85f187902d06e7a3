"""The governance packages export what their ``__all__`` says, on purpose."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize(
    ("package", "expected"),
    [
        ("pilothouse.runtime.policies", {"PolicyEngine", "redact"}),
        (
            "pilothouse.runtime.audit",
            {"AuditSettings", "AuditStore", "AuditStoreError", "AuditWriter"},
        ),
    ],
)
def test_exported_members(package: str, expected: set[str]) -> None:
    module = importlib.import_module(package)
    assert set(module.__all__) == expected
    for name in module.__all__:
        assert getattr(module, name) is not None
