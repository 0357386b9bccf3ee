"""`auth: {type: login}`: a browser's login page and cookie, and API clients' bearer and basic
credentials, on one port. Real parts: the rendered Caddyfile run by Debian's caddy, the
rendered login gate (files/proxy/auth_gate.py) run by Python with its rendered 0600 secret, an
HTTP upstream on loopback standing for the app, and a client that behaves like a browser
(follows the redirect, posts the form, keeps the cookie)."""

from __future__ import annotations

import base64
import http.client
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import bcrypt
import pytest
import yaml

from genai_workstation.stacks import StackError, render_stack
from tests.test_stacks_render import ALL_GPUS, COMFY, RESOLVED, load, write

pytestmark = pytest.mark.skipif(not shutil.which("caddy"),
                                reason="caddy not installed (Debian: apt-get install caddy)")
TOKEN = "nb-token-" + "7f3a9c1e5b2d4f6a8c0e"
PASSWORD = "browser pass #1"


class _App(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = b"the app"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET  # noqa: N815

    def log_message(self, *args):
        pass


def _port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(port: int, process: subprocess.Popen) -> None:
    deadline = time.time() + 20
    while True:
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=2).connect()
            return
        except OSError:
            assert process.poll() is None, process.stderr.read().decode()
            assert time.time() < deadline, f"nothing listens on {port}"
            time.sleep(0.1)


@pytest.fixture
def login_site(tmp_path):
    """Start app, gate and Caddy for an inventory body; yield request(method, path, ...)."""
    processes, servers = [], []

    def start(body: str, secrets: str, extra_files: dict | None = None):
        for path, text in (extra_files or {}).items():
            Path(path).write_text(text)
        data = load(tmp_path, body, secrets)
        stack = render_stack("comfyui", data, RESOLVED, all_gpus=ALL_GPUS)
        folder = write(stack, tmp_path / "stack")
        assert (folder / "secrets/proxy_auth_comfyui").stat().st_mode & 0o777 == 0o600
        app = ThreadingHTTPServer(("127.0.0.1", 0), _App)
        servers.append(app)
        threading.Thread(target=app.serve_forever, daemon=True).start()
        gate_port, proxy_port = _port(), _port()
        config = folder / "secrets/proxy_auth_comfyui"
        token_file = data["stacks"]["comfyui"]["auth"].get("token_file")
        if token_file:  # the gate reads it at its mount point; here, at its host path
            config.write_text(config.read_text().replace("/run/genai/token", token_file))
        gate = subprocess.Popen([sys.executable, str(folder / "proxy/auth_gate.py"), str(config),
                                 str(gate_port), "comfyui"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        processes.append(gate)
        caddyfile = stack.files["proxy/Caddyfile"].content
        caddyfile = caddyfile.replace("auth-comfyui:9091", f"127.0.0.1:{gate_port}")
        caddyfile = caddyfile.replace("comfyui:8188", f"127.0.0.1:{app.server_port}")
        caddyfile = caddyfile.replace("http://:8080 {", f"http://127.0.0.1:{proxy_port} {{")
        (folder / "Caddyfile.local").write_text(caddyfile)
        env = {"XDG_CONFIG_HOME": str(tmp_path / "c"), "XDG_DATA_HOME": str(tmp_path / "d"),
               "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
        caddy = subprocess.Popen(["caddy", "run", "--config", str(folder / "Caddyfile.local"),
                                  "--adapter", "caddyfile"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, env=env)
        processes.append(caddy)
        _wait(gate_port, gate)
        _wait(proxy_port, caddy)
        return stack, proxy_port, gate

    def request(port, method, path, headers=None, body=None):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read().decode()

    yield start, request
    for process in processes:
        process.terminate()
        process.wait(timeout=10)
    for server in servers:
        server.shutdown()


LOGIN = COMFY + """
        expose: {address: 0.0.0.0, port: 8443}
        auth: {type: login, username: jesse, secret: COMFYUI_AUTH, token_secret: COMFYUI_TOKEN}
"""


def _basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_browser_logs_in_and_api_clients_use_bearer_or_basic(login_site):
    start, request = login_site
    stack, port, gate = start(LOGIN, f"COMFYUI_AUTH={PASSWORD!r}\nCOMFYUI_TOKEN={TOKEN}\n")
    assert "auth-comfyui" in stack.services or "proxy" in stack.services
    browser = {"Accept": "text/html,application/xhtml+xml"}
    # A browser is sent to the login page, which shows a form.
    status, headers, _ = request(port, "GET", "/queue", browser)
    assert status == 302 and headers["Location"] == "/genai-login?next=/queue"
    status, _, page = request(port, "GET", headers["Location"], browser)
    assert status == 200 and '<form method="post"' in page and 'name="password"' in page
    # A wrong password: the form again, no cookie.
    form = urllib.parse.urlencode({"username": "jesse", "password": "nope", "next": "/queue"})
    form_headers = {**browser, "Content-Type": "application/x-www-form-urlencoded"}
    status, headers, page = request(port, "POST", "/genai-login", form_headers, form)
    assert status == 401 and headers["Set-Cookie"] is None and "Wrong user or password" in page
    # The right one: a session cookie and back where the browser was going.
    form = urllib.parse.urlencode({"username": "jesse", "password": PASSWORD, "next": "/queue"})
    status, headers, _ = request(port, "POST", "/genai-login", form_headers, form)
    assert status == 303 and headers["Location"] == "/queue"
    cookie = headers["Set-Cookie"].split(";")[0]
    assert "HttpOnly" in headers["Set-Cookie"]
    assert request(port, "GET", "/queue", {**browser, "Cookie": cookie})[:1] == (200,)
    assert request(port, "GET", "/", {"Cookie": cookie})[2] == "the app"
    forged = cookie[:-4] + ("0000" if not cookie.endswith("0000") else "1111")
    assert request(port, "GET", "/queue", {"Cookie": forged})[0] == 401
    # API clients: bearer token or basic with the same user and password; nothing else.
    assert request(port, "GET", "/queue")[0] == 401
    status, headers, body = request(port, "POST", "/prompt", {"Accept": "application/json"})
    assert status == 401 and "Bearer" in headers["WWW-Authenticate"] and "required" in body
    assert request(port, "POST", "/prompt", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert request(port, "GET", "/queue", {"Authorization": f"Bearer {TOKEN}x"})[0] == 401
    assert request(port, "GET", "/queue", {"Authorization": _basic("jesse", PASSWORD)})[0] == 200
    assert request(port, "GET", "/queue", {"Authorization": _basic("root", PASSWORD)})[0] == 401
    # Never an open redirect; nothing secret in the gate's output.
    evil = urllib.parse.urlencode({"username": "jesse", "password": PASSWORD,
                                   "next": "//evil.example/"})
    assert request(port, "POST", "/genai-login", form_headers, evil)[1]["Location"] == "/"
    gate.terminate()
    output = b"".join(gate.communicate(timeout=10)).decode()
    assert PASSWORD not in output and TOKEN not in output


def test_comfyui_login_password_file_keeps_working(login_site, tmp_path):
    """A ComfyUI-Login user's login/PASSWORD line (a bcrypt hash) is the secret as it is:
    browsers sign in with the password, notebooks keep sending `Bearer <the hash>`."""
    start, request = login_site
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    body = COMFY + """
        expose: {address: 0.0.0.0}
        auth: {type: login, username: jesse}
"""
    _, port, _ = start(body, f"COMFYUI_AUTH='{hashed}'\n")
    form = urllib.parse.urlencode({"username": "jesse", "password": PASSWORD})
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    status, response_headers, _ = request(port, "POST", "/genai-login", headers, form)
    assert status == 303 and "genai_session=" in response_headers["Set-Cookie"]
    assert request(port, "GET", "/queue", {"Authorization": f"Bearer {hashed}"})[0] == 200
    assert request(port, "GET", "/queue", {"Authorization": _basic("jesse", PASSWORD)})[0] == 200
    assert request(port, "GET", "/queue", {"Authorization": _basic("jesse", hashed)})[0] == 401


def test_token_file_on_the_workstation(login_site, tmp_path):
    start, request = login_site
    token_file = tmp_path / "PASSWORD"
    body = COMFY + f"""
        expose: {{address: 0.0.0.0}}
        auth: {{type: login, username: jesse, token_file: {token_file}}}
"""
    stack, port, _ = start(body, f"COMFYUI_AUTH={PASSWORD!r}\n", {token_file: TOKEN + "\n"})
    gate = yaml.safe_load(stack.files["compose.yaml"].content)["services"]["auth-comfyui"]
    assert {"type": "bind", "source": str(token_file), "target": "/run/genai/token",
            "read_only": True} in gate["volumes"]
    assert request(port, "GET", "/queue", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    token_file.write_text("rotated-token-0123456789\n")  # read per request: no restart
    assert request(port, "GET", "/queue", {"Authorization": f"Bearer {TOKEN}"})[0] == 401
    assert request(port, "GET", "/queue",
                   {"Authorization": "Bearer rotated-token-0123456789"})[0] == 200


def test_login_secrets_stay_in_the_secret_file(tmp_path):
    data = load(tmp_path, LOGIN, f"COMFYUI_AUTH={PASSWORD!r}\nCOMFYUI_TOKEN={TOKEN}\n")
    stack = render_stack("comfyui", data, RESOLVED, all_gpus=ALL_GPUS)
    for path, rendered in stack.files.items():
        text = rendered.data().decode(errors="replace")
        if path == "secrets/proxy_auth_comfyui":
            assert rendered.mode == 0o600 and TOKEN in text
        else:
            assert TOKEN not in text and PASSWORD not in text, path
    half_hash = "$2b$12$" + "a" * 20
    with pytest.raises(StackError, match="not a whole one"):
        render_stack("comfyui", load(tmp_path, LOGIN, f"COMFYUI_AUTH='{half_hash}'\n"
                                     f"COMFYUI_TOKEN={TOKEN}\n"), RESOLVED, all_gpus=ALL_GPUS)


def test_login_gate_service_passes_compose_config(tmp_path):
    from tests.test_stacks_render import compose_config

    data = load(tmp_path, LOGIN, f"COMFYUI_AUTH={PASSWORD!r}\nCOMFYUI_TOKEN={TOKEN}\n")
    stack = render_stack("comfyui", data, RESOLVED, all_gpus=ALL_GPUS)
    config = compose_config(write(stack, tmp_path / "stack"))
    gate = config["services"]["auth-comfyui"]
    assert gate["entrypoint"] == ["python", "/opt/genai/auth_gate.py"]
    assert gate["read_only"] is True and gate["user"] == "1000:1000"
    assert [s["source"] for s in gate["secrets"]] == ["proxy_auth_comfyui"]
    assert "ports" not in gate and "ports" not in config["services"]["comfyui"]
    assert "auth-comfyui" in config["services"]["proxy"]["depends_on"]
    assert not config["services"]["proxy"].get("secrets")  # Caddy holds no credential
