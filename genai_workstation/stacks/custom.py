"""A user's own compose stack: a template folder rendered with its vars."""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
import yaml

from ..hostmodel import Stack
from .context import _Data, _Renderer
from .errors import StackError
from .rendered import HASH_PLACEHOLDER, LABEL, RenderedFile, RenderedStack


class _Custom:
    """A user's compose template folder, rendered with its vars; secrets go to 0600 files."""

    SKIP = {".history", ".git", "__pycache__"}

    def __init__(self, data: _Data, stack: Stack, renderer: _Renderer):
        self.data, self.stack, self.renderer = data, stack, renderer
        self.name, self.spec = stack.name, stack.settings

    def render(self) -> RenderedStack:
        base = Path(str(self.data.get("inventory_dir", "."))).expanduser()
        folder = (base / self.spec["template_dir"]).expanduser()
        field_path = self.stack.field
        if not folder.is_dir():
            raise StackError(f"{field_path}.template_dir: {folder} is not a folder",
                             "relative paths start at the inventory file's folder")
        secret_names = list(self.stack.secret_names)
        context = {
            "vars": self.spec.get("vars") or {}, "stack": self.name,
            "project": self.stack.project, "workspace": self.data.layout.workspace,
            "models_dir": self.data.layout.models_dir, "uid": str(self.data.model.user.uid),
            "gid": str(self.data.model.user.gid), "user": self.data.uid_gid,
            "secrets_env_file": "./secrets.env",
            "secrets": {n: f"./secrets/{n}" for n in secret_names},
        }
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)),
                                 undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                                 autoescape=False)
        files: dict[str, RenderedFile] = {}
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            relative = path.relative_to(folder)
            if set(relative.parts) & self.SKIP:
                continue
            target = relative.as_posix()
            if target.endswith(".j2"):
                target = target[:-3]
                try:
                    text = env.get_template(relative.as_posix()).render(**context)
                except jinja2.TemplateError as exc:
                    raise StackError(f"{field_path}: {relative} does not render: {exc}",
                                     "check the template and stacks.custom.*.vars") from None
                files[target] = RenderedFile(text)
            else:
                files[target] = RenderedFile(path.read_bytes(), 0o755 if path.stat().st_mode
                                             & 0o111 else 0o644)
        if "compose.yaml" not in files:
            raise StackError(f"{field_path}.template_dir: {folder} holds no compose.yaml(.j2)",
                             "add your compose template to that folder")
        for target in list(files):
            if target == ".env" or target.startswith("secrets/") or target == "secrets.env":
                raise StackError(f"{field_path}: the template folder has {target}, a name "
                                 "genai-workstation writes itself", "rename or remove it")
        values = {n: self.data.secret(n, f"{field_path}.secrets") for n in secret_names}
        for target, rendered in files.items():
            for value in values.values():
                if value and value.encode() in rendered.data():
                    raise StackError(f"{field_path}: {target} contains the value of a secret",
                                     "refer to secrets through compose `secrets:` "
                                     "({{ secrets.NAME }}) or the env file, never by value")
        compose, warnings, published, services = self.compose(files["compose.yaml"], field_path)
        files["compose.yaml"] = RenderedFile(compose)
        files[".env"] = RenderedFile(
            "# Rendered by genai-workstation: compose project settings only, never a secret.\n"
            f"COMPOSE_PROJECT_NAME=genai-{self.name}\n")
        if secret_names:
            files["secrets.env"] = RenderedFile(
                "".join(f"{n}={_env_quote(v)}\n" for n, v in sorted(values.items())), 0o600, True)
            for name, value in values.items():
                files[f"secrets/{name}"] = RenderedFile(value, 0o600, True)
        return RenderedStack(
            name=self.name, project=self.stack.project,
            directory=self.data.layout.stack_dir(self.name), files=files, config_hash="",
            services=services, published=published, image_build=None, directories=[],
            health_timeout=self.stack.health_timeout, warnings=warnings)

    def compose(self, rendered: RenderedFile, field_path: str):
        try:
            document = yaml.safe_load(rendered.data().decode("utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise StackError(f"{field_path}: compose.yaml is not valid YAML: {exc}",
                             "fix the template") from None
        if not isinstance(document, dict) or not isinstance(document.get("services"), dict):
            raise StackError(f"{field_path}: compose.yaml has no `services:` mapping",
                             "a compose file lists its services under `services:`")
        document.setdefault("name", self.stack.project)
        warnings, published = [], []
        for service, body in document["services"].items():
            body = body if isinstance(body, dict) else {}
            document["services"][service] = body
            labels = body.get("labels") or {}
            if isinstance(labels, list):
                labels = dict(item.split("=", 1) if "=" in item else (item, "")
                              for item in labels)
            labels.update({f"{LABEL}.stack": self.name, f"{LABEL}.service": service,
                           f"{LABEL}.service-hash": HASH_PLACEHOLDER})
            body["labels"] = labels
            for port in body.get("ports") or []:
                address, number = _published_port(port)
                if number is None:
                    continue
                published.append((service, address, number))
                if address not in ("127.0.0.1", "::1", "localhost"):
                    warnings.append(f"{field_path}: service {service} publishes port {number} on "
                                    f"{address}, beyond this machine")
        text = ("# Rendered by genai-workstation from the template folder of "
                f"stacks.custom.{self.name}; do not edit here.\n"
                + yaml.safe_dump(document, sort_keys=False, default_flow_style=False,
                                 allow_unicode=True))
        return text, warnings, published, list(document["services"])


def _published_port(port) -> tuple[str, int | None]:
    """(host address, host port) of a compose `ports:` entry (short or long syntax)."""
    if isinstance(port, dict):
        published = port.get("published")
        number = int(str(published).split("-")[0]) if published else None
        return port.get("host_ip") or "0.0.0.0", number
    text = str(port).split("/")[0]
    if text.startswith("["):
        address, _, rest = text[1:].partition("]:")
        parts = rest.split(":")
        return address, int(parts[0].split("-")[0]) if len(parts) > 1 else None
    parts = text.split(":")
    if len(parts) == 3:
        return parts[0] or "0.0.0.0", int(parts[1].split("-")[0]) if parts[1] else None
    if len(parts) == 2:
        return "0.0.0.0", int(parts[0].split("-")[0])
    return "0.0.0.0", None  # a container port only: not published on a fixed host port


def _env_quote(value: str) -> str:
    if re.match(r"^[A-Za-z0-9_./:@+-]*$", value):
        return value
    return "'" + value.replace("'", "'\\''") + "'"

