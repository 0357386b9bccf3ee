"""What an import carried over, changed on purpose, or could not carry, and why."""

from __future__ import annotations

from dataclasses import dataclass

CARRIED = "carried"
CHANGED = "changed"
NOT_CARRIED = "not carried"


@dataclass(frozen=True)
class Note:
    """One line of the import report. Never holds a secret value, only names."""

    service: str  # compose service, custom node folder, or "" for the whole file
    item: str  # what: "ports", "command: --gradio-auth", "volume /mnt/d/models"
    kind: str  # CARRIED | CHANGED | NOT_CARRIED
    reason: str  # why
    fix: str = ""  # what the user does about it, when anything

    def render(self) -> str:
        where = f"{self.service}: " if self.service else ""
        text = f"[{self.kind}] {where}{self.item}: {self.reason}"
        return text + (f"\n    -> {self.fix}" if self.fix else "")


def report(notes: list[Note]) -> str:
    """Notes grouped by kind, the ones that need the user's attention first."""
    order = (NOT_CARRIED, CHANGED, CARRIED)
    lines = []
    for kind in order:
        group = [note for note in notes if note.kind == kind]
        if group:
            lines.append(f"{kind.upper()} ({len(group)})")
            lines.extend("  " + note.render().replace("\n", "\n  ") for note in group)
    return "\n".join(lines)
