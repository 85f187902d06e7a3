"""The chart's values: documented, schema-checked, linted, and refused clearly when wrong.

No cluster needed: helm lint and helm template only. The generated README and
values.schema.json must match values.yaml (charts/chartdocs.py), every ci/ variant must pass the
schema and `helm lint --strict`, and a misspelt or contradictory value must fail with a message
that names it.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import helm_chart
import jsonschema
import pytest
import yaml

CHARTDOCS = helm_chart.REPO_ROOT / "charts" / "chartdocs.py"


def _chartdocs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chartdocs", CHARTDOCS)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["chartdocs"] = module
    spec.loader.exec_module(module)
    return module


chartdocs = _chartdocs()


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> helm_chart.Helm:
    return helm_chart.helm(tmp_path_factory.mktemp("helm"))


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def test_readme_and_schema_are_generated_from_the_current_values() -> None:
    files = chartdocs.render(helm_chart.CHART_DIR)

    for path, text in files.items():
        assert path.read_text() == text, f"{path.name} is stale: run `make chart-docs`"


def test_every_value_is_documented_in_the_readme() -> None:
    text = (helm_chart.CHART_DIR / "values.yaml").read_text()
    values, _sections = chartdocs.parse(text)
    readme = (helm_chart.CHART_DIR / "README.md").read_text()

    assert len(values) > 40
    for value in values:
        assert f"| `{value.key}` |" in readme, value.key


def test_an_undocumented_value_is_refused_by_the_generator() -> None:
    text = "image:\n  # -- The repository.\n  repository: x\n  tag: latest\n"

    with pytest.raises(chartdocs.ChartDocsError, match=r"values.yaml:4: image.tag has no `# --`"):
        chartdocs.parse(text)


@pytest.mark.parametrize("values_file", helm_chart.CI_VALUES, ids=lambda p: p.name)
def test_ci_values_pass_the_schema(values_file: Path) -> None:
    schema = json.loads((helm_chart.CHART_DIR / "values.schema.json").read_text())
    defaults = yaml.safe_load((helm_chart.CHART_DIR / "values.yaml").read_text())
    jsonschema.validate(defaults, schema)

    jsonschema.validate(_merge(defaults, yaml.safe_load(values_file.read_text()) or {}), schema)


@pytest.mark.parametrize(
    "values_file", [None, *helm_chart.CI_VALUES], ids=lambda p: p.name if p else "defaults"
)
def test_helm_lint_strict_passes(helm: helm_chart.Helm, values_file: Path | None) -> None:
    args = ["lint", "--strict", str(helm_chart.CHART_DIR)]
    if values_file is not None:
        args += ["--values", str(values_file)]

    result = helm.run(*args)

    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["operator.standbye=true"], "additional properties 'standbye' not allowed"),
        (["rbac.scope=everywhere"], "/rbac/scope': value must be one of 'cluster', 'namespaced'"),
        (["watchNamespaces={Team_A}"], "/watchNamespaces/0"),
        (["monitoring.prometheusRule.errorRateThreshold=2"], "errorRateThreshold"),
        (["rbac.scope=namespaced"], "rbac.scope=namespaced needs watchNamespaces"),
        (["watchNamespaces={a,a}"], "/watchNamespaces': items at 0 and 1 are equal"),
        (
            ["serviceAccount.create=false"],
            "serviceAccount.name is required when serviceAccount.create is false",
        ),
    ],
)
def test_bad_values_fail_with_a_message_naming_them(
    helm: helm_chart.Helm, sets: list[str], message: str
) -> None:
    args = ["template", "x", str(helm_chart.CHART_DIR)]
    for item in sets:
        args += ["--set", item]

    result = helm.run(*args, check=False)

    assert result.returncode != 0
    assert message in result.stderr
