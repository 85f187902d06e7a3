"""Missing Secrets and keys are found from metadata alone, naming the field that needs them."""

from __future__ import annotations

from typing import Any

from pilothouse.operator import api, references

MODEL_KEY = references.Needed(
    "spec.agent.model.apiKeySecretRef", api.SecretKeyRef(name="llm", key="api-key")
)
REDIS = references.Needed("spec.redis.urlSecretRef", api.SecretKeyRef(name="redis", key="url"))


def _meta(*keys: str, section: str = "f:data") -> dict[str, Any]:
    fields = {section: {f"f:{k}": {} for k in keys}, "f:type": {}}
    return {"name": "x", "managedFields": [{"manager": "kubectl", "fieldsV1": fields}]}


def test_keys_come_from_managed_fields_never_from_values() -> None:
    meta = {
        "managedFields": [
            {"fieldsV1": {"f:data": {"f:a": {}}}},
            {"fieldsV1": {"f:stringData": {"f:b": {}}, "f:metadata": {"f:labels": {}}}},
        ]
    }

    assert references.keys_of(meta) == {"a", "b"}
    assert references.keys_of({"name": "x"}) is None  # unknown, not empty


def test_nothing_missing() -> None:
    found = {"llm": _meta("api-key"), "redis": _meta("url", section="f:stringData")}

    assert references.missing([MODEL_KEY, REDIS], found, "ns") is None


def test_a_missing_secret_and_a_missing_key_are_named_with_their_fields() -> None:
    problem = references.missing([MODEL_KEY, REDIS], {"llm": None, "redis": _meta("uri")}, "ns")

    assert problem is not None
    assert problem.reason == "SecretNotFound"
    assert "spec.agent.model.apiKeySecretRef: Secret llm not found in ns" in problem.message
    assert "spec.redis.urlSecretRef: Secret redis has no key url" in problem.message


def test_unknown_keys_are_not_reported_missing() -> None:
    assert references.missing([REDIS], {"redis": {"name": "redis"}}, "ns") is None
