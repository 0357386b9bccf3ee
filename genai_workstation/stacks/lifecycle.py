"""Stack lifecycle: what to do with a rendered stack, given what the host runs.

Pure functions (no pyinfra, no I/O) so they are tested without a host:

- :func:`decide` compares a rendered stack with the ``ComposeProject`` / ``ImageLabel`` facts
  and says whether to snapshot, build, bring the stack up, or nothing;
- :func:`last_good` picks the snapshot an automatic rollback restores: the newest config a
  run *verified* (healthy, then the stack's checks passed), never merely the previous one;
- the shell pieces (``genai_workstation.stacks.scripts``, re-exported here): :func:`up_script`
  brings a config up, verifies it, marks it good, or restores the last good config and fails
  saying which check failed and what it restored; :func:`snapshot_script`,
  :func:`restore_commands` keep and restore configs under ``.history/``;
- the names a deployed stack shares with the facts that read it (labels, the files below,
  snapshot names) come from ``genai_workstation.stack_names``, a leaf facts/ may import.

Layout of a deployed stack (``<workspace>/stacks/<name>/``)::

    compose.yaml, .env, Caddyfile, secrets/...   rendered files
    build/...                                    image build context (when built here)
    .genai/config.sha256                         hash of the config last seen healthy
    .genai/verified                              hash of the config last *verified* (good)
    .genai/manifest                              the files we rendered (stale ones are removed)
    .genai/tmp/                                  0700: upload temp files (secrets never in /tmp)
    .history/<UTC timestamp>-<hash12>[-rollback]/ previous configs, the newest `history_keep`
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..layout import stack_dir  # noqa: F401 (lc.stack_dir: the one formula, in layout.py)
from ..stack_names import (  # noqa: F401 (the names a deployed stack shares with facts/)
    BUILD_HASH_LABEL,
    CONFIG_HASH_LABEL,
    DEPLOYED_HASH_FILE,
    GENAI_DIR,
    HISTORY_DIR,
    MANIFEST_FILE,
    TEMP_DIR,
    VERIFIED_FILE,
    hash_matches,
    parse_snapshot_name,
    q,
    snapshot_name,
)

LOG_LINES = 50

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# ------------------------------------------------------------------------------- decisions
@dataclass
class Decision:
    """What a run must do for one stack; ``reasons`` say why (shown in the run's output)."""

    snapshot: bool = False  # copy the deployed config to .history/<snapshot_name> first
    build: bool = False
    up: bool = False
    verify: bool = False  # run the stack's checks; mark the config good or roll it back
    snapshot_name: str | None = None  # the deployed config's snapshot (new or kept already)
    prune: list[str] = field(default_factory=list)  # snapshots to delete with the new one
    rollback_to: str | None = None  # restored when the new config fails health or checks
    rollback_good: bool = False  # rollback_to was verified (else: merely the previous one)
    reasons: list[str] = field(default_factory=list)
    # per-service mode (service_hashes given): services `up` recreates, and those left running
    recreate: list[str] = field(default_factory=list)
    keep: list[str] = field(default_factory=list)

    @property
    def noop(self) -> bool:
        return not (self.snapshot or self.build or self.up or self.verify)


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
           image_build_hash: str | None = None, files_changed: bool = False,
           history: list[dict] | None = None, timestamp: str = "00000000T000000Z",
           history_keep: int = 5, service_hashes: dict | None = None) -> Decision:
    """Compare the wanted stack with the facts.

    ``config_hash``: the rendered config's hash; ``project``: the ComposeProject fact;
    ``build_hash``: the wanted image build hash (None: the image is not built here);
    ``image_build_hash``: the ``genai.build-hash`` label of the local image (ImageLabel fact);
    ``files_changed``: some rendered file differs from the host's copy; ``history``: the
    StackHistory fact (snapshots with their ``good`` mark); ``timestamp``: the name of a new
    snapshot; ``history_keep``: snapshots kept (the last good one is never pruned);
    ``service_hashes``: {service: hash} of the rendered stack, compared with each container's
    ``genai.service-hash`` label (service_changes.compare) to say which services change.
    """
    decision = Decision()
    deployed = project.get("config_hash")
    if build_hash and image_build_hash != build_hash:
        decision.build = True
        decision.reasons.append(
            "image not built yet" if image_build_hash is None
            else f"image build inputs changed ({image_build_hash[:12]} -> {build_hash[:12]})")
    if not deployed or deployed != config_hash:
        decision.up = True
        decision.reasons.append("first deploy" if not deployed
                                else f"config changed ({deployed[:12]} -> {config_hash[:12]})")
    if service_hashes:
        _per_service(decision, service_hashes, project)
    else:
        _whole_stack(decision, config_hash, services, project)
    if files_changed and not decision.up:
        decision.up = True
        decision.reasons.append("rendered files differ from the host's copy")
    if decision.build:
        decision.up = True
    if not decision.up and not is_verified(project, config_hash):
        decision.verify = True
        decision.reasons.append(f"config {config_hash[:12]} runs but was never verified")
    if decision.up or decision.verify:
        _plan_rollback(decision, config_hash, project, list(history or []), timestamp,
                       history_keep)
    return decision


def _whole_stack(decision: Decision, config_hash: str, services, project: dict) -> None:
    """Without per-service hashes (a hand-made rendered stack): every container must carry
    the stack's hash in its ``genai.config-hash`` label, and run."""
    running = project.get("running_hashes") or []
    if running and any(h != config_hash for h in running):
        decision.up = True
        decision.reasons.append("containers run another config ("
                                + ", ".join(h[:12] for h in running) + ")")
    down = not_running(project, service_names(services))
    if down:
        decision.up = True
        decision.reasons.append("not running: " + ", ".join(down))


def _per_service(decision: Decision, service_hashes: dict, project: dict) -> None:
    from .service_changes import compare

    changes = compare(service_hashes, project)
    decision.recreate, decision.keep = list(changes.recreate), list(changes.keep)
    if changes.changed:
        decision.up = True
        decision.reasons += list(changes.reasons)


def is_verified(project: dict, config_hash: str | None) -> bool:
    """Whether ``config_hash`` is the deployed config and a run verified it."""
    return bool(config_hash and project.get("config_hash") == config_hash
                and project.get("verified_hash") == config_hash)


def _plan_rollback(decision: Decision, config_hash: str, project: dict, history: list[dict],
                   timestamp: str, keep: int) -> None:
    """Snapshot the deployed config (unless kept already) and pick the rollback target."""
    deployed = project.get("config_hash")
    history = [dict(s, good=bool(s.get("good"))) for s in history]
    if project.get("exists") and deployed and deployed != config_hash:
        kept = [s for s in history if s["origin"] == "deploy" and hash_matches(s["hash"], deployed)]
        if kept:  # this config is kept already (e.g. restored by a rollback): reuse it
            decision.snapshot_name = kept[-1]["name"]
        else:
            decision.snapshot = True
            decision.snapshot_name = snapshot_name(timestamp, deployed)
            history.append(parse_snapshot_name(decision.snapshot_name) | {"good": False})
        if is_verified(project, deployed):
            for snap in history:
                if snap["name"] == decision.snapshot_name:
                    snap["good"] = True
    target = last_good(history, config_hash, prefer=decision.snapshot_name)
    if target:
        decision.rollback_to, decision.rollback_good = target["name"], True
    elif decision.snapshot_name:  # nothing verified is kept: the previous config, said so
        decision.rollback_to = decision.snapshot_name
    if decision.snapshot:
        decision.prune = prune_list(history, keep, protect={decision.rollback_to})


def last_good(history: list[dict], failing_hash: str | None,
              prefer: str | None = None) -> dict | None:
    """The snapshot an automatic rollback restores: a verified config other than the failing
    one - ``prefer`` (the config that ran until now) when it is good, else the newest good."""
    good = [s for s in history if s.get("good") and s["origin"] == "deploy"
            and not hash_matches(s["hash"], failing_hash)]
    preferred = [s for s in good if s["name"] == prefer]
    ordered = preferred or sorted(good, key=lambda s: s["name"], reverse=True)
    return ordered[0] if ordered else None


def prune_list(snapshots: list[dict], keep: int, protect: set | None = None) -> list[str]:
    """Names of snapshots to delete so that the newest ``keep`` remain (oldest first); the
    ``protect``ed ones (the last good config) stay and count towards ``keep``."""
    protect = protect or set()
    names = sorted(s["name"] for s in snapshots)
    extra = max(0, len(names) - keep)
    return [name for name in names if name not in protect][:extra]


def rollback_target(snapshots: list[dict], current_hash: str | None,
                    wanted: str | None = None) -> dict:
    """The snapshot ``deploys/rollback.py`` restores; raises ValueError saying why not.

    ``wanted``: a snapshot name (or a unique prefix of one, or a config hash prefix). Without
    it: the newest *good* (verified) snapshot whose config differs from the current one, else
    (nothing verified is kept) the newest snapshot taken by a deploy.
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
    good = last_good(snapshots, current_hash)
    if good:
        return good
    for snap in sorted(snapshots, key=lambda s: s["name"], reverse=True):
        if snap["origin"] == "deploy" and not hash_matches(snap["hash"], current_hash):
            return snap
    raise ValueError("every kept snapshot holds the config that is deployed now; kept: "
                     + ", ".join(s["name"] for s in snapshots))


def describe_history(snapshots: list[dict], current_hash: str | None) -> list[str]:
    """One line per kept snapshot, newest first, saying which are good (verified)."""
    lines = []
    for snap in sorted(snapshots, key=lambda s: s["name"], reverse=True):
        state = "good (verified)" if snap.get("good") else "not verified"
        extra = ", the config deployed now" if hash_matches(snap["hash"], current_hash) else ""
        origin = ", kept by a rollback" if snap["origin"] == "rollback" else ""
        lines.append(f"kept: {snap['name']}: {state}{extra}{origin}")
    return lines


def gpu_mismatch(expected: str | None, seen: str | None) -> str | None:
    """None when the app sees the declared card (or none is declared), else the message."""
    if not expected:
        return None
    if seen and expected.lower() in seen.lower():
        return None
    if not seen:
        return f"the app reports no device; declared: {expected}"
    return f"the app sees {seen!r}, the inventory declares {expected!r}"


# The shell pieces live in .scripts; they are reachable here too (lc.up_script, ...).
_SCRIPTS = {"BUILD_LOG_LINES", "build_argv", "build_script", "compose_up", "device_probe_command",
            "gpu_check_script", "restore_commands", "rollback_script",
            "snapshot_script", "up_script", "write_check_script"}


def __getattr__(name: str):
    if name in _SCRIPTS:
        from . import scripts

        return getattr(scripts, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
