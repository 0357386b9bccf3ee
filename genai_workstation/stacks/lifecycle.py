"""Stack lifecycle: what to do with a rendered stack, given what the host runs.

Pure functions (no pyinfra, no I/O) so they are tested without a host:

- :func:`decide` compares a rendered stack with the ``ComposeProject`` / ``ImageLabel`` facts
  and says whether to snapshot, build, bring the stack up, or nothing;
- :func:`up_script` is the one shell command that brings a new config up, waits until it is
  healthy, checks the GPU the app sees, records the deployed hash, and - when the config does
  not become healthy - prints the last log lines, restores the previous config from
  ``.history/``, brings it back up and exits non-zero saying so;
- :func:`snapshot_script`, :func:`restore_script`: keep and restore configs under ``.history/``.

Layout of a deployed stack (``<workspace>/stacks/<name>/``)::

    compose.yaml, .env, Caddyfile, secrets/...   rendered files
    build/...                                    image build context (when built here)
    .genai/config.sha256                         hash of the config last seen healthy
    .genai/manifest                              the files we rendered (stale ones are removed)
    .genai/tmp/                                  0700: upload temp files (secrets never in /tmp)
    .history/<UTC timestamp>-<hash12>[-rollback]/ previous configs, the newest `history_keep`
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass, field

GENAI_DIR = ".genai"
DEPLOYED_HASH_FILE = f"{GENAI_DIR}/config.sha256"
MANIFEST_FILE = f"{GENAI_DIR}/manifest"
TEMP_DIR = f"{GENAI_DIR}/tmp"
HISTORY_DIR = ".history"
BUILD_HASH_LABEL = "genai.build-hash"
CONFIG_HASH_LABEL = "genai.config-hash"
LOG_LINES = 50

_SNAPSHOT = re.compile(r"^(\d{8}T\d{6}Z)-([0-9a-f]{6,64}|none)(-rollback)?$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def q(value) -> str:
    return shlex.quote(str(value))


def stack_dir(workspace: str, name: str) -> str:
    return f"{workspace.rstrip('/')}/stacks/{name}"


def snapshot_name(timestamp: str, config_hash: str | None, rollback: bool = False) -> str:
    """``20261123T094200Z-ab12cd34ef56`` (``-rollback`` when taken by deploys/rollback.py)."""
    short = (config_hash or "none")[:12]
    return f"{timestamp}-{short}{'-rollback' if rollback else ''}"


def parse_snapshot_name(name: str) -> dict | None:
    match = _SNAPSHOT.match(name)
    if not match:
        return None
    return {"name": name, "timestamp": match.group(1), "hash": match.group(2),
            "origin": "rollback" if match.group(3) else "deploy"}


def hash_matches(short_or_full: str | None, full: str | None) -> bool:
    return bool(short_or_full and full and (full.startswith(short_or_full)
                                            or short_or_full.startswith(full)))


# ------------------------------------------------------------------------------- decisions
@dataclass
class Decision:
    """What a run must do for one stack; ``reasons`` say why (shown in the run's output)."""

    snapshot: bool = False  # keep the deployed config before writing the new one
    build: bool = False
    up: bool = False
    reasons: list[str] = field(default_factory=list)

    @property
    def noop(self) -> bool:
        return not (self.snapshot or self.build or self.up)


def service_names(services) -> list[str]:
    if isinstance(services, dict):
        return list(services)
    return [s if isinstance(s, str) else s.get("service") or s.get("name") for s in services]


def not_running(project: dict, wanted: list[str]) -> list[str]:
    """Services of ``wanted`` that are missing, not running, or unhealthy."""
    seen = {}
    for svc in project.get("services") or []:
        seen.setdefault(svc.get("service"), []).append(svc)
    problems = []
    for name in wanted:
        containers = seen.get(name) or []
        if not containers:
            problems.append(f"{name} (no container)")
            continue
        for svc in containers:
            if svc.get("state") != "running":
                problems.append(f"{name} ({svc.get('state')})")
            elif svc.get("health") == "unhealthy":
                problems.append(f"{name} (unhealthy)")
    return problems


def decide(config_hash: str, services, project: dict, *, build_hash: str | None = None,
           image_build_hash: str | None = None, files_changed: bool = False) -> Decision:
    """Compare the wanted stack with the facts.

    ``config_hash``: the rendered config's hash; ``project``: the ComposeProject fact;
    ``build_hash``: the wanted image build hash (None: the image is not built here);
    ``image_build_hash``: the ``genai.build-hash`` label of the local image (ImageLabel fact);
    ``files_changed``: some rendered file differs from the host's copy.
    """
    decision = Decision()
    deployed = project.get("config_hash")
    if build_hash and image_build_hash != build_hash:
        decision.build = True
        decision.reasons.append(
            "image not built yet" if image_build_hash is None
            else f"image build inputs changed ({image_build_hash[:12]} -> {build_hash[:12]})")
    if project.get("exists") and deployed and deployed != config_hash:
        decision.snapshot = True
    if not deployed or deployed != config_hash:
        decision.up = True
        decision.reasons.append("first deploy" if not deployed
                                else f"config changed ({deployed[:12]} -> {config_hash[:12]})")
    running = project.get("running_hashes") or []
    if running and any(h != config_hash for h in running):
        decision.up = True
        decision.reasons.append("containers run another config ("
                                + ", ".join(h[:12] for h in running) + ")")
    down = not_running(project, service_names(services))
    if down:
        decision.up = True
        decision.reasons.append("not running: " + ", ".join(down))
    if files_changed and not decision.up:
        decision.up = True
        decision.reasons.append("rendered files differ from the host's copy")
    if decision.build:
        decision.up = True
    return decision


def prune_list(snapshots: list[dict], keep: int) -> list[str]:
    """Names of snapshots to delete so that the newest ``keep`` remain (oldest first)."""
    names = sorted(s["name"] for s in snapshots)
    return names[: max(0, len(names) - keep)]


def rollback_target(snapshots: list[dict], current_hash: str | None,
                    wanted: str | None = None) -> dict:
    """The snapshot ``deploys/rollback.py`` restores; raises ValueError saying why not.

    ``wanted``: a snapshot name (or a unique prefix of one, or a config hash prefix). Without
    it: the newest snapshot taken by a deploy whose config differs from the current one.
    """
    if not snapshots:
        raise ValueError("there is no previous config in .history to roll back to")
    if wanted:
        found = [s for s in snapshots if s["name"] == wanted]
        found = found or [s for s in snapshots
                          if s["name"].startswith(wanted) or s["hash"].startswith(wanted)]
        if not found:
            raise ValueError(f"no snapshot {wanted!r}; kept: "
                             + ", ".join(s["name"] for s in snapshots))
        if len({s["hash"] for s in found}) > 1:
            raise ValueError(f"{wanted!r} names several snapshots: "
                             + ", ".join(s["name"] for s in found))
        return sorted(found, key=lambda s: s["name"])[-1]
    for snap in sorted(snapshots, key=lambda s: s["name"], reverse=True):
        if snap["origin"] == "deploy" and not hash_matches(snap["hash"], current_hash):
            return snap
    raise ValueError("every kept snapshot holds the config that is deployed now; kept: "
                     + ", ".join(s["name"] for s in snapshots))


# ----------------------------------------------------------------------------- shell pieces
def snapshot_script(project_dir: str, name: str, prune: list[str]) -> str:
    """Copy the deployed config (everything but .history) to .history/<name>, drop old ones."""
    if not _SAFE_NAME.match(name):
        raise ValueError(f"bad snapshot name {name!r}")
    d, h = q(project_dir), q(f"{project_dir}/{HISTORY_DIR}")
    target = q(f"{project_dir}/{HISTORY_DIR}/{name}")
    parts = [
        f"mkdir -p {h} && chmod 700 {h}",
        f"rm -rf {target}.tmp && mkdir {target}.tmp",
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


def compose_up(timeout: int) -> str:
    return (f"docker compose up -d --remove-orphans --wait --wait-timeout {int(timeout)}")


def device_probe_command(service: str, probe: str) -> str:
    """Print ``@@genai:device <name>`` for the GPU the app in ``service`` reports.

    ``comfyui:<url>``: GET the app's /system_stats from inside its container (python3 is in
    every app image), take ``devices[0].name``. ``forge``: Forge logs ``Device: cuda:0 <name>``
    at start; its API has no device name (/sdapi/v1/memory has sizes only).
    """
    svc = q(service)
    if probe.startswith("comfyui:"):
        url = probe[len("comfyui:"):]
        code = ("import json,urllib.request as u;"
                f"d=json.load(u.urlopen({url!r},timeout=20))['devices'];"
                "print('@@genai:device '+(d[0]['name'] if d else ''))")
        runner = 'p=$(command -v python3 || command -v python); exec "$p" -c "$1"'
        return f"docker compose exec -T {svc} sh -c {q(runner)} sh {q(code)} 2>&1"
    if probe == "forge":
        return (f"docker compose logs --no-color --no-log-prefix {svc} 2>&1 "
                "| sed -n 's/^.*Device: \\(.*\\)$/@@genai:device \\1/p' | tail -n 1")
    raise ValueError(f"unknown device probe {probe!r}")


def probe_for(health: dict) -> str | None:
    """The device probe that fits a health entry of the rendered stack, or None.

    The entry's ``gpu_url`` (else ``url``) is the in-container address: ComfyUI's
    ``/system_stats`` names the device; Forge's ``/sdapi/v1/memory`` has sizes only, so Forge
    is read from its ``Device: ...`` start-up log line.
    """
    url = health.get("gpu_url") or health.get("url") or ""
    if url.rstrip("/").endswith("/system_stats"):
        return f"comfyui:{url}"
    if "/internal/ping" in url or "/sdapi/" in url:
        return "forge"
    return None


def build_argv(build: dict, project_dir: str) -> list[str]:
    """``docker build`` for the rendered image: tag, labels (build hash), context folder."""
    argv = ["docker", "build", "--tag", build["tag"]]
    for key, value in sorted((build.get("labels") or {}).items()):
        argv += ["--label", f"{key}={value}"]
    for key, value in sorted((build.get("build_args") or {}).items()):
        argv += ["--build-arg", f"{key}={value}"]
    return argv + [f"{project_dir.rstrip('/')}/{build.get('context') or 'build'}"]


BUILD_LOG_LINES = 30


def build_script(build: dict, project_dir: str) -> str:
    """sh: ``docker build`` with its full log in ``/tmp/genai-build-<stack>.log`` and, on stdout,
    one progress line per build step (``genai: build <tag> [<elapsed> s] Step 3/24 : ...``);
    on failure, the failing step and the last BUILD_LOG_LINES lines of the log on stderr.
    The build runs before ``up``: a failed build leaves the running stack as it was."""
    log = q(f"/tmp/genai-build-{posixpath.basename(project_dir.rstrip('/'))}.log")
    tag = _sh_text(build["tag"])
    argv = " ".join(q(a) for a in build_argv(build, project_dir))
    return (
        f"start=$(date +%s); rcfile=$(mktemp); "
        f"{{ {argv} 2>&1; echo $? > \"$rcfile\"; }} | tee {log} | "
        "while IFS= read -r line; do case \"$line\" in 'Step '*) "
        f"echo \"genai: build {tag} [$(( $(date +%s) - start )) s] $(printf %s \"$line\" "
        "| cut -c1-100)\";; esac; done; "
        "rc=$(cat \"$rcfile\"); rm -f \"$rcfile\"; "
        f"if [ \"$rc\" != 0 ]; then "
        f"echo \"genai: image build FAILED for {tag} after $(( $(date +%s) - start )) s at: "
        f"$(grep '^Step ' {log} | tail -n 1 | cut -c1-200)\" >&2; "
        f"echo '--- last {BUILD_LOG_LINES} lines of the build log ---' >&2; "
        f"tail -n {BUILD_LOG_LINES} {log} >&2; exit \"$rc\"; fi; "
        f"echo \"genai: built {tag} in $(( $(date +%s) - start )) s\""
    )


def gpu_mismatch(expected: str | None, seen: str | None) -> str | None:
    """None when the app sees the declared card (or none is declared), else the message."""
    if not expected:
        return None
    if seen and expected.lower() in seen.lower():
        return None
    if not seen:
        return f"the app reports no device; declared: {expected}"
    return f"the app sees {seen!r}, the inventory declares {expected!r}"


def gpu_check_script(checks: list[tuple[str, str, str]]) -> str:
    """sh: for (service, probe, expected name) fail when the app reports another card."""
    lines = []
    for service, probe, expected in checks:
        lines.append(
            f"seen=$({device_probe_command(service, probe)} | sed -n 's/^@@genai:device //p' "
            "| tail -n 1); "
            f"case \"$(printf %s \"$seen\" | tr A-Z a-z)\" in "
            f"*{q(expected.lower())}*) echo \"GPU check: {service} runs on $seen\";; "
            f"*) echo \"GPU check FAILED for {service}: the app sees '${{seen:-no device}}', "
            f"the inventory declares '{_sh_text(expected)}'\" >&2; gpu_ok=no;; esac"
        )
    return "; ".join(lines) if lines else ":"


def _sh_text(text: str) -> str:
    """Text safe inside a double-quoted sh string."""
    return re.sub(r"[\"`$\\]", "", text)


def up_script(*, name: str, project_dir: str, config_hash: str, timeout: int,
              snapshot: str | None, gpu_checks: list[tuple[str, str, str]]) -> str:
    """Bring the rendered config up; on health failure roll back to ``snapshot`` and fail."""
    d = q(project_dir)
    n = _sh_text(name)
    short = config_hash[:12]
    restore = (
        f"if [ -d {q(f'{HISTORY_DIR}/{snapshot}')} ]; then "
        f"echo \"genai: restoring the previous config of stack {n} ({snapshot})\" >&2; "
        f"{restore_commands(snapshot)} || {{ echo 'genai: restore FAILED' >&2; exit 3; }}; "
        f"if {compose_up(timeout)} >&2; then "
        f"echo \"genai: ROLLED BACK stack {n}: the new config {short} did not become healthy "
        f"within {int(timeout)} s; the previous config {snapshot} is restored and healthy. "
        f"Fix the inventory and run again.\" >&2; "
        f"else echo \"genai: stack {n}: the new config {short} did not become healthy and the "
        f"restored previous config {snapshot} did not become healthy either\" >&2; fi; "
        "else "
        f"echo \"genai: stack {n}: the new config {short} did not become healthy within "
        f"{int(timeout)} s and there is no previous config to restore; stopping it\" >&2; "
        "docker compose down --remove-orphans >&2; fi; exit 1"
        if snapshot else
        f"echo \"genai: stack {n}: the new config {short} did not become healthy within "
        f"{int(timeout)} s and there is no previous config to restore; stopping it\" >&2; "
        "docker compose down --remove-orphans >&2; exit 1"
    )
    return (
        f"cd {d} || exit 1; "
        f"if {compose_up(timeout)}; then "
        "gpu_ok=yes; "
        f"printf '%s\\n' {q(config_hash)} > {DEPLOYED_HASH_FILE}; "
        f"{gpu_check_script(gpu_checks)}; "
        f"if [ \"$gpu_ok\" = yes ]; then echo \"genai: stack {n} is up and healthy "
        f"(config {short})\"; exit 0; fi; "
        f"echo \"genai: stack {n} runs on the wrong GPU (see above); fix gpu: in the "
        "inventory\" >&2; exit 2; "
        "fi; "
        f"echo \"genai: stack {n}: the new config {short} did not become healthy within "
        f"{int(timeout)} s\" >&2; "
        "docker compose ps --all >&2; "
        f"echo \"--- last {LOG_LINES} log lines ---\" >&2; "
        f"docker compose logs --no-color --tail {LOG_LINES} >&2; "
        f"{restore}"
    )


def rollback_script(*, name: str, project_dir: str, snapshot: str, timeout: int) -> str:
    """Restore .history/<snapshot> on purpose and bring it up (deploys/rollback.py)."""
    n = _sh_text(name)
    return (
        f"cd {q(project_dir)} || exit 1; "
        f"[ -d {q(f'{HISTORY_DIR}/{snapshot}')} ] || "
        f"{{ echo 'genai: no snapshot {_sh_text(snapshot)}' >&2; exit 1; }}; "
        f"{restore_commands(snapshot)} && "
        f"if {compose_up(timeout)}; then echo \"genai: stack {n} rolled back to {snapshot}\"; "
        f"else echo \"genai: stack {n}: restored {snapshot} but it did not become healthy\" >&2; "
        f"docker compose logs --no-color --tail {LOG_LINES} >&2; exit 1; fi"
    )
