"""Exposure of the built-in apps: loopback ports, or the authenticating Caddy proxy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from .errors import StackError
from .proxy import GATE_PORT, auth_snippet, gate_config
from .rendered import HASH_PLACEHOLDER, AuthCheck, RenderedFile

if TYPE_CHECKING:
    from .builtin import _App

PROXY_IMAGE = "caddy:2"
PROXY_FIRST_PORT = 8080


class _Exposure:
    """The proxy part of a built-in stack (mixed into _BuiltinStack)."""

    def exposure(self, apps: list[_App], image: str,
                 built: bool) -> tuple[dict | None, list]:
        """The proxy (or None) and the per-app published ports."""
        sites, secret_names, gates = [], [], []
        for app in apps:
            expose, auth = app.model.expose, app.model.auth
            if expose is None:
                app.ports = [f"127.0.0.1:{app.model.port}:{app.internal_port}"]
                app.published = [(app.service, "127.0.0.1", app.model.port)]
                continue
            # auth without expose is never dropped: a reverse proxy on this machine may forward
            # the world to loopback, so the authenticating proxy fronts the app there too (the
            # model exposes it on 127.0.0.1).
            if not auth:
                raise StackError(f"{app.field}.expose: publishes the app without authentication",
                                 "add auth (basic or bearer) or remove expose")
            secret_name = auth.get("secret") or app.model.kind.default_secret
            value = self.data.secret(secret_name, f"{app.field}.auth")
            compose_secret = f"proxy_auth_{app.service.replace('-', '_')}"
            gate = None
            if auth["type"] == "login":
                gate = self.login_gate(app, auth, value, compose_secret, image, built)
                gates.append(gate)
                snippet = gate.pop("config")
            else:
                snippet = auth_snippet(auth, value,
                                       (self.data.workstation, self.kind, app.service),
                                       f"{app.field}.auth")
                secret_names.append(compose_secret)
            self.files[f"secrets/{compose_secret}"] = RenderedFile(snippet, 0o600, True)
            self.secrets[compose_secret] = f"./secrets/{compose_secret}"
            port = expose.port
            internal = PROXY_FIRST_PORT + len(sites)
            sites.append({
                "service": app.service, "address": expose.address, "port": port,
                "internal_port": internal, "auth_type": auth["type"],
                "auth_file": f"/run/secrets/{compose_secret}",
                "gate": gate and f"{gate['service']}:{GATE_PORT}",
                "upstream": f"{app.service}:{app.internal_port}",
            })
            app.published = [("proxy", expose.address, port)]
        if not sites:
            return None, []
        self.files["proxy/Caddyfile"] = RenderedFile(
            self.renderer.render("proxy/Caddyfile.j2", sites=sites))
        proxy_image = (self.spec.get("proxy_image") or PROXY_IMAGE)
        proxy = {
            "image": proxy_image, "user": self.data.uid_gid, "stack": self.kind,
            "ports": [f"{_host_ip(s['address'])}:{s['port']}:{s['internal_port']}"
                      for s in sites],
            "secrets": secret_names,
            "upstreams": [s["service"] for s in sites] + [g["service"] for g in gates],
            "gates": gates, "hash_placeholder": HASH_PLACEHOLDER,
        }
        if gates:
            self.files["proxy/auth_gate.py"] = RenderedFile(self.renderer.read(
                "proxy/auth_gate.py"))
        return proxy, sites

    def login_gate(self, app: _App, auth: Mapping, password: str, compose_secret: str,
                   image: str, built: bool) -> dict:
        """The login gate service of one app (runs the app image's Python)."""
        field = f"{app.field}.auth"
        token = (self.data.secret(auth["token_secret"], f"{field}.token_secret")
                 if auth.get("token_secret") else None)
        return {
            "service": f"auth-{app.service}", "image": image, "pull_never": built,
            "user": self.data.uid_gid,
            "secret": compose_secret, "title": f"{self.kind} {app.service}",
            "port": GATE_PORT, "token_file": auth.get("token_file"), "stack": self.kind,
            "config": gate_config(auth, password, token, auth.get("token_file"), field),
        }

    @staticmethod
    def auth_checks(sites: list[dict]) -> list[AuthCheck]:
        return [AuthCheck(site["service"], f"http://{_client_ip(site['address'])}:{site['port']}/",
                          site["internal_port"]) for site in sites]


def _host_ip(address: str) -> str:
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def _client_ip(address: str) -> str:
    """Where a check on the workstation reaches a published address."""
    if address in ("0.0.0.0", "", "*"):
        return "127.0.0.1"
    if address in ("::", "[::]"):
        return "[::1]"
    return _host_ip(address)
