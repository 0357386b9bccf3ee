"""User-facing errors: which file, which field, what is wrong, how to fix it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the user's input."""

    field: str  # dotted path, e.g. hosts.ws1.stacks.comfyui.port
    message: str  # what is wrong
    hint: str = ""  # what is allowed / how to fix it
    line: int | None = None  # line in the file, when known

    def render(self, file: str) -> str:
        where = f"{file}:{self.line}" if self.line else file
        text = f"{where}: {self.field or '(top level)'}: {self.message}"
        if self.hint:
            text += f"\n    fix: {self.hint}"
        return text


class InventoryError(Exception):
    """The inventory (or a file it names) is invalid; nothing was contacted."""

    def __init__(self, file: str, problems: list[Problem]):
        self.file = file
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        count = len(self.problems)
        head = f"genai-workstation: the inventory is invalid ({count} problem{'s' * (count != 1)})"
        body = "\n".join(p.render(self.file) for p in self.problems)
        return f"{head}; no host was contacted.\n{body}"
