"""Stack operations: converge a rendered Compose stack, and roll it back on purpose.

``stack.converge`` writes the rendered files (atomically), keeps the previous config under
``.history/``, builds the image only when its build hash label differs, and runs ``docker
compose up`` only when the config changed or a service is not running - then waits for
health, checks the GPU the app sees and the folders it must write, marks the config good, or
rolls back to the last good config when the new one is not healthy or fails a check.
Every shell step is guarded by a fact: a converged stack yields nothing (``host.noop``).

Secrets: files marked ``secret`` are uploaded without pyinfra's ``--diff`` (which prints the
content for ``files.put``), through a 0700 temp folder inside the stack (never ``/tmp``), mode
0600, owned by the workstation user. Always call these operations with ``name=...``: pyinfra
prints the arguments of operations that have no explicit name.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from datetime import datetime, timezone
from io import BytesIO, StringIO

from pyinfra import host, logger
from pyinfra.api import StringCommand, operation
from pyinfra.operations import files

from genai_workstation.facts.compose import AppDevice, ComposeProject, ImageLabel, StackHistory
from genai_workstation.facts.containers import ContainersNamed
from genai_workstation.facts.filesystem import PathDigests, SecretFiles
from genai_workstation.hostfacts import fact
from genai_workstation.operations import atomic
from genai_workstation.stacks import lifecycle as lc
from genai_workstation.stacks import name_guard, service_changes
from genai_workstation.stacks.rendered import GpuCheck, HealthCheck


def as_plain(rendered) -> dict:
    """A RenderedStack (object or dict, e.g. from a JSON test case) as a plain dict whose
    checks are the render's typed ones (stacks.rendered: HealthCheck, GpuCheck)."""
    if isinstance(rendered, dict):
        data = dict(rendered)
    else:
        data = {key: getattr(rendered, key, None) for key in (
            "files", "config_hash", "image_build", "health", "gpu_checks", "published",
            "services", "service_hashes")}
    out_files = {}
    for relpath, item in (data.get("files") or {}).items():
        if isinstance(item, str):
            item = {"content": item}
        elif not isinstance(item, dict):
            item = {"content": item.content, "mode": getattr(item, "mode", None),
                    "secret": getattr(item, "secret", False)}
        out_files[relpath] = {"content": item.get("content") or "",
                              "mode": item.get("mode"), "secret": bool(item.get("secret"))}
    data["files"] = out_files
    build = data.get("image_build")
    if build is not None and not isinstance(build, dict):
        build = {key: getattr(build, key, None) for key in ("tag", "build_hash", "context",
                                                             "labels", "build_args")}
    if build is not None:
        build = dict(build)
        build.setdefault("context", "build")
        labels = dict(build.get("labels") or {})
        labels[lc.BUILD_HASH_LABEL] = build["build_hash"]
        build["labels"] = labels
    data["image_build"] = build
    data["directories"] = list(getattr(rendered, "directories", None)
                               or (rendered.get("directories") if isinstance(rendered, dict)
                                   else None) or [])
    data["health"] = [_typed(HealthCheck, c) for c in data.get("health") or []]
    data["gpu_checks"] = [_typed(GpuCheck, c) for c in data.get("gpu_checks") or []]
    data["services"] = lc.service_names(data.get("services") or [])
    data["service_hashes"] = dict(data.get("service_hashes") or {})
    return data


def _typed(cls, check):
    """A check of the render, or its JSON form (a JSON test case)."""
    if isinstance(check, cls):
        return check
    fields = dict(check)
    if "writable" in fields:
        fields["writable"] = tuple(fields["writable"])
    return cls(**fields)


def write_checks(rendered: dict) -> list[tuple[str, str]]:
    """(service, folder inside its container) the app must be able to write."""
    return [(check.service, folder) for check in rendered["health"] for folder in check.writable]


def _mode(value, default: str) -> str:
    if value is None:
        return default
    if isinstance(value, int):
        return f"{value:o}"
    return str(value).lstrip("0o") or "0"


def _parents(relpath: str) -> list[str]:
    parts = relpath.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _io(content):
    """A file object for files.put / FileUploadCommand (templates may be bytes): text when it
    is UTF-8 (so that --diff can show it), bytes otherwise."""
    if isinstance(content, bytes):
        try:
            return StringIO(content.decode("utf-8"))
        except UnicodeDecodeError:
            return BytesIO(content)
    return StringIO(content)


def _put_secret(content, dest: str, remote: dict | None, salt: str, uid: int, gid: int,
                temp_dir: str):
    """Upload a secret file without ever printing it: compare salted digests, 0600, owner."""
    data = content if isinstance(content, bytes) else content.encode()
    digest = hashlib.sha256(salt.encode() + data).hexdigest()
    if remote is None or remote.get("digest") != digest:
        # 0600 from creation on, owner and mode set before the rename (atomic.upload)
        yield from atomic.upload(_io(content), dest, mode="600", user=uid, group=gid,
                                 temp_dir=temp_dir)
        return
    if (remote.get("uid"), remote.get("gid")) != (uid, gid):
        yield StringCommand("chown", f"{uid}:{gid}", dest)
    if remote.get("mode") != "600":
        yield StringCommand("chmod", "600", dest)


def _in_place(remote: dict | None, kind: str, uid: int, gid: int, mode: str | None,
              sha256: str | None = None) -> bool:
    """Whether a path read by PathDigests already is what the stack wants."""
    return bool(
        remote
        and remote.get("kind") == kind
        and (remote.get("uid"), remote.get("gid")) == (uid, gid)
        and (mode is None or remote.get("mode") == mode)
        and (sha256 is None or remote.get("sha256") == sha256)
    )


def _sha256(content) -> str:
    return hashlib.sha256(content if isinstance(content, bytes) else content.encode()).hexdigest()


def write_files(rendered: dict, project_dir: str, user: str, group: str, uid: int, gid: int,
                previous_manifest: list[str]):
    """Commands that make the stack folder hold exactly the rendered files.

    Every folder and file that is not secret is read in one round trip (PathDigests); only
    those that differ go through pyinfra's files.directory / files.put (which read their own
    facts and show a --diff), so a converged stack costs one command here, not one per file.
    """
    temp_dir = f"{project_dir}/{lc.TEMP_DIR}"
    wanted = rendered["files"]
    folders: list[tuple[str, str | None]] = [
        (posixpath.join(project_dir, sub) if sub else project_dir, mode)
        for sub, mode in (("", "750"), (lc.GENAI_DIR, "700"), (lc.TEMP_DIR, "700"))
    ]
    folders += [(path, None) for path in rendered["directories"]]  # data the containers mount
    seen = set()
    for relpath in sorted(wanted):
        for parent in _parents(relpath):
            if parent not in seen:
                seen.add(parent)
                secret_dir = any(wanted[p]["secret"] for p in wanted
                                 if p.startswith(parent + "/"))
                folders.append((f"{project_dir}/{parent}", "700" if secret_dir else "750"))
    manifest = "".join(f"{p}\n" for p in sorted(wanted))
    plain = {f"{project_dir}/{p}": (wanted[p]["content"], _mode(wanted[p]["mode"], "644"))
             for p in sorted(wanted) if not wanted[p]["secret"]}
    plain[f"{project_dir}/{lc.MANIFEST_FILE}"] = (manifest, "644")
    remote = fact(PathDigests, paths=[path for path, _ in folders] + list(plain))

    cmds = []
    for path, mode in folders:
        if not _in_place(remote.get(path), "directory", uid, gid, mode):
            cmds += list(files.directory._inner(path=path, user=user, group=group,
                                                **({"mode": mode} if mode else {})))

    secret_paths = [f"{project_dir}/{p}" for p in sorted(wanted) if wanted[p]["secret"]]
    salt = os.urandom(16).hex()
    remote_secrets = fact(SecretFiles, paths=secret_paths, salt=salt) \
        if secret_paths else {}
    for dest in secret_paths:
        content = wanted[dest[len(project_dir) + 1:]]["content"]
        cmds += list(_put_secret(content, dest, remote_secrets.get(dest), salt, uid, gid,
                                 temp_dir))
    for dest, (content, mode) in plain.items():
        if not _in_place(remote.get(dest), "file", uid, gid, mode, _sha256(content)):
            # its folder is one of `folders`, handled above: files.put need not read it again
            cmds += list(atomic.put(_io(content), dest, user=user, group=group, mode=mode,
                                    create_remote_dir=False))

    stale = sorted(set(previous_manifest) - set(wanted))
    for relpath in stale:
        if ".." not in relpath.split("/") and not relpath.startswith("/"):
            cmds.append(StringCommand("rm", "-f", f"{project_dir}/{relpath}"))
    return cmds


def fail_command(problems: list[str]) -> StringCommand:
    """A command that prints the problems to stderr and fails (no secret ever goes in)."""
    lines = "; ".join(f"echo {lc.q('genai: ' + p)} >&2" for p in problems)
    return StringCommand(f"{lines}; exit 1")


def names_held_elsewhere(stack: str, rendered: dict) -> list[str]:
    """Fixed container names of the stack that a container outside it holds."""
    compose = rendered["files"].get("compose.yaml") or {}
    project, names = name_guard.fixed_names(compose.get("content") or "")
    if not names:
        return []
    held = fact(ContainersNamed, names=names)
    return name_guard.foreign_name_problems(stack, project, held)


def app_device(project_dir: str, check: GpuCheck) -> dict:
    """The AppDevice fact: the card the app of `check` reports now."""
    return fact(AppDevice, project_dir=project_dir, service=check.service, probe=check.probe,
                url=check.url)


def app_gpu_problems(stack: str, project_dir: str, checks: list[GpuCheck]) -> list[str]:
    problems = []
    for check in checks:
        seen = app_device(project_dir, check)
        problem = lc.gpu_mismatch(check.expected, seen.get("name"))
        if problem:
            problems.append(f"GPU check FAILED for stack {stack}, service {check.service}: "
                            f"{problem}"
                            + (f" ({seen['error']})" if seen.get("error") else ""))
    return problems


class LiveCommand(StringCommand):
    """A shell command whose output pyinfra prints as it comes, at any verbosity (pyinfra shows
    a command's output only at -vvv, or after it failed; an image build takes minutes)."""

    def execute(self, state, host, connector_arguments):
        connector_arguments.update(self.connector_arguments)
        return host.run_shell_command(self, print_output=True, print_input=state.print_input,
                                      **connector_arguments)


@operation()
def converge(stack: str, rendered, project_dir: str, *, user: str, uid: int, gid: int,
             health_timeout: int, history_keep: int, group: str = "",
             timestamp: str | None = None):
    """
    Converge one rendered stack in ``project_dir`` (see the module docstring).

    + stack: the stack's name (``comfyui``, ``forge``, a custom stack)
    + rendered: the RenderedStack from ``genai_workstation.stacks.render.render_stack``
    + project_dir: ``<workspace>/stacks/<stack>``
    + user, group, uid, gid: the workstation user (owner of every file; group: default user)
    + health_timeout: seconds ``docker compose up --wait`` waits for health (the stack's)
    + history_keep: previous configs kept under ``.history/`` (the host's)
    + timestamp: snapshot timestamp (UTC, ``%Y%m%dT%H%M%SZ``); default: now
    """
    r = as_plain(rendered)
    group = group or user
    config_hash = r["config_hash"]
    project = fact(ComposeProject, project_dir=project_dir)
    if project.get("error") and project.get("exists"):
        host.noop(f"stack {stack}: {project['error']}")

    cmds = write_files(r, project_dir, user, group, uid, gid, project.get("manifest") or [])
    files_changed = bool(cmds)

    build = r["image_build"]
    image_hash = None
    if build and build.get("build_hash"):
        image_hash = fact(ImageLabel, image=build["tag"], label=lc.BUILD_HASH_LABEL)
    facts = {"build_hash": (build or {}).get("build_hash"), "image_build_hash": image_hash,
             "files_changed": files_changed, "history_keep": history_keep,
             "timestamp": timestamp or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ"),
             "service_hashes": r["service_hashes"]}
    decision = lc.decide(config_hash, r["services"], project, **facts)
    if (decision.up or decision.verify) and project.get("exists"):
        # the way back needs the kept snapshots: read them only then (a converged run does not)
        history = fact(StackHistory, project_dir=project_dir)
        decision = lc.decide(config_hash, r["services"], project, history=history, **facts)
    checks = r["gpu_checks"]

    if decision.noop and not cmds:
        problems = app_gpu_problems(stack, project_dir, checks)
        if problems:
            # A verified config that now sees another card (a card moved, a driver changed):
            # no older config would see the right one either, so fail the run, saying so.
            yield fail_command(problems)
            return
        host.noop(f"stack {stack} is converged and verified (config {config_hash[:12]}, "
                  f"{len(r['services'])} service(s) running)")
        return

    if decision.up and r["service_hashes"]:  # the plan says which services change
        logger.info(f"{host.print_prefix}plan: "
                    + service_changes.describe(stack, decision.recreate, decision.keep))

    problems = names_held_elsewhere(stack, r) if decision.up else []
    if problems:  # before anything is written: Docker would refuse it halfway through `up`
        yield fail_command(problems)
        return

    if decision.snapshot:
        yield StringCommand(lc.snapshot_script(project_dir, decision.snapshot_name,
                                               decision.prune))

    yield from cmds

    if decision.build:
        # progress lines as the build runs; a failed build (a full disk...) leaves the running
        # containers as they are and puts the stack folder back to the deployed config
        yield LiveCommand(lc.build_script(name=stack, project_dir=project_dir, build=build,
                                          restore_to=decision.snapshot_name))

    if decision.up or decision.verify:
        # A config that does not become healthy, or fails a check, is replaced by the last
        # config a run verified (decision.rollback_to), and the run fails saying which check.
        yield StringCommand(lc.up_script(
            name=stack, project_dir=project_dir, config_hash=config_hash,
            timeout=health_timeout, rollback_to=decision.rollback_to,
            rollback_good=decision.rollback_good, gpu_checks=checks,
            write_checks=write_checks(r), up=decision.up,
            services=service_changes.only_these(decision.recreate, decision.keep)))


@operation(is_idempotent=False)
def rollback(stack: str, project_dir: str, health_timeout: int, to: str | None = None,
             timestamp: str | None = None):
    """
    Restore a previous config of a stack from ``.history/`` and bring it up.

    + health_timeout: seconds ``docker compose up --wait`` waits (the stack's setting)
    + to: a snapshot name (or a unique prefix / config hash prefix); default: the newest good
      (verified) snapshot whose config differs from the deployed one
    The config deployed now is kept first as ``<timestamp>-<hash>-rollback`` (so it can be
    restored by name); automatic choice skips those. The run lists every kept snapshot and
    says which are good.
    """
    project = fact(ComposeProject, project_dir=project_dir)
    history = fact(StackHistory, project_dir=project_dir)
    listing = lc.describe_history(history, project.get("config_hash"))
    try:
        target = lc.rollback_target(history, project.get("config_hash"), to)
    except ValueError as exc:
        yield fail_command([f"stack {stack}: cannot roll back: {exc}", *listing])
        return
    services = [s["service"] for s in project.get("services") or []]
    if (lc.hash_matches(target["hash"], project.get("config_hash")) and services
            and not lc.not_running(project, services)):
        host.noop(f"stack {stack} already runs {target['name']}")
        return
    if project.get("exists") and not any(
            lc.hash_matches(s["hash"], project.get("config_hash")) for s in history):
        stamp = timestamp or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        keep = lc.snapshot_name(stamp, project.get("config_hash"), rollback=True)
        yield StringCommand(lc.snapshot_script(project_dir, keep, []))
    yield StringCommand(lc.rollback_script(name=stack, project_dir=project_dir,
                                           snapshot=target["name"], timeout=health_timeout,
                                           listing=listing, good=bool(target.get("good"))))
