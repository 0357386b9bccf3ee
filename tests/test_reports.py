"""Findings and their four renderings: table, JSON, JUnit XML, Prometheus textfile."""

import re
from xml.etree import ElementTree as ET

from genai_workstation.findings import CONFIG, ERROR, SKIPPED, STATE, Finding, Report
from genai_workstation.reports import junit, prometheus, render, table

DRIFT = Finding("ws1", 'stack comfyui "gpu"', "NVIDIA GeForce RTX 3090",
                "cuda:0 NVIDIA GeForce RTX 3080 : cudaMallocAsync",
                "pyinfra inventory.py deploys/comfyui.py", STATE)
PLAN = Finding("ws1", "Workstation | Create workspace folders", "converged", "would change",
               "pyinfra inventory.py deploys/site.py --limit ws1", CONFIG)
DOWN = Finding("ws2", "host reachable", "verification ran", "Could not connect (timed out)",
               "check hosts.ws2.connection", ERROR)
NOTE = Finding("ws3", "GPU checks", "skipped", "gpu.mode is none", "", SKIPPED)


def test_exit_codes_follow_terraform_detailed_exitcode():
    assert Report(hosts=["ws1"]).exit_code() == 0
    assert Report(hosts=["ws3"], findings=[NOTE]).exit_code() == 0
    assert Report(hosts=["ws1"], findings=[DRIFT]).exit_code() == 2
    assert Report(hosts=["ws1", "ws2"], findings=[DRIFT, DOWN]).exit_code() == 1


def test_json_round_trip():
    report = Report(hosts=["ws1", "ws2", "ws3"], findings=[DRIFT, PLAN, DOWN, NOTE])
    again = Report.from_json(render(report, "json"))
    assert again == report


def test_table_names_host_item_expected_actual_fix():
    text = table(Report(hosts=["ws1", "ws4"], findings=[DRIFT]))
    assert "ws1: 1 drift" in text and "ws4: no drift" in text
    for value in (DRIFT.item, DRIFT.expected, DRIFT.actual, DRIFT.fix):
        assert value in text
    assert text.rstrip().endswith("(exit 2)")


def test_junit_is_valid_xml_with_one_case_per_finding():
    report = Report(hosts=["ws1", "ws2", "ws3", "ws4"], findings=[DRIFT, PLAN, DOWN, NOTE])
    root = ET.fromstring(junit(report))
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert suites["ws1"].get("failures") == "2"
    assert suites["ws2"].get("errors") == "1"
    assert suites["ws3"].get("skipped") == "1"
    assert [c.get("name") for c in suites["ws4"].iter("testcase")] == ["no drift"]
    failure = suites["ws1"].find("testcase/failure")
    assert "RTX 3080" in failure.text and "deploys/comfyui.py" in failure.text


def test_prometheus_textfile_is_well_formed_and_escaped():
    report = Report(hosts=["ws1", "ws2"], findings=[DRIFT, DOWN])
    text = prometheus(report, now=1763900000)
    sample = re.compile(r'^[a-z_]+(\{([a-z_]+="([^"\\]|\\.)*",?)*\})? -?[0-9.e+]+$')
    for line in text.splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or sample.match(line), line
    assert 'genai_workstation_drift_findings{host="ws1",kind="state"} 1' in text
    assert 'item="stack comfyui \\"gpu\\""' in text
    assert "genai_workstation_drift_exit_code 1" in text
    assert "genai_workstation_drift_last_run_timestamp_seconds 1763900000" in text
