"""Per-service change detection, without a host: which services a change touches
(genai_workstation.stacks.service_hash) and what the lifecycle decides from the containers'
labels (service_changes, lifecycle.decide). Host data comes from the real loader, as in
tests/test_stacks_render.py; the real-engine proof is tests/test_service_recreate_docker.py.
"""

from __future__ import annotations

import pytest
import yaml

from genai_workstation.stacks import lifecycle as lc
from genai_workstation.stacks import render_stack, service_changes, service_hash
from genai_workstation.stacks.render import RenderedFile
from tests.test_stacks_render import ALL_GPUS, COMFY_EXPOSED, FORGE, RESOLVED, load

TZ = 'gpu: "RTX 3090"}'


def _hashes(tmp_path, name: str, body: str, secrets: str | None = None) -> dict[str, str]:
    stack = render_stack(name, load(tmp_path, body, secrets), RESOLVED, all_gpus=ALL_GPUS)
    labels = {svc: body["labels"][service_hash.SERVICE_HASH_LABEL] for svc, body in
              yaml.safe_load(stack.files["compose.yaml"].content)["services"].items()}
    assert labels == stack.service_hashes  # each container is labelled with its own hash
    return stack.service_hashes


def _changed(before: dict, after: dict) -> set[str]:
    return {name for name in before if before[name] != after.get(name)}


def test_one_forge_instance_setting_changes_only_that_instance(tmp_path):
    before = _hashes(tmp_path, "forge", FORGE)
    assert set(before) == {"forge-myia", "forge-turbo", "proxy"}
    assert _hashes(tmp_path, "forge", FORGE) == before  # deterministic
    tz = FORGE.replace(TZ, 'gpu: "RTX 3090", service: {environment: {TZ: Europe/Paris}}}')
    assert _changed(before, _hashes(tmp_path, "forge", tz)) == {"forge-turbo"}
    args = FORGE.replace(TZ, 'gpu: "RTX 3090", extra_args: ["--cuda-malloc"]}')
    assert _changed(before, _hashes(tmp_path, "forge", args)) == {"forge-turbo"}


def test_the_proxy_alone_changes_with_its_caddyfile_or_its_secret(tmp_path):
    before = _hashes(tmp_path, "forge", FORGE)
    # the bearer token is only in the proxy's 0600 snippet (a compose secret)
    token = f"FORGE_AUTH=tok_{'9' * 32}\nCOMFYUI_AUTH=x\n"
    assert _changed(before, _hashes(tmp_path, "forge", FORGE, token)) == {"proxy"}
    # the published port is in the proxy's ports and the Caddyfile, not in the app's definition
    port = FORGE.replace("expose: {address: 0.0.0.0}", "expose: {address: 0.0.0.0, port: 9443}")
    assert _changed(before, _hashes(tmp_path, "forge", port)) == {"proxy"}


def test_comfyui_sidecar_change_does_not_touch_comfyui(tmp_path):
    before = _hashes(tmp_path, "comfyui", COMFY_EXPOSED)
    assert set(before) == {"comfyui", "idle-unload", "proxy"}
    idle = COMFY_EXPOSED.replace("minutes: 20", "minutes: 30")
    assert _changed(before, _hashes(tmp_path, "comfyui", idle)) == {"idle-unload"}
    # a new custom node rebuilds the image: every service that runs it changes, not the proxy
    node = COMFY_EXPOSED.replace('ref: "3.30"', 'ref: "3.31"')
    assert _changed(before, _hashes(tmp_path, "comfyui", node)) == {"comfyui", "idle-unload"}


def test_files_read_from_the_stack_folder_count_for_their_readers_only():
    compose = """\
name: demo
services:
  web:
    image: web:1
    volumes: ["./conf/web.conf:/etc/web.conf:ro", "data:/data"]
    env_file: [./web.env]
    labels: {genai.service-hash: "@@H@@"}
  worker:
    image: web:1
    secrets: [token]
    labels: {genai.service-hash: "@@H@@"}
  sidecar:
    image: side:1
    network_mode: "service:worker"
    labels: {genai.service-hash: "@@H@@"}
volumes:
  data: {}
secrets:
  token: {file: ./secrets/token}
"""

    def hashes(**changed) -> dict[str, str]:
        files = {"compose.yaml": compose, "conf/web.conf": "a", "web.env": "A=1",
                 "secrets/token": "s3cret-token-value", "unrelated.txt": "x", **changed}
        return service_hash.service_hashes(
            {path: RenderedFile(text, 0o600 if path.startswith("secrets/") else 0o644,
                                path.startswith("secrets/")) for path, text in files.items()},
            ("ws1", "demo"))

    before = hashes()
    assert _changed(before, hashes(**{"conf/web.conf": "b"})) == {"web"}
    assert _changed(before, hashes(**{"web.env": "A=2"})) == {"web"}
    # the sidecar shares the worker's network namespace: Compose recreates it with the worker
    assert _changed(before, hashes(**{"secrets/token": "other-token-value"})) == \
        {"worker", "sidecar"}
    assert _changed(before, hashes(**{"unrelated.txt": "y"})) == set()
    assert _changed(before, hashes(**{".env": "COMPOSE_PROJECT_NAME=x"})) == \
        {"web", "worker", "sidecar"}
    assert "s3cret" not in repr(before)


def test_label_services_puts_each_hash_in_its_own_block_or_refuses():
    text = ("name: x\nservices:\n  a:\n    labels:\n      genai.service-hash: \"@@H@@\"\n"
            "  b:\n    # comment\n    labels:\n      genai.service-hash: \"@@H@@\"\n"
            "networks:\n  app: {}\n")
    out = yaml.safe_load(service_hash.label_services(text, {"a": "1" * 64, "b": "2" * 64},
                                                     "@@H@@"))
    assert out["services"]["a"]["labels"]["genai.service-hash"] == "1" * 64
    assert out["services"]["b"]["labels"]["genai.service-hash"] == "2" * 64
    with pytest.raises(ValueError, match="service c: its genai.service-hash label"):
        service_hash.label_services(text, {"a": "1", "b": "2", "c": "3"}, "@@H@@")


# ------------------------------------------------------------------------------- decisions

H = {"forge-a": "1" * 64, "forge-b": "2" * 64, "proxy": "3" * 64}


def _project(labels: dict[str, str | None], states: dict | None = None,
             deployed: str = "c" * 64) -> dict:
    services = []
    for name, digest in labels.items():
        state, health = (states or {}).get(name, ("running", "healthy"))
        services.append({"service": name, "container": f"p-{name}-1", "state": state,
                         "health": health,
                         "labels": {} if digest is None else {"genai.service-hash": digest}})
    return {"exists": True, "config_hash": deployed, "verified_hash": deployed,
            "running_hashes": [], "services": services}


def test_compare_names_what_changes_and_what_keeps_running():
    changes = service_changes.compare({**H, "forge-b": "4" * 64}, _project(H))
    assert changes.recreate == ("forge-b",) and changes.keep == ("forge-a", "proxy")
    assert changes.reasons == ("forge-b: config changed (222222222222 -> 444444444444)",)
    assert service_changes.describe("forge", changes.recreate, changes.keep) == \
        "stack forge: recreate forge-b; keep running forge-a, proxy"
    assert service_changes.only_these(changes.recreate, changes.keep) == ["forge-b"]

    nothing = service_changes.compare(H, _project(H))
    assert not nothing.changed and nothing.keep == tuple(H)

    legacy = service_changes.compare(H, _project({**H, "proxy": None}))
    assert legacy.recreate == ("proxy",)
    assert legacy.reasons == ("proxy: created before per-service hashes",)

    down = service_changes.compare(H, _project(H, {"forge-a": ("exited", None),
                                                   "proxy": ("running", "unhealthy")}))
    assert down.recreate == ("forge-a", "proxy")
    assert down.reasons == ("forge-a: not running (exited)", "proxy: unhealthy")

    gone = service_changes.compare({"forge-a": H["forge-a"]}, _project(H))
    assert gone.removed == ("forge-b", "proxy") and gone.changed
    fresh = service_changes.compare(H, {"exists": False, "services": []})
    assert fresh.recreate == tuple(H) and service_changes.only_these(fresh.recreate,
                                                                      fresh.keep) == []


def test_decide_per_service_recreates_one_and_snapshots_the_whole_config():
    wanted = {**H, "forge-b": "4" * 64}
    decision = lc.decide("d" * 64, list(H), _project(H), service_hashes=wanted,
                         files_changed=True, timestamp="20261201T030000Z")
    assert decision.up and decision.recreate == ["forge-b"]
    assert decision.keep == ["forge-a", "proxy"]
    assert decision.snapshot and decision.rollback_to == "20261201T030000Z-cccccccccccc"
    assert decision.rollback_good
    assert "forge-b: config changed (222222222222 -> 444444444444)" in decision.reasons


def test_decide_per_service_second_run_changes_nothing():
    decision = lc.decide("c" * 64, list(H), _project(H), service_hashes=H)
    assert decision.noop and decision.keep == list(H) and decision.recreate == []


def test_decide_per_service_ignores_the_stack_hash_labels_of_hand_made_stacks():
    # per-service labels differ from the stack hash by design: not "another config"
    project = {**_project(H), "running_hashes": ["e" * 64]}
    assert lc.decide("c" * 64, list(H), project, service_hashes=H).noop
    # without service hashes (a hand-made rendered stack) the stack-level check still holds
    assert lc.decide("c" * 64, list(H), project).up


def test_up_script_names_only_the_recreated_services():
    script = lc.up_script(name="forge", project_dir="/s/forge", config_hash="d" * 64,
                          timeout=60, rollback_to="20261201T030000Z-cccccccccccc",
                          gpu_checks=[], services=["forge-b"])
    head, _, restore = script.partition("restoring")
    assert "up -d --remove-orphans --wait --wait-timeout 60 --no-deps forge-b;" in head
    # the rollback restores the whole snapshot: Compose recreates what differs in it only
    assert "--no-deps" not in restore and "docker compose up -d --remove-orphans" in restore


def test_drift_names_the_services_a_stack_change_would_recreate():
    import logging
    from types import SimpleNamespace

    from genai_workstation.drift import run as drift_run

    log = drift_run._PyinfraLog()
    pyinfra_log = logging.getLogger("pyinfra.test-service-hash")
    pyinfra_log.addHandler(log)
    pyinfra_log.setLevel(logging.INFO)
    try:
        pyinfra_log.info("[ws1] plan: " + service_changes.describe(
            "forge", ["forge-turbo"], ["forge-main", "proxy"]))
        pyinfra_log.info("[ws1] noop: stack comfyui is converged and verified")
        pyinfra_log.error("[ws2] Error: something failed")
    finally:
        pyinfra_log.removeHandler(log)
    assert log.lines == ["[ws2] Error: something failed"]  # errors only, as before
    ws1, ws2 = SimpleNamespace(print_prefix="[ws1] "), SimpleNamespace(print_prefix="[ws2] ")
    op = "Stack | Stack forge: render, build, up, health"
    assert drift_run._stack_plan(log.plans, ws1, op) == \
        " (recreate forge-turbo; keep running forge-main, proxy)"
    assert drift_run._stack_plan(log.plans, ws2, op) == ""
    assert drift_run._stack_plan(log.plans, ws1, "Stack | Stack comfyui: render") == ""


def test_a_failed_service_with_nothing_to_restore_stops_alone():
    script = lc.up_script(name="forge", project_dir="/s/forge", config_hash="d" * 64,
                          timeout=60, rollback_to=None, gpu_checks=[], services=["forge-b"])
    assert "stopping forge-b\" >&2; docker compose stop forge-b >&2" in script
    assert "docker compose down" not in script  # forge-a and the proxy keep running
    whole = lc.up_script(name="forge", project_dir="/s/forge", config_hash="d" * 64,
                         timeout=60, rollback_to=None, gpu_checks=[])
    assert "docker compose down --remove-orphans" in whole  # a first deploy that fails
