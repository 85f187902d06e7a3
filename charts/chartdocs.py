"""Generate a chart's README.md and values.schema.json from the documented values.yaml.

Why: the values file is the chart's interface, and its documentation and schema must never
drift from it. Each value is documented once, above its key, in the helm-docs convention::

    # -- What it does (continues on following `#` lines).
    # @default -- text shown instead of the literal default (optional)
    # @schema {"enum": ["a", "b"]}   (optional: JSON merged into the inferred schema)
    key: default

A key without a `# --` comment is a *section* and must hold a mapping whose keys are
documented; anything else is an error naming the key. Below a documented key everything is
its default (objects such as `resources` are documented as a whole).

The schema is inferred from the defaults (string, integer, number, boolean, array, object),
refined by `@schema`; sections reject unknown keys (a typo in `--set` fails at install, not
silently). The README is `README.md.in` with `{{ values_table }}`, `{{ chart.version }}` and
`{{ chart.appVersion }}` filled in.

Called by `make chart-docs` (write) and by e2e/test_chart_docs_are_current.py (check):

    python charts/chartdocs.py [--check] [CHART_DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

DEFAULT_CHART = Path(__file__).resolve().parent / "pilothouse"
README_TEMPLATE = "README.md.in"
SCHEMA_DRAFT = "http://json-schema.org/draft-07/schema#"

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?:\s|$)")
_DOC = re.compile(r"^\s*# -- ?(?P<text>.*)$")
_DEFAULT = re.compile(r"^\s*# @default -- ?(?P<text>.*)$")
_SCHEMA = re.compile(r"^\s*# @schema (?P<json>.*)$")
_CONTINUATION = re.compile(r"^\s*#(?: (?P<text>.*))?$")


class ChartDocsError(ValueError):
    """values.yaml breaks the documentation convention; the message names the line."""


@dataclasses.dataclass
class Value:
    """One documented value."""

    path: tuple[str, ...]
    description: str
    default: Any = None
    default_text: str | None = None
    schema: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def key(self) -> str:
        return ".".join(self.path)


@dataclasses.dataclass
class _Pending:
    lines: list[str]
    default_text: str | None = None
    schema: dict[str, Any] = dataclasses.field(default_factory=dict)


def parse(text: str) -> tuple[list[Value], list[tuple[str, ...]]]:
    """The documented values (in file order) and the section paths of a values.yaml text."""
    defaults = yaml.safe_load(text) or {}
    values: list[Value] = []
    sections: list[tuple[str, ...]] = []
    stack: list[tuple[int, str, bool]] = []  # (indent, key, documented)
    pending: _Pending | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"values.yaml:{number}"
        if not line.strip():
            pending = None
            continue
        if line.lstrip().startswith("#"):
            if m := _DOC.match(line):
                pending = _Pending([m["text"].strip()])
            elif pending is None:
                continue  # a free comment (section headings, notes)
            elif m := _DEFAULT.match(line):
                pending.default_text = m["text"].strip()
            elif m := _SCHEMA.match(line):
                try:
                    extra = json.loads(m["json"])
                except json.JSONDecodeError as e:
                    raise ChartDocsError(f"{where}: @schema is not JSON: {e}") from e
                if not isinstance(extra, dict):
                    raise ChartDocsError(f"{where}: @schema must be a JSON object")
                pending.schema.update(extra)
            elif m := _CONTINUATION.match(line):
                pending.lines.append((m["text"] or "").strip())
            continue
        m = _KEY.match(line)
        if m is None:
            continue  # list items and block scalar lines, inside some documented default
        indent = len(m["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if any(documented for _, _, documented in stack):
            pending = None
            continue  # part of a documented value's default
        path = (*(k for _, k, _ in stack), m["key"])
        default = _lookup(defaults, path)
        if pending is not None:
            description = " ".join(t for t in pending.lines if t)
            if not description:
                raise ChartDocsError(f"{where}: `# --` of {'.'.join(path)} is empty")
            values.append(Value(path, description, default, pending.default_text, pending.schema))
            stack.append((indent, m["key"], True))
        elif isinstance(default, dict) and default:
            sections.append(path)
            stack.append((indent, m["key"], False))
        else:
            raise ChartDocsError(
                f"{where}: {'.'.join(path)} has no `# --` description above it "
                "(every value is documented; only non-empty mappings may be sections)"
            )
        pending = None
    return values, sections


def _lookup(tree: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def type_name(value: Any) -> str:
    """The JSON schema type of a default."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    if value is None:
        return "null"
    raise ChartDocsError(f"unsupported default {value!r}")


def value_schema(value: Value) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": type_name(value.default)}
    schema["description"] = value.description
    schema["default"] = value.default
    schema.update(value.schema)
    return schema


def build_schema(values: list[Value], sections: list[tuple[str, ...]]) -> dict[str, Any]:
    """A draft-07 schema: sections are closed objects, documented values typed by default."""
    root: dict[str, Any] = {
        "$schema": SCHEMA_DRAFT,
        "title": "Values of the chart",
        "type": "object",
        "additionalProperties": False,
        # Parents pass `global` to every subchart; accept it.
        "properties": {
            "global": {"type": "object", "description": "Global values of a parent chart."}
        },
    }
    nodes: dict[tuple[str, ...], dict[str, Any]] = {(): root}
    entries: list[tuple[str, ...] | Value] = [*sections, *values]
    # File order (a section precedes its values): the schema reads like values.yaml.
    order = {key: i for i, key in enumerate(_file_order(values, sections))}
    for entry in sorted(entries, key=lambda e: order[e.path if isinstance(e, Value) else e]):
        if isinstance(entry, Value):
            nodes[entry.path[:-1]]["properties"][entry.path[-1]] = value_schema(entry)
        else:
            node = {"type": "object", "additionalProperties": False, "properties": {}}
            nodes[entry[:-1]]["properties"][entry[-1]] = node
            nodes[entry] = node
    return root


def _file_order(values: list[Value], sections: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """Paths in values.yaml order: each value's parents first, then the value."""
    ordered: list[tuple[str, ...]] = []
    known = set(sections)
    for value in values:
        for i in range(1, len(value.path)):
            parent = value.path[:i]
            if parent in known and parent not in ordered:
                ordered.append(parent)
        ordered.append(value.path)
    return ordered


def _default_cell(value: Value) -> str:
    if value.default_text is not None:
        return value.default_text
    text = json.dumps(value.default, separators=(",", ":"))
    return f"`{text}`".replace("|", "\\|")


def _type_cell(value: Value) -> str:
    return str(value.schema.get("type", type_name(value.default)))


def values_table(values: list[Value]) -> str:
    rows = ["| Key | Type | Default | Description |", "|-----|------|---------|-------------|"]
    for v in values:
        description = v.description.replace("|", "\\|")
        enum = v.schema.get("enum")
        if enum:
            description += " One of: " + ", ".join(f"`{e}`" for e in enum) + "."
        rows.append(f"| `{v.key}` | {_type_cell(v)} | {_default_cell(v)} | {description} |")
    return "\n".join(rows)


def render(chart_dir: Path) -> dict[Path, str]:
    """The generated files of a chart, by path."""
    values, sections = parse((chart_dir / "values.yaml").read_text())
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    schema = build_schema(values, sections)
    template = (chart_dir / README_TEMPLATE).read_text()
    readme = (
        template.replace("{{ values_table }}", values_table(values))
        .replace("{{ chart.version }}", str(chart["version"]))
        .replace("{{ chart.appVersion }}", str(chart["appVersion"]))
    )
    return {
        chart_dir / "README.md": readme,
        chart_dir / "values.schema.json": json.dumps(schema, indent=2) + "\n",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chart", nargs="?", type=Path, default=DEFAULT_CHART)
    parser.add_argument("--check", action="store_true", help="fail if a generated file is stale")
    args = parser.parse_args(argv)
    try:
        files = render(args.chart)
    except (ChartDocsError, OSError, KeyError) as e:
        print(f"chartdocs: {e}", file=sys.stderr)
        return 2
    stale = [p for p, text in files.items() if not p.exists() or p.read_text() != text]
    if args.check:
        for path in stale:
            print(f"chartdocs: {path} is stale; run `make chart-docs`", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(files[path])
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
