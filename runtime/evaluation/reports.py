"""Reports of an evaluation run: JSON, JUnit XML, Markdown, and the terminal table.

Pure renderers of a :class:`results.RunReport`, called by the ``pilothouse eval`` command:

* ``json``: the report itself (read back as a baseline by ``--baseline``);
* ``junit``: one ``testcase`` per example in one ``testsuite`` per dataset, so CI systems
  (GitLab, Jenkins, GitHub test reporters) show each example as a test; a failed example has a
  ``failure`` whose message is the reason, an example whose request failed an ``error``;
* ``markdown``: for a pull-request comment or a job summary;
* :func:`table`: what the terminal shows at the end of a run.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable

from pilothouse.runtime.evaluation import results

__all__ = ["FORMATS", "junit", "markdown", "render", "table"]

_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_TABLE_REASON_CHARS = 90


def _xml_text(text: str) -> str:
    """Text XML 1.0 can carry (control characters dropped)."""
    return _XML_INVALID.sub("", text)


def junit(report: results.RunReport) -> str:
    """JUnit XML: a testsuite of the dataset, a testcase per example."""
    s = report.summary
    suites = ET.Element(
        "testsuites",
        name="pilothouse eval",
        tests=str(s.examples),
        failures=str(s.failed),
        errors=str(s.errors),
        time=f"{report.elapsed_s:.3f}",
    )
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=report.dataset,
        tests=str(s.examples),
        failures=str(s.failed),
        errors=str(s.errors),
        skipped="0",
        time=f"{report.elapsed_s:.3f}",
        timestamp=report.started_at,
    )
    props = ET.SubElement(suite, "properties")
    properties = {
        "score": f"{s.score:.4f}",
        "pass_rate": f"{s.pass_rate:.4f}",
        "threshold": "" if report.threshold is None else f"{report.threshold:.4f}",
        "target": report.target,
        "run_id": report.run_id,
        "dataset_sha256": report.dataset_sha256,
    }
    for name, value in properties.items():
        ET.SubElement(props, "property", name=name, value=_xml_text(value))
    for example in report.examples:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=report.dataset,
            name=_xml_text(example.id),
            time=f"{example.elapsed_ms / 1000:.3f}",
        )
        if example.outcome != "pass":
            tag, kind = ("error", "TargetError") if example.error else ("failure", "EvalFailure")
            reasons = example.reasons
            node = ET.SubElement(case, tag, message=_xml_text("; ".join(reasons)), type=kind)
            node.text = _xml_text(
                f"score {example.score:.3f} (line {example.line})\n" + "\n".join(reasons)
            )
        if example.turns:
            out = ET.SubElement(case, "system-out")
            out.text = _xml_text(
                "\n".join(f"> {t.input}\n< {t.answer} [{t.status}]" for t in example.turns)
            )
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode")


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(report: results.RunReport) -> str:
    """A Markdown summary: score, per tag, failures, changes since the baseline."""
    s = report.summary
    verdict = ""
    if report.threshold is not None:
        verdict = " ✅ passed" if report.gate_passed else " ❌ below threshold"
        verdict = f" (threshold {report.threshold:.2f}){verdict}"
    lines = [
        f"## Evaluation: {report.dataset}",
        "",
        f"**Score {s.score:.3f}**{verdict} · {s.passed}/{s.examples} passed · "
        f"{s.failed} failed · {s.errors} errors · target `{report.target}`",
        "",
    ]
    if s.by_tag:
        lines += ["| tag | examples | passed | score |", "|---|---:|---:|---:|"]
        for tag, t in s.by_tag.items():
            lines.append(f"| {_md(tag)} | {t.examples} | {t.passed} | {t.score:.3f} |")
        lines.append("")
    if report.failures:
        lines += ["### Failures", "", "| example | score | reason |", "|---|---:|---|"]
        for e in report.failures:
            reason = _md("; ".join(e.reasons))
            lines.append(f"| {_md(e.id)} | {e.score:.2f} | {reason} |")
        lines.append("")
    c = report.comparison
    if c is not None:
        lines += [f"### Against the baseline ({_md(c.baseline)})", ""]
        lines.append(f"Score {c.baseline_score:.3f} → {s.score:.3f} ({c.score_delta:+.3f})")
        for label, ids in (("Regressed", c.regressed), ("Improved", c.improved)):
            lines.append(f"- {label}: {', '.join(ids) if ids else 'none'}")
        lines.append("")
    return "\n".join(lines)


def _cut(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def table(report: results.RunReport, *, reason_chars: int = _TABLE_REASON_CHARS) -> str:
    """The terminal table: each example, per-tag scores, the verdict."""
    rows = [("RESULT", "SCORE", "EXAMPLE", "REASON")]
    for e in report.examples:
        reason = "; ".join(e.reasons)
        rows.append((e.outcome.upper(), f"{e.score:.2f}", e.id, _cut(reason, reason_chars)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [
        f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip()
        for r in rows
    ]
    s = report.summary
    if s.by_tag:
        lines.append("")
        tag_width = max(len("TAG"), *(len(t) for t in s.by_tag))
        lines.append(f"{'TAG':<{tag_width}}  PASSED  SCORE")
        for tag, t in s.by_tag.items():
            lines.append(f"{tag:<{tag_width}}  {f'{t.passed}/{t.examples}':>6}  {t.score:.3f}")
    lines.append("")
    c = report.comparison
    if c is not None:
        lines.append(
            f"baseline {c.baseline}: score {c.baseline_score:.3f} -> {s.score:.3f} "
            f"({c.score_delta:+.3f})"
        )
        lines.append(f"  regressed: {', '.join(c.regressed) or 'none'}")
        lines.append(f"  improved:  {', '.join(c.improved) or 'none'}")
        if c.dataset_changed:
            lines.append("  note: the dataset changed since the baseline")
    head = (
        f"{report.dataset}: score {s.score:.3f}, {s.passed}/{s.examples} passed, "
        f"{s.failed} failed, {s.errors} errors, {report.elapsed_s:.1f}s"
    )
    if report.threshold is not None:
        verdict = "PASSED" if report.gate_passed else "FAILED"
        head += f" - {verdict} (threshold {report.threshold:.2f})"
    lines.append(head)
    return "\n".join(lines)


FORMATS: dict[str, Callable[[results.RunReport], str]] = {
    "json": lambda report: report.to_json() + "\n",
    "junit": junit,
    "markdown": markdown,
    "table": table,
}


def render(report: results.RunReport, fmt: str) -> str:
    """The report in one of :data:`FORMATS`."""
    return FORMATS[fmt](report)
