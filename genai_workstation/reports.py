"""Four renderings of one findings report: terminal table, JSON, JUnit XML, Prometheus textfile."""

from __future__ import annotations

import textwrap
import time
from xml.etree import ElementTree as ET

from .findings import CONFIG, CRITICAL, ERROR, SKIPPED, STATE, Report

FORMATS = ("table", "json", "junit", "prometheus")


def render(report: Report, fmt: str) -> str:
    return {"table": table, "json": lambda r: r.to_json() + "\n", "junit": junit,
            "prometheus": prometheus}[fmt](report)


def table(report: Report) -> str:
    lines = []
    for host in report.hosts:
        found = report.for_host(host)
        drift = [f for f in found if f.is_drift]
        status = "ERROR" if any(f.kind == ERROR for f in found) else (
            f"{len(drift)} drift" if drift else "no drift")
        lines.append(f"{host}: {status}")
        for f in found:
            mark = f"[{f.kind}] {f.severity.upper()}:" if f.severity else f"[{f.kind}]"
            lines.append(f"  {mark} {f.item}")
            lines.append(f"      expected: {f.expected}")
            lines.append(f"      actual:   {f.actual}")
            if f.fix:
                fix = textwrap.fill(f.fix, width=96, initial_indent="      fix:      ",
                                    subsequent_indent=" " * 16)
                lines.append(fix)
    lines.append(_summary(report))
    return "\n".join(lines) + "\n"


def junit(report: Report) -> str:
    suites = ET.Element("testsuites", name="genai-workstation drift")
    for host in report.hosts:
        found = report.for_host(host)
        suite = ET.SubElement(suites, "testsuite", name=host, tests=str(max(len(found), 1)),
                              failures=str(sum(f.is_drift for f in found)),
                              errors=str(sum(f.kind == ERROR for f in found)),
                              skipped=str(sum(f.kind == SKIPPED for f in found)))
        if not found:
            ET.SubElement(suite, "testcase", classname=host, name="no drift")
        for f in found:
            case = ET.SubElement(suite, "testcase", classname=f"{host}.{f.kind}", name=f.item)
            detail = f"expected: {f.expected}\nactual: {f.actual}\nfix: {f.fix}"
            if f.kind == ERROR:
                ET.SubElement(case, "error", message=f.actual).text = detail
            elif f.kind == SKIPPED:
                ET.SubElement(case, "skipped", message=f.actual)
            else:
                critical = f"{f.severity.upper()}: " if f.severity else ""
                ET.SubElement(case, "failure",
                              message=f"{critical}{f.item}: {f.actual}").text = detail
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, "unicode") + "\n"


def prometheus(report: Report, now: float | None = None) -> str:
    """node_exporter textfile collector format."""
    now = time.time() if now is None else now
    out = [
        "# HELP genai_workstation_drift_findings Findings of the last drift check, by kind.",
        "# TYPE genai_workstation_drift_findings gauge",
    ]
    for host in report.hosts:
        for kind in (CONFIG, STATE, ERROR, SKIPPED):
            count = sum(f.kind == kind for f in report.for_host(host))
            out.append(f'genai_workstation_drift_findings{{host="{_label(host)}",kind="{kind}"}} '
                       f"{count}")
    out += [
        "# HELP genai_workstation_drift_critical_findings Critical findings of the last check "
        "(e.g. an exposed app answering without credentials).",
        "# TYPE genai_workstation_drift_critical_findings gauge",
    ]
    for host in report.hosts:
        count = sum(f.severity == CRITICAL for f in report.for_host(host))
        out.append(f'genai_workstation_drift_critical_findings{{host="{_label(host)}"}} {count}')
    out += [
        "# HELP genai_workstation_drift_item 1 for each drifted item of the last check.",
        "# TYPE genai_workstation_drift_item gauge",
    ]
    for f in report.findings:
        if f.is_drift or f.kind == ERROR:
            out.append(f'genai_workstation_drift_item{{host="{_label(f.host)}",kind="{f.kind}",'
                       f'item="{_label(f.item)}"}} 1')
    out += [
        "# HELP genai_workstation_drift_exit_code Exit code of the last check "
        "(0 no drift, 2 drift, 1 error).",
        "# TYPE genai_workstation_drift_exit_code gauge",
        f"genai_workstation_drift_exit_code {report.exit_code()}",
        "# HELP genai_workstation_drift_last_run_timestamp_seconds When the last check ran.",
        "# TYPE genai_workstation_drift_last_run_timestamp_seconds gauge",
        f"genai_workstation_drift_last_run_timestamp_seconds {now:.0f}",
    ]
    return "\n".join(out) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _summary(report: Report) -> str:
    code = report.exit_code()
    words = {0: "no drift", 2: f"drift: {len(report.drift)} finding(s)",
             1: f"error: {len(report.errors)} check(s) could not run"}
    return f"== {words[code]} on {len(report.hosts)} host(s) (exit {code})"
