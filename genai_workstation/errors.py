"""User-facing errors: which file, which field, what is wrong, how to fix it."""

from __future__ import annotations

from dataclasses import dataclass

# Problems printed at most: the first ones by line; the rest are counted.
MAX_SHOWN = 20


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the user's input."""

    field: str  # dotted path, e.g. hosts.ws1.stacks.comfyui.port
    message: str  # what is wrong
    hint: str = ""  # what is allowed / how to fix it
    line: int | None = None  # line in the file, when known

    def render(self, file: str) -> str:
        where = f"{file}:{self.line}" if self.line else file
        text = f"{where}: {self.field + ': ' if self.field else ''}{self.message}"
        if self.hint:
            text += f"\n    fix: {self.hint}"
        return text


class InventoryError(Exception):
    """The inventory (or a file it names) is invalid; nothing was contacted."""

    def __init__(self, file: str, problems: list[Problem]):
        self.file = file
        # Whole-file problems first (they explain the rest), then by line, as numbers.
        self.problems = sorted(problems, key=lambda p: (p.line is not None, p.line or 0))
        super().__init__(self.render())

    def render(self) -> str:
        count = len(self.problems)
        head = f"genai-workstation: the inventory is invalid ({count} problem{'s' * (count != 1)})"
        lines = [p.render(self.file) for p in self.problems[:MAX_SHOWN]]
        if count > MAX_SHOWN:
            lines.append(f"... and {count - MAX_SHOWN} more problems: fix the ones above first, "
                         "then run again")
        return f"{head}; no host was contacted.\n" + "\n".join(lines)
