"""Find credentials written into input files, anywhere in a value: never echo them.

Three shapes are refused: a token-shaped substring (Hugging Face, Civitai, GitHub, OpenAI-style
keys), a URL query parameter that carries a credential (`?token=`, `&sig=`, ...) and a
password in a URL's userinfo (`https://user:pass@host/`); plus a command-line option named like
a credential (`--hf-token=...`, `--gradio-auth user:pass`) in a list of arguments.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

from .errors import Problem
from .yamlmarks import join

_SECRETS_FILE = ("secrets.env next to the inventory (or the file $GENAI_SECRETS names; chmod 600, "
                 "git ignores it) or export it")
_DOWNLOAD = ("the model downloader sends it as an `Authorization: Bearer` header, only to "
             "that endpoint (never in a URL, never across a redirect)")
_CUSTOM = ("list {name} under this stack's `secrets:`: the template gets the path of a 0600 file "
           "holding it (`secrets.{name}`, for compose `secrets:`), never the value")
_APP = ("models are downloaded by `models:` entries with the token from the secrets file; an "
        "app's login is the stack's `auth:` (its password in the secrets file)")
# (pattern, what it looks like, the secret's usual name)
_TOKENS = (
    (re.compile(r"(?<![A-Za-z0-9])hf_[A-Za-z0-9]{20,}"), "a Hugging Face token", "HF_TOKEN"),
    (re.compile(r"(?<![0-9a-zA-Z])[0-9a-f]{32}(?![0-9a-zA-Z])"), "a Civitai API key",
     "CIVITAI_TOKEN"),
    (re.compile(r"(?<![A-Za-z0-9])(ghp|gho|github_pat)_[A-Za-z0-9_]{20,}"), "a GitHub token",
     "GITHUB_TOKEN"),
    (re.compile(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_-]{20,}"), "an API key", "API_KEY"),
)
# Query parameter / option names that carry a credential: these words anywhere in the name
# (`access_token`, `X-Amz-Signature`, `AccessToken`), or exactly these short ones.
_CREDENTIAL_WORDS = ("token", "password", "passwd", "secret", "signature", "apikey",
                     "credential")
_CREDENTIAL_NAMES = {"key", "sig", "auth", "pass", "pwd"}
_CREDENTIAL_SUFFIXES = ("_key", "_auth", "_sig", "_pass", "_pwd")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_OPTION = re.compile(r"^--?([A-Za-z][A-Za-z0-9_-]*)(=(.*))?$", re.S)


def credential_problems(value, marks: dict, path: str = "") -> list[Problem]:
    """Every string (and key) in `value` that carries a credential, one problem per field."""
    seen: set[str] = set()
    return [p for p in _walk(value, marks, path) if not (p.field in seen or seen.add(p.field))]


def _walk(value, marks: dict, path: str) -> list[Problem]:
    problems = []
    if isinstance(value, dict):
        for key, item in value.items():
            problems += _string_problems(str(key), join(path, key), marks)
            problems += _walk(item, marks, join(path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            problems += _walk(item, marks, join(path, index))
        problems += _option_problems(value, marks, path)
    elif isinstance(value, str):
        problems += _string_problems(value, path, marks)
    return problems


def looks_secret(value) -> bool:
    """True when printing `value` could show a credential."""
    return isinstance(value, str) and bool(_string_problems(value, "", {}))


def is_credential_name(name: str) -> bool:
    name = name.lower().replace("-", "_")
    return (name in _CREDENTIAL_NAMES or name.endswith(_CREDENTIAL_SUFFIXES)
            or any(word in name.replace("_", "") for word in _CREDENTIAL_WORDS))


def _string_problems(text: str, path: str, marks: dict) -> list[Problem]:
    line = marks.get(path)
    for url in _URL.findall(text):
        problem = _url_problem(url, path, line)
        if problem:
            return [problem]
    for pattern, what, name in _TOKENS:
        if pattern.search(text):
            return [Problem(path, f"holds what looks like {what}; secrets never go in this file "
                                  "(it is meant to be committed and is printed by pyinfra)",
                            f"remove it and put {name}=<value> in {_SECRETS_FILE}: "
                            f"{_use(path, name)}", line)]
    return []


def _use(path: str, name: str) -> str:
    """How the secret reaches what needs it, from where it was written."""
    if ".custom." in f".{path}.":
        return _CUSTOM.format(name=name)
    if "extra_args" in path:
        return _APP
    if name in ("HF_TOKEN", "CIVITAI_TOKEN"):
        return _DOWNLOAD
    return "name it where the feature asks for a secret (a stack's `auth.secret` or `secrets:`)"


def _url_problem(url: str, path: str, line: int | None) -> Problem | None:
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return None
    host = parts.hostname or "the host"
    if password is not None:
        return Problem(path, f"the URL carries a user name and password (user:...@{host})",
                       "remove `user:password@` from the URL; for a private mirror or index, "
                       "give the machine access another way (e.g. a netrc file or the mirror's "
                       "own access control): credentials in a URL end up in logs and images",
                       line)
    names = [name for name, _ in parse_qsl(parts.query, keep_blank_values=False)
             if is_credential_name(name)]
    if not names:
        return None
    secret, use = _secret_for_host(host)
    return Problem(path, f"the URL carries a credential in its query ({names[0]}=...)",
                   f"remove `{names[0]}=...` from the URL and put {secret}=<value> in "
                   f"{_SECRETS_FILE}: {use}", line)


def _secret_for_host(host: str) -> tuple[str, str]:
    if "civitai" in host:
        return "CIVITAI_TOKEN", (f"{_DOWNLOAD}; or write the model as `civitai: <model version "
                                 "id>`")
    if "huggingface" in host or host.startswith("hf."):
        return "HF_TOKEN", _DOWNLOAD
    return ("CIVITAI_TOKEN or HF_TOKEN", f"for a mirror set in model_endpoints, {_DOWNLOAD}; "
            "a signed URL expires, so point at a stable one")


def _option_problems(items: list, marks: dict, path: str) -> list[Problem]:
    """`--name=value` or `--name value` where the option names a credential."""
    problems = []
    for index, item in enumerate(items):
        match = _OPTION.match(item) if isinstance(item, str) else None
        if not match or not is_credential_name(match.group(1)):
            continue
        has_value = match.group(3) if match.group(2) else (
            index + 1 < len(items) and not str(items[index + 1]).startswith("-"))
        if has_value:
            field = join(path, index if match.group(2) else index + 1)
            problems.append(Problem(
                field, f"passes a credential on the command line (--{match.group(1)})",
                "remove the option and its value: a command line shows in `ps`, logs and "
                "pyinfra output; for the app's login use the stack's `auth:` (the password in "
                "inventory/secrets.env); a custom stack lists the secret's name under `secrets:`",
                marks.get(field)))
    return problems
