"""A deployed stack against its rendering: published ports, secret files, the proxy's refusal.

Pure decisions (facts in, findings out, no host contact); `stacks/verify.py` reads the facts.
Every finding names the item and what differs, expected and actual, and the fix.
"""

from __future__ import annotations

from ..findings import CRITICAL, Finding, mode4
from .custom import _published_port
from .exposure import _client_ip
from .rendered import AuthCheck

SECRET_MODE = "0600"
REFUSED = (401,)  # or a redirect (to a login page)


def _addr(address: str, port: int) -> str:
    address = str(address or "").strip("[]")
    address = "0.0.0.0" if address in ("", "*", "::") else address
    return f"{address}:{port}"


def _compose_ports(entries: list) -> tuple[list[str], bool]:
    """(host address:port published by these compose `ports:` entries, whether some entry
    lets Docker pick the host port)."""
    fixed, floating = [], False
    for entry in entries or []:
        address, number = _published_port(entry)
        if number is None:
            floating = True
        else:
            fixed.append(_addr(address, number))
    return sorted(set(fixed)), floating


def port_findings(host: str, stack: str, published: list, project: dict,
                  fix: str) -> list[Finding]:
    """The published ports of each service: the rendering (`published`: [(service, address,
    port)]) against the deployed compose.yaml and the running containers (ComposeProject)."""
    expected: dict[str, list[str]] = {}
    for service, address, port in published:
        expected.setdefault(service, []).append(_addr(address, port))
    in_file = {s: _compose_ports(p) for s, p in (project.get("compose_ports") or {}).items()}
    live = {svc["service"]: sorted({_addr(p["address"], p["port"])
                                    for p in svc.get("published") or []})
            for svc in project.get("services") or [] if svc.get("state") == "running"}
    found = []
    for service in sorted(set(expected) | set(in_file)):
        want = sorted(set(expected.get(service, [])))
        file_ports, floating = in_file.get(service, ([], False))
        running = None if floating else live.get(service)
        if file_ports == want and running in (None, want):
            continue
        shown = ", ".join(file_ports) or "none"
        if running is None or running == file_ports:
            where = "compose.yaml and the running container" if running is not None \
                else "compose.yaml; the container is not running"
            actual = f"{shown} ({where})"
        else:
            actual = f"compose.yaml: {shown}; running container: {', '.join(running) or 'none'}"
        wanted = ", ".join(want) or "none"
        found.append(Finding(
            host, f"stack {stack}: published port of {service}", wanted, actual,
            f"{fix}  (renders compose.yaml again and recreates {service} on {wanted}); to "
            "publish elsewhere, change the port in the inventory instead of compose.yaml"))
    return found


def secret_file_findings(host: str, project_dir: str, secret_files: list[str], states: dict,
                         uid: int, gid: int, fix: str) -> list[Finding]:
    """Each secret file of the stack: present, mode 0600, owned by the workstation user
    (`states`: PathStates of those paths). A file others can read is critical."""
    found = []
    for rel in secret_files:
        path = f"{project_dir.rstrip('/')}/{rel}"
        state = states.get(path) or {}
        if not state.get("exists"):
            found.append(Finding(host, f"secret file {path}",
                                 f"present, mode {SECRET_MODE}, owner {uid}:{gid}", "missing",
                                 fix))
            continue
        mode = mode4(state.get("mode"))
        if mode != SECRET_MODE:
            readable = mode != "unknown" and int(mode, 8) & 0o044
            found.append(Finding(
                host, f"mode of secret file {path}", SECRET_MODE, mode,
                f"chmod 600 {path}  (or {fix})"
                + ("; others can read the credential in it: rotate it if the machine is shared"
                   if readable else ""),
                severity=CRITICAL if readable else ""))
        owner = f"{state.get('uid')}:{state.get('gid')}"
        if owner != f"{uid}:{gid}":
            found.append(Finding(host, f"owner of secret file {path}", f"{uid}:{gid}", owner,
                                 f"chown {uid}:{gid} {path}  (or {fix})"))
    return found


def auth_targets(auth_checks: list[AuthCheck], project: dict) -> list[tuple[AuthCheck, str]]:
    """(check, URL to ask) for each exposed app whose proxy runs: the address the proxy really
    publishes for that app (its port towards it), else the rendered one."""
    proxy = next((s for s in project.get("services") or []
                  if s.get("service") == "proxy" and s.get("state") == "running"), None)
    if proxy is None:
        return []  # no proxy running: reported as a service that is down
    targets = []
    for check in auth_checks:
        live = [p for p in proxy.get("published") or [] if p["target"] == check.proxy_port]
        url = (f"http://{_client_ip(live[0]['address'])}:{live[0]['port']}/" if live
               else check.url)
        targets.append((check, url))
    return targets


def auth_findings(host: str, stack: str, project_dir: str, targets: list[tuple[AuthCheck, str]],
                  answers: dict, fix: str) -> list[Finding]:
    """A request without credentials must get 401 (or a redirect to a login page); an app
    that answers it is open to anyone who reaches the address: a critical finding."""
    found = []
    for check, url in targets:
        answer = answers.get(url) or {"status": None, "error": "not asked"}
        status = answer.get("status")
        if status in REFUSED or (status and 300 <= status < 400 and answer.get("location")):
            continue
        item = f"stack {stack}: proxy refuses {check.service} without credentials"
        expected = f"HTTP 401 (or a redirect to a login) at {url}"
        if status is not None and 200 <= status < 300:
            found.append(Finding(
                host, item, expected,
                f"HTTP {status} without credentials: {check.service} is open to anyone "
                f"who reaches {url}",
                f"stop it now: cd {project_dir} && docker compose stop proxy; then {fix} "
                "(renders proxy/Caddyfile and the auth snippet again); keep `auth:` on the app "
                "in the inventory", severity=CRITICAL))
        else:
            found.append(Finding(
                host, item, expected,
                f"HTTP {status}" if status is not None else f"no answer: {answer.get('error')}",
                f"cd {project_dir} && docker compose logs --tail 50 proxy; then {fix}"))
    return found
