"""Findings: what verify and drift found, as data (host, item, expected, actual, fix)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

# kinds
CONFIG = "config"  # a converge would change this (pyinfra plan)
STATE = "state"  # the host's facts differ from the inventory
ERROR = "error"  # the check itself could not run (host unreachable, ...)
SKIPPED = "skipped"  # deliberately not checked (e.g. GPU checks with gpu.mode none)
# severities
CRITICAL = "critical"  # e.g. an exposed app answers without credentials


@dataclass(frozen=True)
class Finding:
    host: str
    item: str
    expected: str
    actual: str
    fix: str
    kind: str = STATE
    severity: str = ""  # CRITICAL, or "" for ordinary drift

    @property
    def is_drift(self) -> bool:
        return self.kind in (CONFIG, STATE)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Report:
    """Findings of one check over some hosts; `hosts` also lists hosts with nothing found."""

    hosts: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def add(self, finding: Finding) -> None:
        if finding.host not in self.hosts:
            self.hosts.append(finding.host)
        self.findings.append(finding)

    def for_host(self, host: str) -> list[Finding]:
        return [f for f in self.findings if f.host == host]

    @property
    def drift(self) -> list[Finding]:
        return [f for f in self.findings if f.is_drift]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.kind == ERROR]

    def exit_code(self) -> int:
        """As Terraform's -detailed-exitcode: 0 no drift, 2 drift, 1 error."""
        if self.errors:
            return 1
        return 2 if self.drift else 0

    def to_json(self) -> str:
        return json.dumps({"hosts": self.hosts, "exit_code": self.exit_code(),
                           "findings": [f.to_dict() for f in self.findings]}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> Report:
        data = json.loads(text)
        return cls(hosts=list(data["hosts"]),
                   findings=[Finding(**item) for item in data["findings"]])


def mode4(mode) -> str:
    """A permission mode as four octal digits ("0755", "0600", "0000"), from stat's %a text
    ("755", "0"), an int (0o755) or None ("unknown")."""
    if mode is None or mode == "":
        return "unknown"
    try:
        value = mode if isinstance(mode, int) else int(str(mode), 8)
    except ValueError:
        return str(mode)
    return f"{value:04o}"
