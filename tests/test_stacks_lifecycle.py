"""Stack lifecycle without a Docker engine: decisions, snapshots, facts' parsing, the scripts.

The same behaviour against a real engine is in test_stacks_lifecycle_docker.py.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from genai_workstation.facts.compose import (
    AppDevice,
    ComposeProject,
    ImageLabel,
    StackHistory,
    parse_labels,
    parse_ps_output,
)
from genai_workstation.facts.filesystem import SecretFiles
from genai_workstation.operations.stack import as_plain, write_checks
from genai_workstation.stacks import lifecycle as lc
from genai_workstation.stacks.rendered import GpuCheck

# The JSON cases of tests/operations/stack.*/ run in tests/test_operations.py.
H1 = "a" * 64
H2 = "b" * 64

def project(config_hash=H1, services=(("app", "running", "healthy"),), running=None,
            verified=True):
    return {
        "exists": True, "config_hash": config_hash, "manifest": [], "error": None,
        "verified_hash": config_hash if verified else None,
        "running_hashes": [config_hash] if running is None else running,
        "services": [{"service": s, "state": st, "health": h, "container": f"p-{s}-1",
                      "labels": {}} for s, st, h in services],
    }


# --- decide ---------------------------------------------------------------------------------


def test_converged_stack_is_a_noop():
    decision = lc.decide(H1, ["app"], project())
    assert decision.noop and decision.reasons == []


def test_first_deploy_brings_up_without_snapshot():
    decision = lc.decide(H1, ["app"], {"exists": False, "config_hash": None, "services": []})
    assert decision.up and not decision.snapshot
    assert "first deploy" in decision.reasons


def test_changed_config_snapshots_then_brings_up():
    decision = lc.decide(H2, ["app"], project())
    assert decision.snapshot and decision.up
    assert any("config changed (aaaaaaaaaaaa -> bbbbbbbbbbbb)" in r for r in decision.reasons)


@pytest.mark.parametrize("state, health", [("exited", None), ("running", "unhealthy"),
                                           ("restarting", "starting")])
def test_service_down_brings_up_again_without_snapshot(state, health):
    decision = lc.decide(H1, ["app"], project(services=[("app", state, health)]))
    assert decision.up and not decision.snapshot
    assert decision.reasons[-1].startswith("not running: app")


def test_missing_service_and_foreign_hash():
    decision = lc.decide(H1, ["app", "proxy"], project())
    assert decision.up and "proxy (no container)" in decision.reasons[-1]
    decision = lc.decide(H1, ["app"], project(running=[H2]))
    assert decision.up and "containers run another config" in decision.reasons[0]


def test_build_only_when_the_label_differs():
    assert lc.decide(H1, ["app"], project(), build_hash=H2, image_build_hash=H2).noop
    decision = lc.decide(H1, ["app"], project(), build_hash=H2, image_build_hash=None)
    assert decision.build and decision.up and "image not built yet" in decision.reasons
    decision = lc.decide(H1, ["app"], project(), build_hash=H2, image_build_hash=H1)
    assert decision.build and "image build inputs changed" in decision.reasons[0]


def test_rewritten_files_bring_the_stack_up():
    decision = lc.decide(H1, ["app"], project(), files_changed=True)
    assert decision.up and not decision.snapshot


# --- snapshots and rollback targets ---------------------------------------------------------


def test_snapshot_names_round_trip():
    name = lc.snapshot_name("20261123T094200Z", H1)
    assert name == "20261123T094200Z-aaaaaaaaaaaa"
    assert lc.parse_snapshot_name(name) == {"name": name, "timestamp": "20261123T094200Z",
                                            "hash": "aaaaaaaaaaaa", "origin": "deploy"}
    rb = lc.snapshot_name("20261123T094300Z", H2, rollback=True)
    assert lc.parse_snapshot_name(rb)["origin"] == "rollback"
    assert lc.parse_snapshot_name("notes.txt") is None
    assert lc.parse_snapshot_name("20261123T094200Z-../x") is None


def snaps(*names):
    return [lc.parse_snapshot_name(n) for n in names]


def test_prune_keeps_the_newest():
    history = snaps("20260101T000000Z-aaaaaaaaaaaa", "20260102T000000Z-bbbbbbbbbbbb",
                    "20260103T000000Z-cccccccccccc")
    assert lc.prune_list(history, 2) == ["20260101T000000Z-aaaaaaaaaaaa"]
    assert lc.prune_list(history, 5) == []


def test_rollback_target_latest_named_and_errors():
    history = snaps("20260101T000000Z-aaaaaaaaaaaa", "20260102T000000Z-bbbbbbbbbbbb",
                    "20260103T000000Z-cccccccccccc-rollback")
    # newest deploy snapshot whose config is not the deployed one; rollback keeps are skipped
    assert lc.rollback_target(history, "c" * 64)["hash"] == "bbbbbbbbbbbb"
    assert lc.rollback_target(history, H2)["hash"] == "aaaaaaaaaaaa"
    assert lc.rollback_target(history, H2, "20260103")["origin"] == "rollback"
    assert lc.rollback_target(history, None, "bbbb")["name"].startswith("20260102")
    with pytest.raises(ValueError, match="no snapshot 'nope'"):
        lc.rollback_target(history, None, "nope")
    with pytest.raises(ValueError, match="no previous config"):
        lc.rollback_target([], H1)
    with pytest.raises(ValueError, match="every kept snapshot"):
        lc.rollback_target(snaps("20260101T000000Z-aaaaaaaaaaaa"), H1)


def test_snapshot_and_restore_scripts_in_a_real_folder(tmp_path):
    stack = tmp_path / "stacks" / "demo"
    (stack / "secrets").mkdir(parents=True)
    (stack / "compose.yaml").write_text("v1\n")
    (stack / "secrets" / "token").write_text("t1\n")
    (stack / "secrets" / "token").chmod(0o600)
    old = "20260101T000000Z-aaaaaaaaaaaa"
    (stack / ".history" / old).mkdir(parents=True)
    name = "20260102T000000Z-bbbbbbbbbbbb"
    subprocess.run(["sh", "-c", lc.snapshot_script(str(stack), name, [old])], check=True)
    assert sorted(p.name for p in (stack / ".history").iterdir()) == [name]
    kept = stack / ".history" / name
    assert (kept / "compose.yaml").read_text() == "v1\n"
    assert (kept / "secrets" / "token").stat().st_mode & 0o777 == 0o600
    assert not (kept / ".history").exists()
    (stack / "compose.yaml").write_text("v2\n")
    (stack / "new-file").write_text("x")
    subprocess.run(["sh", "-c", f"cd {stack} && {lc.restore_commands(name)}"], check=True)
    assert (stack / "compose.yaml").read_text() == "v1\n"
    assert not (stack / "new-file").exists()
    assert (stack / ".history" / name).is_dir()
    with pytest.raises(ValueError):
        lc.snapshot_script(str(stack), "../escape", [])


def test_scripts_are_valid_sh_and_carry_no_secret():
    script = lc.up_script(name="comfyui", project_dir="/srv/genai/stacks/comfyui",
                          config_hash=H1, timeout=300,
                          rollback_to="20260101T000000Z-aaaaaaaaaaaa", rollback_good=True,
                          gpu_checks=[GpuCheck("comfyui", "NVIDIA GeForce RTX 3090", "comfyui",
                                               "http://127.0.0.1:8188/system_stats")],
                          write_checks=[("comfyui", "/data/output")])
    for text in (script, lc.up_script(name="x", project_dir="/p", config_hash=H1, timeout=5,
                                      rollback_to=None, gpu_checks=[]),
                 lc.up_script(name="x", project_dir="/p", config_hash=H1, timeout=5,
                              rollback_to="s", gpu_checks=[], up=False),
                 lc.rollback_script(name="x", project_dir="/p", snapshot="s", timeout=5,
                                    listing=["kept: s: good (verified)"], good=True)):
        subprocess.run(["sh", "-n", "-c", text], check=True)
        assert "`" not in text  # no command substitution hidden in a message
    assert "--wait --wait-timeout 300" in script
    assert f"--tail {lc.LOG_LINES}" in script and "ROLLED BACK" in script


# --- GPU probe ------------------------------------------------------------------------------


def test_probe_and_mismatch():
    comfyui = lc.device_probe_command("comfyui", "comfyui", "http://127.0.0.1:8188/system_stats")
    assert "docker compose exec -T comfyui" in comfyui and "/system_stats" in comfyui
    assert "docker compose logs" in lc.device_probe_command("forge-a", "forge")
    with pytest.raises(ValueError):
        lc.device_probe_command("x", "comfyui:http://127.0.0.1:8188/system_stats")
    seen = "cuda:0 NVIDIA GeForce RTX 3090 : cudaMallocAsync"
    assert lc.gpu_mismatch("NVIDIA GeForce RTX 3090", seen) is None
    assert lc.gpu_mismatch(None, "cpu") is None
    message = lc.gpu_mismatch("NVIDIA GeForce RTX 3080", seen)
    assert "RTX 3090" in message and "RTX 3080" in message
    assert "no device" in lc.gpu_mismatch("RTX 3080", None)


def test_gpu_checks_from_a_rendered_stack():
    """The converge uses the render's typed checks as they are (JSON cases give their fields)."""
    check = GpuCheck("comfyui", "NVIDIA GeForce RTX 3090", "comfyui",
                     "http://127.0.0.1:8188/system_stats")
    rendered = as_plain({
        "files": {"compose.yaml": "x"}, "config_hash": H1, "services": ["comfyui", "proxy"],
        "health": [{"service": "comfyui", "url": "http://127.0.0.1:8188/system_stats",
                    "writable": ["/data/output"]}],
        "gpu_checks": [{"service": "comfyui", "expected": "NVIDIA GeForce RTX 3090",
                        "probe": "comfyui", "url": "http://127.0.0.1:8188/system_stats"}],
    })
    assert rendered["gpu_checks"] == [check]
    assert write_checks(rendered) == [("comfyui", "/data/output")]


# --- facts ----------------------------------------------------------------------------------

PS_LINES = [
    json.dumps({"Name": "genai-comfyui-comfyui-1", "Service": "comfyui", "State": "running",
                "Health": "healthy", "Image": "genai/comfyui:1", "ExitCode": 0,
                "Labels": "genai.config-hash=" + H1 + ",com.docker.compose.service=comfyui"}),
    json.dumps({"Name": "genai-comfyui-proxy-1", "Service": "proxy", "State": "exited",
                "Health": "", "Image": "caddy:2", "ExitCode": 1, "Labels": ""}),
]


def test_ps_output_lines_and_array():
    assert [r["Service"] for r in parse_ps_output(PS_LINES)] == ["comfyui", "proxy"]
    array = ["[" + ",".join(PS_LINES) + "]"]
    assert parse_ps_output(array) == parse_ps_output(PS_LINES)
    assert parse_ps_output([]) == [] and parse_ps_output(["[]"]) == []
    assert parse_labels("a=1,b=x=y") == {"a": "1", "b": "x=y"}


def test_compose_project_process():
    inspect = ("/genai-comfyui-comfyui-1\trunning\thealthy\t0\tgenai/comfyui:1\t"
               + json.dumps({"genai.config-hash": H1, "com.docker.compose.service": "comfyui"}))
    output = ["@@genai:present", "@@genai:hash", H1, "", "@@genai:manifest", "compose.yaml",
              ".env", "", "@@genai:ps", *PS_LINES, "@@genai:inspect", inspect,
              "/genai-comfyui-proxy-1\texited\t\t1\tcaddy:2\tnull", "@@genai:end"]
    fact = ComposeProject().process(output)
    assert fact["exists"] and fact["config_hash"] == H1
    assert fact["manifest"] == ["compose.yaml", ".env"]
    assert fact["running_hashes"] == [H1]
    comfy, proxy = fact["services"]
    assert (comfy["service"], comfy["state"], comfy["health"]) == ("comfyui", "running",
                                                                   "healthy")
    assert (proxy["service"], proxy["state"], proxy["health"]) == ("proxy", "exited", None)
    assert ComposeProject().process(["@@genai:absent"]) == ComposeProject.default()
    failed = ComposeProject().process(["@@genai:present", "@@genai:ps", "@@genai:ps-failed"])
    assert failed["exists"] and "Compose v2" in failed["error"]


def test_compose_project_command_never_prints_env_or_cmd():
    command = ComposeProject().command("/srv/genai/stacks/comfyui")
    assert "docker inspect --format" in command and "{{json .Config.Labels}}" in command
    assert ".Config.Env" not in command and ".Config.Cmd" not in command


def test_image_label_history_device_secret_files():
    label = f"@@genai:label {lc.BUILD_HASH_LABEL}"
    assert ImageLabel().process([label, json.dumps({lc.BUILD_HASH_LABEL: H1})]) == H1
    assert ImageLabel().process([label, "null"]) is None
    assert ImageLabel().process([label, "@@genai:absent"]) is None
    assert StackHistory().process(["20260102T000000Z-bbbbbbbbbbbb", "junk",
                                   "20260101T000000Z-aaaaaaaaaaaa"])[0]["hash"] == "aaaaaaaaaaaa"
    assert AppDevice().process(["@@genai:device cuda:0 NVIDIA X"]) == {
        "name": "cuda:0 NVIDIA X", "error": None}
    assert AppDevice().process(["service \"x\" is not running"])["name"] is None
    files = SecretFiles().process(["/a\t600 1000 1000\tdeadbeef", "/b\tabsent"])
    assert files == {"/a": {"digest": "deadbeef", "mode": "600", "uid": 1000, "gid": 1000},
                     "/b": None}
    command = SecretFiles().command(["/a"], "salt")
    assert "sha256sum" in command and "cat" in command


# --- last known good ------------------------------------------------------------------------

H3 = "c" * 64
NOW = "20261123T100000Z"


def snap(name, good):
    return {**lc.parse_snapshot_name(name), "good": good}


def test_running_config_never_verified_is_checked_not_noop():
    decision = lc.decide(H1, ["app"], project(verified=False))
    assert decision.verify and not decision.up and not decision.noop
    assert decision.reasons == ["config aaaaaaaaaaaa runs but was never verified"]
    assert lc.decide(H1, ["app"], project()).noop  # verified by an earlier run


def test_verified_previous_config_is_the_rollback_target():
    decision = lc.decide(H2, ["app"], project(), timestamp=NOW)
    assert decision.snapshot and decision.snapshot_name == f"{NOW}-aaaaaaaaaaaa"
    assert (decision.rollback_to, decision.rollback_good) == (f"{NOW}-aaaaaaaaaaaa", True)


def test_unverified_previous_is_skipped_for_the_last_good():
    """A good (verified), then B deployed but never verified: a broken C goes back to A."""
    history = [snap("20261120T000000Z-cccccccccccc", True)]
    decision = lc.decide("d" * 64, ["app"], project(config_hash=H2, verified=False),
                         history=history, timestamp=NOW)
    assert decision.snapshot_name == f"{NOW}-bbbbbbbbbbbb"  # B is still kept
    assert (decision.rollback_to, decision.rollback_good) == ("20261120T000000Z-cccccccccccc",
                                                              True)


def test_nothing_verified_falls_back_to_the_previous_config_and_says_so():
    history = [snap("20261120T000000Z-cccccccccccc", False)]
    decision = lc.decide(H3, ["app"], project(config_hash=H2, verified=False),
                         history=history, timestamp=NOW)
    assert (decision.rollback_to, decision.rollback_good) == (f"{NOW}-bbbbbbbbbbbb", False)
    assert "never verified" in lc.up_script(
        name="x", project_dir="/p", config_hash=H3, timeout=5, gpu_checks=[],
        rollback_to=decision.rollback_to, rollback_good=decision.rollback_good)


def test_the_failing_config_itself_is_never_the_target():
    """A verified once, B verified; A again now fails: back to B, not to A's old copy."""
    history = [snap("20261120T000000Z-aaaaaaaaaaaa", True)]
    decision = lc.decide(H1, ["app"], project(config_hash=H2), history=history, timestamp=NOW)
    assert decision.rollback_to == f"{NOW}-bbbbbbbbbbbb"
    only_a = lc.decide(H1, ["app"], project(config_hash=H2, verified=False), history=history,
                       timestamp=NOW)
    assert (only_a.rollback_to, only_a.rollback_good) == (f"{NOW}-bbbbbbbbbbbb", False)


def test_a_kept_snapshot_is_reused_and_good_when_its_config_was_verified():
    history = [snap("20261120T000000Z-aaaaaaaaaaaa", False)]  # kept before it was verified
    decision = lc.decide(H2, ["app"], project(), history=history, timestamp=NOW)
    assert not decision.snapshot and decision.snapshot_name == "20261120T000000Z-aaaaaaaaaaaa"
    assert (decision.rollback_to, decision.rollback_good) == (decision.snapshot_name, True)


def test_pruning_never_drops_the_last_good_config():
    history = [snap("20261120T000000Z-cccccccccccc", True),
               snap("20261121T000000Z-dddddddddddd", False),
               snap("20261122T000000Z-eeeeeeeeeeee", False)]
    decision = lc.decide("f" * 64, ["app"], project(config_hash=H2, verified=False),
                         history=history, timestamp=NOW, history_keep=2)
    assert decision.rollback_to == "20261120T000000Z-cccccccccccc"
    assert decision.prune == ["20261121T000000Z-dddddddddddd", "20261122T000000Z-eeeeeeeeeeee"]
    assert lc.prune_list(history, 2) == ["20261120T000000Z-cccccccccccc"]


def test_manual_rollback_prefers_good_and_lists_every_snapshot():
    history = [snap("20261120T000000Z-aaaaaaaaaaaa", True),
               snap("20261121T000000Z-cccccccccccc", False)]
    assert lc.rollback_target(history, H2)["name"] == "20261120T000000Z-aaaaaaaaaaaa"
    assert lc.rollback_target(history, H2, "20261121")["good"] is False  # named: as asked
    assert lc.describe_history(history, H1) == [
        "kept: 20261121T000000Z-cccccccccccc: not verified",
        "kept: 20261120T000000Z-aaaaaaaaaaaa: good (verified), the config deployed now"]


def test_history_and_project_facts_read_the_verified_mark():
    lines = [f"20261120T000000Z-aaaaaaaaaaaa\t{H1}\t{H1}",
             f"20261121T000000Z-bbbbbbbbbbbb\t{H2}\t{H1}",  # carries an older config's mark
             "20261122T000000Z-cccccccccccc\t\t", "20261123T000000Z-dddddddddddd.tmp\t\t"]
    fact = StackHistory().process(lines)
    assert [(s["hash"], s["good"]) for s in fact] == [("aaaaaaaaaaaa", True),
                                                       ("bbbbbbbbbbbb", False),
                                                       ("cccccccccccc", False)]
    output = ["@@genai:present", "@@genai:hash", H1, "", "@@genai:verified", H1, "",
              "@@genai:ps", "@@genai:inspect", "@@genai:end"]
    assert ComposeProject().process(output)["verified_hash"] == H1
    assert ComposeProject().process(output[:4] + output[7:])["verified_hash"] is None


def test_gpu_failure_rolls_back_in_the_script(tmp_path):
    """The up script, run by sh against a `docker` that answers like the engine would: the app
    is healthy but reports another card -> the last good config is restored, exit 1."""
    stack = tmp_path / "stack"
    good = stack / ".history" / "20261120T000000Z-aaaaaaaaaaaa"
    (good / ".genai").mkdir(parents=True)
    (good / "compose.yaml").write_text("good\n")
    (stack / ".genai").mkdir(parents=True)
    (stack / "compose.yaml").write_text("new\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(
        "#!/bin/sh\ncase \"$*\" in *exec*) echo '@@genai:device cuda:0 NVIDIA GeForce RTX 3080';;"
        " esac\nexit 0\n")
    (bin_dir / "docker").chmod(0o755)
    script = lc.up_script(name="demo", project_dir=str(stack), config_hash=H2, timeout=5,
                          rollback_to=good.name, rollback_good=True,
                          gpu_checks=[GpuCheck("app", "RTX 3090", "comfyui",
                                               "http://127.0.0.1:8188/system_stats")])
    run = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                         env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert run.returncode == 1, run
    assert "failed the GPU check of app (the app sees 'cuda:0 NVIDIA GeForce RTX 3080'" \
        in run.stderr
    assert f"restored the last good config {good.name}" in run.stderr
    assert (stack / "compose.yaml").read_text() == "good\n"
    assert not (stack / lc.VERIFIED_FILE).exists()


def test_build_script_names_a_full_disk_and_restores_the_folder(tmp_path):
    """The build step, run by sh against a `docker` whose build fails as on a full disk."""
    stack = tmp_path / "stack"
    kept = stack / ".history" / "20261120T000000Z-aaaaaaaaaaaa"
    kept.mkdir(parents=True)
    (kept / "compose.yaml").write_text("deployed\n")
    (stack / "compose.yaml").write_text("new\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    (bin_dir / "docker").write_text(
        f"#!/bin/sh\necho \"$*\" >> {calls}\ncase \"$1\" in\n"
        "build) echo 'Step 2/2 : RUN dd if=/dev/zero of=/f'; echo ' ---> Running in 0a1b2c3d4e5f';"
        " echo 'dd: error writing /f: No space left on device'; exit 1;;\n"
        "info) echo /var/lib/docker;;\nesac\nexit 0\n")
    (bin_dir / "docker").chmod(0o755)
    script = lc.build_script(name="demo", project_dir=str(stack), restore_to=kept.name,
                             build={"tag": "t:1", "labels": {"genai.build-hash": H1},
                                    "context": "build"})
    run = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                         env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert run.returncode == 1
    assert "genai: building image t:1 for stack demo FAILED: no space left on device " \
           "(Docker's data root /var/lib/docker" in run.stderr
    assert "rm -f 0a1b2c3d4e5f" in calls.read_text()  # the failed step's container
    assert (stack / "compose.yaml").read_text() == "deployed\n"
    assert "the running containers were not touched" in run.stderr


@pytest.mark.parametrize("exit_code", [0, 3])
def test_build_script_prints_steps_with_elapsed_time_and_the_log_tail_on_failure(tmp_path,
                                                                                 exit_code):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text("#!/bin/sh\necho 'Step 1/2 : FROM base'\necho ' ---> abc'\n"
                      "echo 'Step 2/2 : RUN pip install torch'\necho 'ERROR: no torch here'\n"
                      f"exit {exit_code}\n")
    docker.chmod(0o755)
    build = {"tag": "genai-workstation/comfyui:0123", "labels": {"genai.build-hash": "h"}}
    (tmp_path / "stacks" / "comfyui").mkdir(parents=True)
    script = lc.build_script(name="comfyui", project_dir=str(tmp_path / "stacks" / "comfyui"),
                             build=build, restore_to=None)
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                            env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert result.returncode == exit_code
    steps = [line for line in result.stdout.splitlines() if "] Step " in line]
    assert len(steps) == 2 and re.match(
        r"genai: build genai-workstation/comfyui:0123 \[\d+ s\] Step 1/2 : FROM base", steps[0])
    assert "ERROR: no torch here" not in result.stdout  # the full log is not printed...
    if exit_code:  # ...except its tail, after the failing step
        assert "image build FAILED for genai-workstation/comfyui:0123" in result.stderr
        assert "at: Step 2/2 : RUN pip install torch" in result.stderr
        assert "ERROR: no torch here" in result.stderr
    else:
        assert "genai: built genai-workstation/comfyui:0123 in" in result.stdout
        assert result.stderr == ""
        assert not (tmp_path / "stacks" / "comfyui" / ".genai/tmp/build.log").exists()


def test_the_app_logs_a_failed_run_prints_mask_tokens():
    """ComfyUI-Login logs its API token at start; the log tail of a failed run hides it."""
    import subprocess

    from genai_workstation.stacks.scripts import APP_LOGS

    token = "ab" * 32
    fake_logs = f"printf 'For direct API calls, use token={token}\\nready\\n'"
    script = APP_LOGS.replace(f"docker compose logs --no-color --tail {lc.LOG_LINES}", fake_logs)
    shown = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    assert token not in shown.stderr
    assert "use token=<hidden>" in shown.stderr and "ready" in shown.stderr
