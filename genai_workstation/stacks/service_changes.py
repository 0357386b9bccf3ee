"""Which services of a stack a run recreates, and which keep running: a pure decision.

The rendered stack carries one hash per service (``service_hash``: what that container depends
on); each running container carries the hash it was created from in its ``genai.service-hash``
label (the ``ComposeProject`` fact's ``labels``). :func:`compare` says, per service, whether it
must be (re)created and why; ``lifecycle.decide`` folds that into its Decision, the converge
operation prints :func:`describe` in the plan (dry run, drift) and passes only those services
to ``docker compose up --no-deps`` when others keep running.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .service_hash import SERVICE_HASH_LABEL


@dataclass(frozen=True)
class ServiceChanges:
    """``recreate``: services to (re)create or start, in the stack's order; ``keep``: the ones
    left running as they are; ``removed``: services with containers but no longer in the
    config (``--remove-orphans``); ``reasons``: one line per recreated or removed service."""

    recreate: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.recreate or self.removed)


def compare(wanted: Mapping[str, str], project: dict) -> ServiceChanges:
    """Compare the wanted ``{service: hash}`` with the ``ComposeProject`` fact's containers."""
    containers: dict[str, list[dict]] = {}
    for svc in project.get("services") or []:
        containers.setdefault(svc.get("service"), []).append(svc)
    recreate, keep, reasons = [], [], []
    for name, digest in wanted.items():
        why = _why(containers.get(name) or [], digest)
        if why:
            recreate.append(name)
            reasons.append(f"{name}: {why}")
        else:
            keep.append(name)
    removed = sorted(name for name in containers if name and name not in wanted)
    reasons += [f"{name}: no longer in the config (removed)" for name in removed]
    return ServiceChanges(tuple(recreate), tuple(keep), tuple(removed), tuple(reasons))


def _why(containers: list[dict], digest: str) -> str | None:
    """Why a service's containers must change, or None when they run ``digest`` healthy."""
    if not containers:
        return "no container yet"
    for svc in containers:
        running = (svc.get("labels") or {}).get(SERVICE_HASH_LABEL)
        if running != digest:
            return ("created before per-service hashes" if running is None
                    else f"config changed ({running[:12]} -> {digest[:12]})")
    for svc in containers:
        if svc.get("state") != "running":
            return f"not running ({svc.get('state')})"
        if svc.get("health") == "unhealthy":
            return "unhealthy"
    return None


def describe(stack: str, recreate, keep) -> str:
    """The plan's line: ``stack forge: recreate forge-turbo; keep running forge-myia, proxy``."""
    parts = []
    if recreate:
        parts.append("recreate " + ", ".join(recreate))
    if keep:
        parts.append("keep running " + ", ".join(keep))
    return f"stack {stack}: " + ("; ".join(parts) or "no service to recreate")


def only_these(recreate, keep) -> list[str]:
    """Services to name on ``docker compose up --no-deps``: the recreated ones when others
    keep running; none (a plain ``up``) when every service changes."""
    return list(recreate) if recreate and keep else []
