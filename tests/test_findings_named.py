"""Findings that name what drifted (pure rules on recorded fact values; no host): the published
port, each secret file's mode and owner, the proxy's refusal without credentials, the deploy
that restores a missing model folder with its files, modes as four octal digits."""

from __future__ import annotations

import copy
import json

import pytest

from genai_workstation.findings import CRITICAL, Finding, Report, mode4
from genai_workstation.hostmodel import host_model
from genai_workstation.loader import load_inventory
from genai_workstation.reports import junit, prometheus, table
from genai_workstation.stacks import checks
from genai_workstation.stacks.rendered import AuthCheck
from genai_workstation.verify import evaluate_workstation
from tests import test_verify_checks

# the recorded facts of a converged host: the `converged` fixture, with this module's host_data
converged = test_verify_checks.converged

FIX = "pyinfra inventory.py deploys/comfyui.py"
STACK_DIR = "/srv/genai/stacks/comfyui"


# --- modes ----------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, shown", [("0", "0000"), ("755", "0755"), ("600", "0600"),
                                        ("4755", "4755"), (0o644, "0644"), (None, "unknown")])
def test_modes_are_four_octal_digits(raw, shown):
    assert mode4(raw) == shown


# --- workspace folders (evaluate_workstation) -----------------------------------------------

@pytest.fixture
def host_data(tmp_path):
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(
        "hosts:\n  ws1:\n    connection: {type: local}\n    platform: wsl2\n"
        "    workspace: /srv/genai\n    gpu: {mode: none}\n"
        "    nvidia_toolkit: {enabled: false}\n"
        "    models:\n"
        "      - {url: 'https://example.org/a/detail.safetensors', folder: loras}\n"
        "      - {hf: org/repo, file: sub/style.safetensors, folder: loras}\n"
        "      - {civitai: 4242, folder: checkpoints}\n")
    env = {"GENAI_SECRETS": str(tmp_path / "none.env"),
           "CIVITAI_TOKEN": "".join(f"{n:x}" for n in range(16)) * 2}  # fake, built here
    return load_inventory(inventory, env).hosts["ws1"]


def _missing(facts, *paths):
    facts = copy.deepcopy(facts)
    for path in paths:
        facts["paths"][path] = {"exists": False, "fstype": "ext4", "mount": "/"}
    return facts


def by_item(findings) -> dict[str, Finding]:
    return {f.item: f for f in findings}


def test_converged_workspace_has_no_finding(host_data, converged):
    assert [f.item for f in evaluate_workstation("ws1", host_model(host_data), converged)
            if f.kind != "skipped"] == []


def test_missing_model_folder_names_the_models_deploy_and_its_files(host_data, converged):
    facts = _missing(converged, "/srv/genai/models/loras", "/srv/genai/models/vae")
    found = by_item(evaluate_workstation("ws1", host_model(host_data), facts))
    loras = found["folder /srv/genai/models/loras"]
    assert (loras.expected, loras.actual) == (
        "present, with its 2 model file(s) of the manifest", "missing")
    assert loras.fix.startswith("pyinfra inventory.py deploys/models.py")
    assert "detail.safetensors" in loras.fix and "style.safetensors" in loras.fix
    assert "deploys/workstation.py alone would recreate it empty" in loras.fix
    # a folder the manifest puts nothing in: the workstation step restores it
    empty = found["workspace folders"]
    assert empty.actual == "1 missing: /srv/genai/models/vae"
    assert empty.fix == "pyinfra inventory.py deploys/workstation.py"


def test_missing_models_root_is_one_finding_naming_site(host_data, converged):
    under = [p for p in host_model(host_data).layout.tree() if p.startswith("/srv/genai/models")]
    found = by_item(evaluate_workstation("ws1", host_model(host_data), _missing(converged, *under)))
    root = found["folder /srv/genai/models"]
    assert root.fix.startswith("pyinfra inventory.py deploys/site.py")
    assert "3 model file(s)" in root.expected and "civitai:4242" in root.fix
    assert "folder /srv/genai/models/loras" not in found and "workspace folders" not in found


def test_folder_modes_are_printed_with_four_digits(host_data, converged):
    facts = copy.deepcopy(converged)
    facts["paths"]["/srv/genai/output"]["mode"] = "0"
    found = by_item(evaluate_workstation("ws1", host_model(host_data), facts))
    finding = found["mode of /srv/genai/output"]
    assert (finding.expected, finding.actual) == ("0755", "0000")


# --- published ports ------------------------------------------------------------------------

PUBLISHED = [("comfyui", "127.0.0.1", 8188)]


def project(file_ports, live_ports, state="running"):
    """ComposeProject values as recorded: compose.yaml `ports:` and compose ps Publishers."""
    return {"exists": True, "compose_ports": {"comfyui": file_ports},
            "services": [{"service": "comfyui", "state": state, "health": "healthy",
                          "published": [{"address": a, "port": p, "target": 8188}
                                        for a, p in live_ports]}]}


def test_converged_ports_give_no_finding():
    assert checks.port_findings("ws1", "comfyui", PUBLISHED,
                                project(["127.0.0.1:8188:8188"], [("127.0.0.1", 8188)]),
                                FIX) == []


def test_port_changed_and_applied_names_the_port():
    found = checks.port_findings("ws1", "comfyui", PUBLISHED,
                                 project(["127.0.0.1:8189:8188"], [("127.0.0.1", 8189)]), FIX)
    assert [(f.item, f.expected, f.actual) for f in found] == [(
        "stack comfyui: published port of comfyui", "127.0.0.1:8188",
        "127.0.0.1:8189 (compose.yaml and the running container)")]
    assert found[0].fix.startswith(FIX) and "127.0.0.1:8188" in found[0].fix


def test_port_changed_in_the_file_only():
    found = checks.port_findings("ws1", "comfyui", PUBLISHED,
                                 project(["0.0.0.0:9000:8188"], [("127.0.0.1", 8188)]), FIX)
    assert found[0].actual == "compose.yaml: 0.0.0.0:9000; running container: 127.0.0.1:8188"


def test_port_long_syntax_and_stopped_container():
    entry = {"target": 8188, "published": "8190", "host_ip": "127.0.0.1"}
    found = checks.port_findings("ws1", "comfyui", PUBLISHED, project([entry], [], "exited"),
                                 FIX)
    assert found[0].actual == "127.0.0.1:8190 (compose.yaml; the container is not running)"


def test_floating_host_port_of_a_custom_stack_is_not_drift():
    # `ports: ["9000"]` lets Docker pick the host port: nothing declared, nothing to compare
    assert checks.port_findings("ws1", "demo", [], project(["9000"], [("0.0.0.0", 32768)]),
                                FIX) == []


# --- secret files ---------------------------------------------------------------------------

SECRET = f"{STACK_DIR}/secrets/proxy_auth_comfyui"


def secret_state(mode="600", uid=1000, gid=1000):
    return {SECRET: {"exists": True, "kind": "file", "fstype": "ext4", "uid": uid, "gid": gid,
                     "mode": mode, "mount": "/"}}


def test_secret_file_in_place_gives_no_finding():
    assert checks.secret_file_findings("ws1", STACK_DIR, ["secrets/proxy_auth_comfyui"],
                                       secret_state(), 1000, 1000, FIX) == []


def test_widened_secret_file_names_mode_and_owner():
    found = by_item(checks.secret_file_findings(
        "ws1", STACK_DIR, ["secrets/proxy_auth_comfyui"], secret_state("644", 0, 0), 1000, 1000,
        FIX))
    mode = found[f"mode of secret file {SECRET}"]
    assert (mode.expected, mode.actual, mode.severity) == ("0600", "0644", CRITICAL)
    assert mode.fix.startswith(f"chmod 600 {SECRET}") and FIX in mode.fix
    owner = found[f"owner of secret file {SECRET}"]
    assert (owner.expected, owner.actual) == ("1000:1000", "0:0")
    assert owner.fix.startswith(f"chown 1000:1000 {SECRET}")


def test_secret_file_mode_000_and_missing():
    found = checks.secret_file_findings("ws1", STACK_DIR, ["secrets/proxy_auth_comfyui"],
                                        secret_state("0"), 1000, 1000, FIX)
    assert [(f.actual, f.severity) for f in found] == [("0000", "")]
    gone = checks.secret_file_findings("ws1", STACK_DIR, ["secrets/proxy_auth_comfyui"],
                                       {SECRET: {"exists": False}}, 1000, 1000, FIX)
    assert gone[0].item == f"secret file {SECRET}" and gone[0].actual == "missing"


# --- the proxy refuses without credentials ---------------------------------------------------

AUTH = [AuthCheck("comfyui", "http://127.0.0.1:8443/", 8080)]


def proxy_project(port=8443, state="running"):
    return {"services": [{"service": "proxy", "state": state, "published": [
        {"address": "0.0.0.0", "port": port, "target": 8080}]}]}


def test_auth_is_asked_where_the_proxy_really_publishes():
    assert checks.auth_targets(AUTH, proxy_project()) == [(AUTH[0], "http://127.0.0.1:8443/")]
    assert checks.auth_targets(AUTH, proxy_project(9443)) == [(AUTH[0], "http://127.0.0.1:9443/")]
    assert checks.auth_targets(AUTH, proxy_project(state="exited")) == []


@pytest.mark.parametrize("answer", [{"status": 401, "location": None, "error": None},
                                    {"status": 302, "location": "/login", "error": None}])
def test_refusal_or_login_redirect_is_no_finding(answer):
    targets = checks.auth_targets(AUTH, proxy_project())
    assert checks.auth_findings("ws1", "comfyui", STACK_DIR, targets,
                                {"http://127.0.0.1:8443/": answer}, FIX) == []


def test_proxy_answering_200_without_credentials_is_critical():
    targets = checks.auth_targets(AUTH, proxy_project())
    found = checks.auth_findings("ws1", "comfyui", STACK_DIR, targets, {
        "http://127.0.0.1:8443/": {"status": 200, "location": None, "error": None}}, FIX)
    assert len(found) == 1 and found[0].severity == CRITICAL
    assert found[0].item == "stack comfyui: proxy refuses comfyui without credentials"
    assert found[0].expected == "HTTP 401 (or a redirect to a login) at http://127.0.0.1:8443/"
    assert found[0].actual.startswith("HTTP 200 without credentials")
    assert f"cd {STACK_DIR} && docker compose stop proxy" in found[0].fix and FIX in found[0].fix


def test_proxy_not_answering_is_a_finding_but_not_critical():
    targets = checks.auth_targets(AUTH, proxy_project())
    found = checks.auth_findings("ws1", "comfyui", STACK_DIR, targets, {
        "http://127.0.0.1:8443/": {"status": None, "location": None,
                                   "error": "Connection refused"}}, FIX)
    assert found[0].actual == "no answer: Connection refused" and not found[0].severity


# --- renderings -----------------------------------------------------------------------------

def test_critical_shows_in_table_junit_prometheus_and_json():
    open_proxy = Finding("ws1", "stack comfyui: proxy refuses comfyui without credentials",
                         "HTTP 401", "HTTP 200 without credentials", "stop it",
                         severity=CRITICAL)
    report = Report(hosts=["ws1"], findings=[open_proxy])
    assert "[state] CRITICAL: stack comfyui: proxy refuses" in table(report)
    assert 'message="CRITICAL: stack comfyui' in junit(report)
    assert 'genai_workstation_drift_critical_findings{host="ws1"} 1' in prometheus(report, 0)
    assert Report.from_json(report.to_json()) == report


# --- the ComposeProject fact: compose.yaml ports and what the containers publish ------------

def test_compose_project_reads_file_ports_and_publishers():
    from genai_workstation.facts.compose import ComposeProject

    ps = json.dumps({"Name": "genai-comfyui-proxy-1", "Service": "proxy", "State": "running",
                     "Health": "", "Image": "caddy:2", "ExitCode": 0, "Labels": "",
                     "Publishers": [
                         {"URL": "0.0.0.0", "TargetPort": 8080, "PublishedPort": 8444,
                          "Protocol": "tcp"},
                         {"URL": "::", "TargetPort": 8080, "PublishedPort": 8444,
                          "Protocol": "tcp"},
                         {"URL": "", "TargetPort": 2019, "PublishedPort": 0,
                          "Protocol": "tcp"}]})
    compose_yaml = ["services:", "  comfyui:", "    image: x", "  proxy:", "    ports:",
                    '      - "0.0.0.0:8444:8080"']
    output = ["@@genai:present", "@@genai:hash", "", "@@genai:manifest", "",
              "@@genai:compose", *compose_yaml, "", "@@genai:ps", ps, "@@genai:inspect",
              "@@genai:end"]
    fact = ComposeProject().process(output)
    assert fact["compose_ports"] == {"comfyui": [], "proxy": ["0.0.0.0:8444:8080"]}
    assert fact["services"][0]["published"] == [{"address": "0.0.0.0", "port": 8444,
                                                 "target": 8080}]
    found = checks.port_findings("ws1", "comfyui", [("proxy", "0.0.0.0", 8443)], fact, FIX)
    assert [(f.expected, f.actual) for f in found] == [
        ("0.0.0.0:8443", "0.0.0.0:8444 (compose.yaml and the running container)")]
