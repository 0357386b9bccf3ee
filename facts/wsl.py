"""Facts about /etc/wsl.conf, and a line-preserving editor for it."""

from __future__ import annotations

import re

from pyinfra.api import FactBase

WSL_CONF = "/etc/wsl.conf"

_PRESENT = "@@genai:wsl.conf present"
_ABSENT = "@@genai:wsl.conf absent"

_SECTION = re.compile(r"^\s*\[\s*([^\]]*?)\s*\]\s*$")
_KEY = re.compile(r"^(\s*)([^=#;\[\s][^=]*?)(\s*=\s*)(.*?)(\s*)$")


def _is_comment(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped[0] in "#;"


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def parse_wsl_conf(raw: str) -> dict[str, dict[str, str]]:
    """INI sections of wsl.conf: names as written, values stripped and unquoted.

    Comments (``#``, ``;``) and blank lines are ignored; repeated sections merge, the last
    value of a key wins. Keys before any section go under ``""``.
    """
    sections: dict[str, dict[str, str]] = {}
    current = ""
    for line in raw.splitlines():
        if _is_comment(line):
            continue
        header = _SECTION.match(line)
        if header:
            current = header.group(1)
            sections.setdefault(current, {})
            continue
        match = _KEY.match(line)
        if match:
            sections.setdefault(current, {})[match.group(2)] = _unquote(match.group(4))
    return sections


def merge_wsl_conf(raw: str, section: str, key: str, value: str) -> str:
    """Set ``[section] key=value`` in wsl.conf text, leaving every other line untouched.

    Section and key names match case-insensitively. An existing key keeps its spelling,
    indentation and spacing around ``=``; a missing key is added after the section's last
    setting; a missing section is appended. Returns ``raw`` itself when already set.
    """
    value = str(value)
    lines = raw.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"

    current: str | None = None
    in_section = False
    key_lines: list[int] = []
    last_setting: int | None = None  # last line of the (last) matching section to insert after
    for number, line in enumerate(lines):
        body = line.rstrip("\r\n")
        header = _SECTION.match(body)
        if header:
            current = header.group(1)
            in_section = current.lower() == section.lower()
            if in_section:
                last_setting = number
            continue
        if not in_section or _is_comment(body):
            continue
        last_setting = number
        match = _KEY.match(body)
        if match and match.group(2).lower() == key.lower():
            key_lines.append(number)

    if key_lines:
        matches = [_KEY.match(lines[n].rstrip("\r\n")) for n in key_lines]
        if all(_unquote(m.group(4)) == value for m in matches):
            return raw
        for number, match in zip(key_lines, matches, strict=True):
            ending = lines[number][len(lines[number].rstrip("\r\n")) :]
            indent, name, equals, _, trailing = match.groups()
            lines[number] = f"{indent}{name}{equals}{value}{trailing}{ending}"
        return "".join(lines)

    setting = f"{key}={value}{newline}"
    if last_setting is not None:
        if not lines[last_setting].endswith(("\n", "\r")):
            lines[last_setting] += newline
        lines.insert(last_setting + 1, setting)
        return "".join(lines)

    text = "".join(lines)
    if text and not text.endswith("\n"):
        text += newline
    if text.strip():
        text += newline
    return f"{text}[{section}]{newline}{setting}"


class WslConf(FactBase):
    """
    Returns /etc/wsl.conf, raw and parsed as INI.

    .. code:: python

        {
            "exists": True,
            "sections": {"boot": {"systemd": "true"}, "automount": {"options": "metadata"}},
            "raw": "[boot]\\nsystemd=true\\n...",
        }
    """

    def command(self) -> str:
        return (
            f"if [ -f {WSL_CONF} ]; then echo '{_PRESENT}'; cat {WSL_CONF} 2>/dev/null; "
            f"else echo '{_ABSENT}'; fi; true"
        )

    @staticmethod
    def default():
        return {"exists": False, "sections": {}, "raw": ""}

    def process(self, output: list[str]):
        if not output or output[0] != _PRESENT:
            return self.default()
        raw = "\n".join(output[1:])
        if raw:
            raw += "\n"
        return {"exists": True, "sections": parse_wsl_conf(raw), "raw": raw}
