"""Shell pieces of the stack lifecycle: each is one ``sh`` command string, built from data.

Pure string builders (no pyinfra, no I/O), so ``sh -n`` and a temp folder can test them; the
decisions that choose between them are in ``lifecycle``. Import them from there or from here.
"""

from __future__ import annotations

import re

from ..stack_names import DEVICE_MARK, device_probe_command
from .lifecycle import (
    _SAFE_NAME,
    DEPLOYED_HASH_FILE,
    HISTORY_DIR,
    LOG_LINES,
    VERIFIED_FILE,
    q,
)
from .rendered import GpuCheck

# The apps' last log lines, shown when a stack does not become healthy; `token=...` values
# (ComfyUI-Login logs its API token at start) are masked before they reach the run's output.
APP_LOGS = (f"docker compose logs --no-color --tail {LOG_LINES} 2>&1 "
            "| sed -E 's/([Tt]oken[=:] ?)[^ &\"]+/\\1<hidden>/g' >&2")

def snapshot_script(project_dir: str, name: str, prune: list[str]) -> str:
    """Copy the deployed config (everything but .history) to .history/<name>, drop old ones."""
    if not _SAFE_NAME.match(name):
        raise ValueError(f"bad snapshot name {name!r}")
    d, h = q(project_dir), q(f"{project_dir}/{HISTORY_DIR}")
    target = q(f"{project_dir}/{HISTORY_DIR}/{name}")
    parts = [
        f"mkdir -p {h} && chmod 700 {h}",
        # a copy cut short by an earlier run (a lost connection) is never a snapshot: drop it
        f"rm -rf {h}/*.tmp && mkdir {target}.tmp",
        # the snapshot's top folder carries the stack folder's owner and mode, so a restore
        # (cp -a snapshot/. stack/) leaves the stack folder as the deploy made it
        f"chown --reference={d} {target}.tmp && chmod --reference={d} {target}.tmp",
        f"(cd {d} && find . -mindepth 1 -maxdepth 1 ! -name {HISTORY_DIR} "
        f"-exec cp -a {{}} {target}.tmp/ \\;)",
        f"rm -rf {target} && mv {target}.tmp {target}",
    ]
    for old in prune:
        if _SAFE_NAME.match(old):
            parts.append(f"rm -rf {q(f'{project_dir}/{HISTORY_DIR}/{old}')}")
    return " && ".join(parts)


def restore_commands(snapshot: str) -> str:
    """Replace the config in the current directory by .history/<snapshot> (sh, cwd = stack)."""
    s = q(f"{HISTORY_DIR}/{snapshot}")
    return (f"find . -mindepth 1 -maxdepth 1 ! -name {HISTORY_DIR} -exec rm -rf {{}} + && "
            f"cp -a {s}/. .")


def compose_up(timeout: int, services=()) -> str:
    """``up`` of the whole config, or of ``services`` only (``--no-deps``: the others keep
    running as they are; see genai_workstation.stacks.service_changes)."""
    only = "".join(f" {q(s)}" for s in services)
    return (f"docker compose up -d --remove-orphans --wait --wait-timeout {int(timeout)}"
            + (f" --no-deps{only}" if only else ""))




def build_argv(build: dict, project_dir: str) -> list[str]:
    """``docker build`` for the rendered image: tag, labels (build hash), context folder."""
    argv = ["docker", "build", "--tag", build["tag"]]
    for key, value in sorted((build.get("labels") or {}).items()):
        argv += ["--label", f"{key}={value}"]
    for key, value in sorted((build.get("build_args") or {}).items()):
        argv += ["--build-arg", f"{key}={value}"]
    return argv + [f"{project_dir.rstrip('/')}/{build.get('context') or 'build'}"]


def gpu_check_script(checks: list[GpuCheck]) -> str:
    """sh: fail when an app reports another card than the one its check expects."""
    lines = []
    for check in checks:
        service, expected = check.service, check.expected
        probe = device_probe_command(service, check.probe, check.url)
        lines.append(
            f"seen=$({probe} | sed -n 's/^{DEVICE_MARK}//p' "
            "| tail -n 1); "
            f"case \"$(printf %s \"$seen\" | tr A-Z a-z)\" in "
            f"*{q(expected.lower())}*) echo \"GPU check: {service} runs on $seen\";; "
            f"*) echo \"GPU check FAILED for {service}: the app sees '${{seen:-no device}}', "
            f"the inventory declares '{_sh_text(expected)}'\" >&2; "
            f"failed=\"${{failed:+$failed; }}the GPU check of {service} (the app sees "
            f"'${{seen:-no device}}', the inventory declares '{_sh_text(expected)}')\";; esac"
        )
    return "; ".join(lines) if lines else ":"


def _sh_text(text: str) -> str:
    """Text safe inside a double-quoted sh string."""
    return re.sub(r"[\"`$\\]", "", text)


def rollback_script(*, name: str, project_dir: str, snapshot: str, timeout: int,
                    listing: list[str] = (), good: bool = False) -> str:
    """Restore .history/<snapshot> on purpose and bring it up (deploys/rollback.py); print
    ``listing`` (the kept snapshots, which are good) first."""
    n = _sh_text(name)
    what = f"{snapshot} ({'good: verified by an earlier run' if good else 'never verified'})"
    shown = "".join(f"echo {q('genai: ' + line)}; " for line in listing)
    return (
        f"cd {q(project_dir)} || exit 1; {shown}"
        f"[ -d {q(f'{HISTORY_DIR}/{snapshot}')} ] || "
        f"{{ echo 'genai: no snapshot {_sh_text(snapshot)}' >&2; exit 1; }}; "
        f"{restore_commands(snapshot)} && "
        f"if {compose_up(timeout)}; then echo \"genai: stack {n} rolled back to {what}\"; "
        f"else echo \"genai: stack {n}: restored {snapshot} but it did not become healthy\" >&2; "
        f"{APP_LOGS}; exit 1; fi"
    )


def write_check_script(checks: list[tuple[str, str]]) -> str:
    """sh: for (service, folder inside its container) fail when the app cannot create a file
    there (mode, owner, a read-only mount: the write probe, as the container's own user)."""
    probe = 'f="$1/.genai-write-probe.$$"; : > "$f" && rm -f "$f"'
    lines = []
    for service, folder in checks:
        svc, where = _sh_text(service), _sh_text(folder)
        lines.append(
            f"if err=$(docker compose exec -T {q(service)} sh -c {q(probe)} sh {q(folder)} "
            f"2>&1); then echo \"Write check: {svc} can write {where}\"; "
            f"else echo \"Write check FAILED for {svc}: cannot create a file in {where}: "
            f"$(printf %s \"$err\" | tail -n 1)\" >&2; "
            f"failed=\"${{failed:+$failed; }}the write check of {svc} ({where})\"; fi"
        )
    return "; ".join(lines) if lines else ":"


def _record(path: str, value: str) -> str:
    """sh: write one line to ``path`` atomically (temp file in the same folder + rename)."""
    return f"printf '%s\\n' {q(value)} > {path}.tmp && mv -f {path}.tmp {path}"


def _restore(n: str, short: str, timeout: int, target: str | None, good: bool,
             started: bool, services=()) -> str:
    """sh, after a failure (``$failed`` says which): restore ``target``, bring it up, exit 1.
    Without a target a config this run ``started`` is stopped (as a first deploy that fails;
    when it started some ``services`` only, those, the others keep running); one that ran
    before the run is left running."""
    only = " ".join(q(s) for s in services)
    stop = (f"echo \"genai: stack {n}: config {short} failed $failed, and there is no "
            f"previous config to restore; stopping {_sh_text(only) or 'it'}\" >&2; "
            + (f"docker compose stop {only} >&2" if only else
               "docker compose down --remove-orphans >&2")) if started else (
            f"echo \"genai: stack {n}: config {short} failed $failed, and no verified config "
            f"is kept to restore; it is left running. Fix the inventory and run again.\" >&2")
    if not target:
        return f"{stop}; exit 1"
    what = (f"the last good config {target} (verified by an earlier run)" if good else
            f"the previous config {target} (never verified: no verified config is kept)")
    return (
        f"if [ -d {q(f'{HISTORY_DIR}/{target}')} ]; then "
        f"echo \"genai: restoring {what} of stack {n}\" >&2; "
        f"{restore_commands(target)} || {{ echo 'genai: restore FAILED' >&2; exit 3; }}; "
        f"if {compose_up(timeout)} >&2; then "
        f"echo \"genai: ROLLED BACK stack {n}: config {short} failed $failed; restored "
        f"{what}, which is up and healthy. Fix the inventory and run again.\" >&2; "
        f"else echo \"genai: stack {n}: config {short} failed $failed, and the restored "
        f"config {target} did not become healthy either\" >&2; fi; "
        f"else {stop}; fi; exit 1"
    )


def up_script(*, name: str, project_dir: str, config_hash: str, timeout: int,
              rollback_to: str | None, gpu_checks: list[GpuCheck],
              write_checks: list[tuple[str, str]] = (), rollback_good: bool = False,
              up: bool = True, services=()) -> str:
    """Bring the config up (``up``; else it runs already; ``services``: only these), verify
    it (GPU, write checks), mark it good; on a failed health wait or check restore
    ``rollback_to`` (every service whose config differs in it) and fail."""
    n = _sh_text(name)
    short = config_hash[:12]
    start = (f"{compose_up(timeout, services)}; then {_record(DEPLOYED_HASH_FILE, config_hash)}"
             if up else ":; then :")
    return (
        f"cd {q(project_dir)} || exit 1; failed=''; "
        f"if {start}; "
        f"{gpu_check_script(gpu_checks)}; {write_check_script(list(write_checks))}; "
        "if [ -z \"$failed\" ]; then "
        f"{_record(VERIFIED_FILE, config_hash)} && "
        f"echo \"genai: stack {n} is up, healthy and verified (config {short}): marked good\"; "
        "exit 0; fi; "
        f"echo \"genai: stack {n}: config {short} is healthy but failed verification: "
        "$failed\" >&2; "
        "else "
        f"failed=\"the health check (not healthy within {int(timeout)} s)\"; "
        f"echo \"genai: stack {n}: the new config {short} did not become healthy within "
        f"{int(timeout)} s\" >&2; "
        "docker compose ps --all >&2; "
        f"echo \"--- last {LOG_LINES} log lines ---\" >&2; "
        f"{APP_LOGS}; "
        "fi; "
        f"{_restore(n, short, timeout, rollback_to, rollback_good, up, services)}"
    )


BUILD_LOG_LINES = 30


def build_script(*, name: str, project_dir: str, build: dict, restore_to: str | None) -> str:
    """sh: build the stack's image, printing one progress line per build step
    (``genai: build <tag> [<elapsed> s] Step 3/24 : ...``); on failure print the failing step
    and the build log's last lines, say what went wrong (a full disk named as such), remove the
    containers the failed build left, put the stack folder back to the deployed config
    ``restore_to`` (the running containers are not touched: they keep serving) and exit with
    the build's code."""
    n, tag = _sh_text(name), _sh_text(build["tag"])
    log = ".genai/tmp/build.log"
    argv = " ".join(q(a) for a in build_argv(build, project_dir))
    space = ("root=$(docker info --format '{{.DockerRootDir}}' 2>/dev/null); "
             "free=$(df -h \"${root:-/}\" 2>/dev/null | awk 'NR==2 {print $4 \" free of \" $2}'); "
             f"echo \"genai: building image {tag} for stack {n} FAILED: no space left on device "
             "(Docker's data root ${root:-unknown}: ${free:-size unknown}). Free space (docker "
             "builder prune, docker image prune) or move Docker's data-root to a larger disk, "
             "then run again.\" >&2")
    back = (f"if [ -d {q(f'{HISTORY_DIR}/{restore_to}')} ]; then {restore_commands(restore_to)} "
            f"&& echo \"genai: stack {n}: its folder holds the deployed config {restore_to} "
            "again\" >&2; fi; " if restore_to else "")
    return (
        f"cd {q(project_dir)} || exit 1; mkdir -p .genai/tmp; start=$(date +%s); "
        f"rcfile=$(mktemp); {{ {argv} 2>&1; echo $? > \"$rcfile\"; }} | tee {log} | "
        "while IFS= read -r line; do case \"$line\" in 'Step '*) "
        f"echo \"genai: build {tag} [$(( $(date +%s) - start )) s] $(printf %s \"$line\" "
        "| cut -c1-100)\";; esac; done; "
        "rc=$(cat \"$rcfile\"); rm -f \"$rcfile\"; "
        f"if [ \"$rc\" = 0 ]; then rm -f {log}; "
        f"echo \"genai: built {tag} in $(( $(date +%s) - start )) s\"; exit 0; fi; "
        f"echo \"genai: image build FAILED for {tag} after $(( $(date +%s) - start )) s at: "
        f"$(grep '^Step ' {log} | tail -n 1 | cut -c1-200)\" >&2; "
        f"echo '--- last {BUILD_LOG_LINES} lines of the build log ---' >&2; "
        f"tail -n {BUILD_LOG_LINES} {log} >&2; "
        # the classic builder keeps a failed step's container (and what it wrote: on a full
        # disk, the space); remove the ones this build started ("---> Running in <id>")
        f"for c in $(sed -n 's/^ *---> Running in \\([0-9a-f]*\\).*$/\\1/p' {log}); do "
        "docker rm -f \"$c\" >/dev/null 2>&1; done; "
        f"if grep -qi 'no space left on device' {log}; then {space}; fi; "
        f"{back}echo \"genai: stack {n}: the running containers were not touched\" >&2; "
        "exit \"$rc\""
    )
