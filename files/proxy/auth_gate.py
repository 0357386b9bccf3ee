"""Login gate behind the stack's Caddy proxy: a login page and session cookie for browsers,
`Authorization: Bearer` and basic auth for API clients, on the same port.

Rendered by genai-workstation (files/proxy/auth_gate.py) and run with the app image's Python,
standard library only. Caddy asks it about every request (`forward_auth`, GET /genai-check)
and sends it the login page's requests (/genai-login). The credentials come from a 0600 JSON
file (a compose secret): {"username", "password" or "password_hash" (bcrypt, as ComfyUI-Login
stores it), "token" or "token_file", "session_hours"}. Nothing secret is ever logged.
"""

import base64
import ctypes
import ctypes.util
import hashlib
import hmac
import html
import json
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COOKIE = "genai_session"
LOGIN_PATH = "/genai-login"
PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title} - sign in</title>
<meta name="viewport" content="width=device-width,initial-scale=1"><style>
body{{font-family:sans-serif;background:#1e1e1e;color:#eee;display:flex;justify-content:center;
margin-top:15vh}}form{{background:#2b2b2b;padding:2em;border-radius:8px;min-width:18em}}
input{{display:block;width:100%;margin:.4em 0 1em;padding:.5em;box-sizing:border-box}}
.error{{color:#f77}}</style></head><body><form method="post" action="{action}">
<h2>{title}</h2>{error}<label>User<input name="username" autocomplete="username"
value="{username}" required></label><label>Password<input name="password" type="password"
autocomplete="current-password" required></label><input type="hidden" name="next"
value="{next}"><button type="submit">Sign in</button></form></body></html>"""


def _load(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _bcrypt_matches(password: str, hashed: str) -> bool:
    """bcrypt through the C library's crypt() (libxcrypt on Debian/Ubuntu knows $2b$)."""
    name = ctypes.util.find_library("crypt") or "libcrypt.so.1"
    try:
        crypt = ctypes.CDLL(name).crypt
    except OSError:
        return False
    crypt.restype = ctypes.c_char_p
    crypt.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
    result = crypt(password.encode(), hashed.encode())
    return bool(result) and hmac.compare_digest(result, hashed.encode())


class Gate:
    def __init__(self, config: dict, title: str):
        self.config = config
        self.title = title
        seed = json.dumps(config, sort_keys=True).encode()
        # Sessions survive a restart of the gate and end when the credentials change.
        self.key = hashlib.sha256(b"genai-session\0" + seed).digest()
        self.lifetime = int(config.get("session_hours", 12)) * 3600

    def password_ok(self, username: str, password: str) -> bool:
        if not hmac.compare_digest(username.encode(), self.config["username"].encode()):
            return False
        if self.config.get("password_hash"):
            return _bcrypt_matches(password, self.config["password_hash"])
        return hmac.compare_digest(password.encode(), self.config["password"].encode())

    def token(self) -> str:
        if self.config.get("token_file"):
            try:
                with open(self.config["token_file"], encoding="utf-8") as handle:
                    return handle.readline().strip()
            except OSError:
                return ""
        return self.config.get("token") or self.config.get("password_hash") or ""

    def authorized(self, headers) -> bool:
        header = headers.get("Authorization", "")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() == "bearer" and credential:
            token = self.token()
            return bool(token) and hmac.compare_digest(credential.strip().encode(),
                                                       token.encode())
        if scheme.lower() == "basic" and credential:
            try:
                decoded = base64.b64decode(credential.strip(), validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                return False
            username, _, password = decoded.partition(":")
            return self.password_ok(username, password)
        return self.session_ok(headers.get("Cookie", ""))

    def session(self) -> str:
        expiry = str(int(time.time()) + self.lifetime)
        signature = hmac.new(self.key, expiry.encode(), hashlib.sha256).hexdigest()
        return f"{expiry}.{signature}"

    def session_ok(self, cookie_header: str) -> bool:
        for part in cookie_header.split(";"):
            name, _, value = part.strip().partition("=")
            if name != COOKIE:
                continue
            expiry, _, signature = value.partition(".")
            wanted = hmac.new(self.key, expiry.encode(), hashlib.sha256).hexdigest()
            if expiry.isdigit() and int(expiry) > time.time() and \
                    hmac.compare_digest(signature.encode(), wanted.encode()):
                return True
        return False


def _safe_next(target: str) -> str:
    """Only a path on this site: never an open redirect."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


class Handler(BaseHTTPRequestHandler):
    gate: Gate

    def log_message(self, *args):  # requests are logged by Caddy, without credentials
        pass

    def do_GET(self):  # noqa: N802 - http.server's naming
        path = urllib.parse.urlsplit(self.path).path
        if path == "/genai-check":
            return self.check()
        if path == LOGIN_PATH:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            return self.page(next_path=_safe_next(query.get("next", ["/"])[0]))
        if path == LOGIN_PATH + "/logout":
            self.send_response(303)
            self.send_header("Set-Cookie", f"{COOKIE}=; Path=/; Max-Age=0; HttpOnly")
            self.send_header("Location", LOGIN_PATH)
            return self.end_headers()
        self.send_error(404)

    def do_POST(self):  # noqa: N802
        if urllib.parse.urlsplit(self.path).path != LOGIN_PATH:
            return self.send_error(404)
        length = min(int(self.headers.get("Content-Length") or 0), 16384)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
        username = form.get("username", [""])[0]
        next_path = _safe_next(form.get("next", ["/"])[0])
        if not self.gate.password_ok(username, form.get("password", [""])[0]):
            time.sleep(0.5)  # slows down guessing
            return self.page(next_path, error="Wrong user or password.", username=username,
                             status=401)
        self.send_response(303)
        self.send_header("Set-Cookie", f"{COOKIE}={self.gate.session()}; Path=/; HttpOnly; "
                                       f"SameSite=Lax; Max-Age={self.gate.lifetime}")
        self.send_header("Location", next_path)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def check(self):
        if self.gate.authorized(self.headers):
            self.send_response(200)
            self.send_header("Content-Length", "0")
            return self.end_headers()
        original = self.headers.get("X-Forwarded-Uri", "/")
        if "text/html" in self.headers.get("Accept", ""):
            self.send_response(302)
            target = urllib.parse.quote(_safe_next(original), safe="/")
            self.send_header("Location", f"{LOGIN_PATH}?next={target}")
            self.send_header("Content-Length", "0")
            return self.end_headers()
        body = b'{"error": "authentication required"}'
        self.send_response(401)
        self.send_header("WWW-Authenticate", f'Bearer realm="{self.gate.title}"')
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def page(self, next_path: str, error: str = "", username: str = "", status: int = 200):
        body = PAGE.format(title=html.escape(self.gate.title), action=LOGIN_PATH,
                           error=f'<p class="error">{html.escape(error)}</p>' if error else "",
                           username=html.escape(username), next=html.escape(next_path)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    config_path, port, title = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    Handler.gate = Gate(_load(config_path), title)
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True
    print(f"auth gate for {title} on :{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
