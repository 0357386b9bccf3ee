"""Errors of stack rendering: what is wrong and how to fix it, never a secret value."""

from __future__ import annotations


class StackError(ValueError):
    """A stack cannot be rendered from the host's settings."""

    def __init__(self, message: str, hint: str = ""):
        self.message = message
        self.hint = hint
        super().__init__(f"{message}\n    fix: {hint}" if hint else message)
