"""Facts about deployed Compose stacks: project state, image labels, kept config snapshots.

Every fact runs one command (one round trip) and only reads. None of them prints a container's
environment or command line: `docker inspect` is asked for state, health and labels only, so
`-vvv` output cannot carry a secret that reached a container through its environment.
"""

from __future__ import annotations

import json
import re

import yaml
from pyinfra.api import FactBase

from genai_workstation.facts.filesystem import sh_quote as _q
from genai_workstation.stack_names import (
    CONFIG_HASH_LABEL,
    DEPLOYED_HASH_FILE,
    DEVICE_MARK,
    HISTORY_DIR,
    MANIFEST_FILE,
    VERIFIED_FILE,
    device_probe_command,
    hash_matches,
    parse_snapshot_name,
)

_MARK = "@@genai:"
# docker inspect template: one tab-separated line per container, no Env, no Cmd.
_INSPECT_FORMAT = (
    "{{.Name}}\t{{.State.Status}}\t"
    "{{if .State.Health}}{{.State.Health.Status}}{{end}}\t"
    "{{.State.ExitCode}}\t{{.Config.Image}}\t{{json .Config.Labels}}"
)
SERVICE_LABEL = "com.docker.compose.service"  # set by Compose on every container
_DEVICE_LINE = re.compile(rf"^{re.escape(DEVICE_MARK)}(.*)$")


def parse_ps_output(lines: list[str]) -> list[dict]:
    """`docker compose ps --format json`: one object a line (>= 2.21) or one JSON array."""
    text = "\n".join(line for line in lines if line.strip())
    if not text:
        return []
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError:
            data = []
        return [item for item in data if isinstance(item, dict)]
    rows = []
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(item, dict):
            rows.append(item)
    return rows


def parse_labels(value) -> dict:
    """Labels as a dict, from inspect's JSON map or ps's `k=v,k=v` string."""
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    if not value or not isinstance(value, str):
        return {}
    labels = {}
    for part in value.split(","):
        key, sep, val = part.partition("=")
        if sep:
            labels[key.strip()] = val
    return labels


def parse_inspect_line(line: str) -> dict | None:
    parts = line.split("\t")
    if len(parts) != 6:
        return None
    name, state, health, exit_code, image, labels = parts
    try:
        labels = json.loads(labels) if labels.strip() not in ("", "null") else {}
    except json.JSONDecodeError:
        labels = {}
    return {
        "container": name.lstrip("/"),
        "state": state,
        "health": health or None,
        "exit_code": int(exit_code) if exit_code.lstrip("-").isdigit() else None,
        "image": image,
        "labels": labels if isinstance(labels, dict) else {},
    }


class ComposeProject(FactBase):
    """
    Returns the state of the Compose project rendered in ``project_dir``.

    .. code:: python

        {
            "exists": True,            # project_dir/compose.yaml is there
            "config_hash": "ab12...",  # recorded at the last healthy `up` (.genai/config.sha256)
            "verified_hash": "ab12...",  # the config a run last verified (.genai/verified)
            "running_hashes": ["ab12..."],  # genai.config-hash labels of the containers
            "manifest": ["compose.yaml", ".env", "secrets/comfyui_auth"],  # files we rendered
            "error": None,             # or what `docker compose ps` complained about
            # `ports:` of each service in the deployed compose.yaml, as written there
            "compose_ports": {"comfyui": ["127.0.0.1:8188:8188"]},
            "services": [
                {
                    "service": "comfyui",
                    "container": "comfyui-comfyui-1",
                    "state": "running",   # created|running|restarting|exited|paused|dead
                    "health": "healthy",  # starting|healthy|unhealthy, None without healthcheck
                    "exit_code": 0,
                    "image": "genai/comfyui:3f2a...",
                    "labels": {"genai.config-hash": "ab12...", ...},
                    # what the container really publishes (compose ps `Publishers`)
                    "published": [{"address": "127.0.0.1", "port": 8188, "target": 8188}],
                },
            ],
        }
    """

    def command(self, project_dir: str) -> str:
        d = _q(project_dir)
        m = _MARK
        return (
            f"if [ ! -f {d}/compose.yaml ]; then echo '{m}absent'; exit 0; fi; "
            f"cd {d} || exit 0; echo '{m}present'; "
            f"echo '{m}hash'; cat {DEPLOYED_HASH_FILE} 2>/dev/null; echo; "
            f"echo '{m}verified'; cat {VERIFIED_FILE} 2>/dev/null; echo; "
            f"echo '{m}manifest'; cat {MANIFEST_FILE} 2>/dev/null; echo; "
            f"echo '{m}compose'; cat compose.yaml 2>/dev/null; echo; "
            f"echo '{m}ps'; if ps=$(docker compose ps --all --format json 2>/dev/null); "
            f"then printf '%s\\n' \"$ps\"; else echo '{m}ps-failed'; fi; "
            # the container IDs from that output (one compose start fewer than `ps -q`)
            f"echo '{m}inspect'; ids=$(printf '%s' \"$ps\" | grep -o '\"ID\":\"[0-9a-f]*\"' "
            "| cut -d'\"' -f4); "
            f'if [ -n "$ids" ]; then docker inspect --format {_q(_INSPECT_FORMAT)} $ids '
            "2>/dev/null; fi; "
            f"echo '{m}end'"
        )

    @staticmethod
    def default():
        return {
            "exists": False,
            "config_hash": None,
            "verified_hash": None,
            "running_hashes": [],
            "manifest": [],
            "error": None,
            "compose_ports": {},
            "services": [],
        }

    def process(self, output: list[str]):
        result = self.default()
        section = None
        sections: dict[str, list[str]] = {}
        for line in output:
            if line.startswith(_MARK):
                section = line[len(_MARK) :].strip()
                if section == "present":
                    result["exists"] = True
                elif section == "ps-failed":
                    result["error"] = "docker compose ps failed (is Compose v2 installed?)"
                sections.setdefault(section, [])
                continue
            if section:
                sections[section].append(line)
        hashes = [line.strip() for line in sections.get("hash", []) if line.strip()]
        result["config_hash"] = hashes[0] if hashes else None
        verified = [line.strip() for line in sections.get("verified", []) if line.strip()]
        result["verified_hash"] = verified[0] if verified else None
        result["manifest"] = [line.strip() for line in sections.get("manifest", []) if line.strip()]
        result["compose_ports"] = compose_ports(sections.get("compose", []))

        by_container = {}
        for line in sections.get("inspect", []):
            row = parse_inspect_line(line)
            if row:
                by_container[row["container"]] = row
        services = []
        for item in parse_ps_output(sections.get("ps", [])):
            name = item.get("Name") or ""
            inspected = by_container.get(name, {})
            labels = inspected.get("labels") or parse_labels(item.get("Labels"))
            services.append(
                {
                    "service": item.get("Service") or labels.get(SERVICE_LABEL),
                    "container": name,
                    "state": inspected.get("state") or item.get("State"),
                    "health": inspected.get("health", item.get("Health") or None) or None,
                    "exit_code": inspected.get("exit_code", item.get("ExitCode")),
                    "image": item.get("Image") or inspected.get("image"),
                    "labels": labels,
                    "published": parse_publishers(item.get("Publishers")),
                }
            )
        if not services:  # ps printed nothing parseable: fall back on inspect alone
            for row in by_container.values():
                services.append({**row, "service": row["labels"].get(SERVICE_LABEL),
                                 "published": []})
        result["services"] = sorted(services, key=lambda s: (s["service"] or "", s["container"]))
        result["running_hashes"] = sorted(
            {
                s["labels"][CONFIG_HASH_LABEL]
                for s in result["services"]
                if CONFIG_HASH_LABEL in s["labels"] and s["state"] == "running"
            }
        )
        return result


def compose_ports(lines: list[str]) -> dict:
    """{service: its `ports:` entries} of a compose file's text (unparsable: {})."""
    try:
        document = yaml.safe_load("\n".join(lines))
    except yaml.YAMLError:
        return {}
    services = document.get("services") if isinstance(document, dict) else None
    if not isinstance(services, dict):
        return {}
    return {name: list(body.get("ports") or []) for name, body in services.items()
            if isinstance(body, dict)}


def parse_publishers(value) -> list[dict]:
    """compose ps `Publishers` as [{"address", "port", "target"}]: host-published ports only,
    the IPv6 twin of an all-addresses binding dropped."""
    seen = []
    for item in value if isinstance(value, list) else []:
        if not isinstance(item, dict) or not item.get("PublishedPort"):
            continue
        address = item.get("URL") or "0.0.0.0"
        entry = {"address": "0.0.0.0" if address == "::" else address,
                 "port": int(item["PublishedPort"]), "target": int(item.get("TargetPort") or 0)}
        if entry not in seen:
            seen.append(entry)
    return seen


class ImageLabel(FactBase):
    """
    Returns the value of one label of a local image, or None (no such image, or no such label).

    .. code:: python

        "3f2a9c..."
    """

    def command(self, image: str, label: str) -> str:
        return (
            f"echo {_q(_MARK + 'label ' + label)}; "
            f"docker image inspect --format '{{{{json .Config.Labels}}}}' {_q(image)} "
            f"2>/dev/null || echo '{_MARK}absent'"
        )

    @staticmethod
    def default():
        return None

    def process(self, output: list[str]):
        label = None
        body = []
        for line in output:
            if line.startswith(_MARK + "label "):
                label = line[len(_MARK + "label ") :].strip()
            elif line.startswith(_MARK):
                return None
            else:
                body.append(line)
        try:
            labels = json.loads("\n".join(body).strip() or "null")
        except json.JSONDecodeError:
            return None
        if not isinstance(labels, dict) or label is None:
            return None
        return labels.get(label)


class StackHistory(FactBase):
    """
    Returns the config snapshots kept under ``project_dir/.history``, oldest first. A snapshot
    is ``good`` when a run verified its config: its ``.genai/verified`` holds its own hash.

    .. code:: python

        [
            {"name": "20261123T094200Z-ab12cd34ef56", "timestamp": "20261123T094200Z",
             "hash": "ab12cd34ef56", "origin": "deploy",  # or "rollback"
             "good": True},
        ]
    """

    def command(self, project_dir: str) -> str:
        d = _q(f"{project_dir.rstrip('/')}/{HISTORY_DIR}")
        return (
            f"if [ -d {d} ]; then cd {d} && for n in *; do [ -d \"$n\" ] || continue; "
            f"printf '%s\\t%s\\t%s\\n' \"$n\" \"$(head -n 1 \"$n/{DEPLOYED_HASH_FILE}\" "
            f"2>/dev/null)\" \"$(head -n 1 \"$n/{VERIFIED_FILE}\" 2>/dev/null)\"; done; fi"
        )

    @staticmethod
    def default():
        return []

    def process(self, output: list[str]):
        snapshots = []
        for line in output:
            name, _, rest = line.strip().partition("\t")
            snap = parse_snapshot_name(name)
            if not snap:
                continue
            recorded, _, verified = rest.partition("\t")
            recorded, verified = recorded.strip(), verified.strip()
            snap["good"] = bool(verified and verified == recorded
                                and hash_matches(snap["hash"], recorded))
            snapshots.append(snap)
        return sorted(snapshots, key=lambda s: s["name"])


class AppDevice(FactBase):
    """
    Returns the GPU name a running app reports, read from inside its container.

    ``probe`` is ``comfyui`` (GET ``url``, the app's /system_stats, ``devices[0].name``) or
    ``forge`` (the last ``Device: ...`` line of the service's log). Returns
    ``{"name": "cuda:0 NVIDIA GeForce RTX 3090 : cudaMallocAsync", "error": None}``.
    """

    def command(self, project_dir: str, service: str, probe: str, url: str | None = None) -> str:
        # A stopped app makes the probe fail: that is an answer (process() says so), not an error.
        return f"cd {_q(project_dir)} && {device_probe_command(service, probe, url)} || true"

    @staticmethod
    def default():
        return {"name": None, "error": "not read"}

    def process(self, output: list[str]):
        for line in output:
            match = _DEVICE_LINE.match(line.strip())
            if match:
                return {"name": match.group(1).strip() or None, "error": None}
        text = " ".join(line.strip() for line in output if line.strip())
        return {"name": None, "error": text[-300:] or "the app reported no device"}
