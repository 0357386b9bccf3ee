"""Before `docker compose up`: a fixed container name that a container outside the stack holds
(the old hand-kept setup, stopped but not removed, is the usual one) fails the run before
anything is written, naming that container and the fix. Pure: facts in, problems out."""

from __future__ import annotations

import yaml


def fixed_names(compose_text: str | bytes) -> tuple[str, list[str]]:
    """(project name, the `container_name` values) of a rendered compose file."""
    if isinstance(compose_text, bytes):
        compose_text = compose_text.decode("utf-8", "replace")
    try:
        document = yaml.safe_load(compose_text) or {}
    except yaml.YAMLError:
        return "", []  # the up reports it
    services = document.get("services") if isinstance(document, dict) else None
    names = [str(body["container_name"]) for body in (services or {}).values()
             if isinstance(body, dict) and body.get("container_name")]
    return str(document.get("name") or ""), names


def foreign_name_problems(stack: str, project: str, containers: dict[str, dict]) -> list[str]:
    """One problem per name held by a container of another Compose project or of none
    (`containers`: facts.containers.ContainersNamed)."""
    problems = []
    for name, seen in sorted(containers.items()):
        if seen.get("project") == project:
            continue
        owner = (f"Compose project {seen['project']!r}" if seen.get("project")
                 else "no Compose project")
        fix = (f"docker compose down in that project's folder, or docker rm -f {name}"
               if seen.get("project") else f"docker rm -f {name}")
        problems.append(
            f"stack {stack}: the container name {name} is taken by container "
            f"{str(seen.get('id'))[:12]} ({seen.get('state')}, image {seen.get('image')}, "
            f"{owner}), not by this stack; nothing was changed. Fix: if it is the old setup, "
            f"stop and remove it ({fix}), then run the deploy again; else choose another "
            "service.container_name")
    return problems
