"""Read a user's input file (inventory, models.yaml, secrets file) as text, or say why not.

Whatever the bytes, the answer is text or an InventoryError naming the file: too large (checked
before reading), not text at all, not UTF-8 (with the line), or unreadable.
"""

from __future__ import annotations

from pathlib import Path

from .errors import InventoryError, Problem

# An inventory of 200 hosts is ~40 KiB; 1 MiB leaves room and keeps YAML parsing instant.
MAX_BYTES = 1024 * 1024
_UTF8_FIX = ("save it as UTF-8 (e.g. in Notepad or VS Code: Save As / Save with Encoding, "
             "UTF-8)")


def read_text(path: Path, shown: str, what: str) -> str:
    """The file's text; raise InventoryError (naming `shown`) when it cannot be input."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise _error(shown, f"{_mib(size)} is too large for {what} (the limit is "
                                f"{_mib(MAX_BYTES)})",
                         f"check that this is the right file; {what} is a few kilobytes")
        with path.open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise _error(shown, f"cannot be read: {exc.strerror or exc}",
                     "check the path and its permissions") from None
    if b"\0" in data:
        raise _error(shown, f"is not a text file (it holds binary data), so it cannot be {what}",
                     "point at the YAML/text file you meant")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        byte = data[exc.start]
        raise InventoryError(shown, [Problem(
            "", f"is not UTF-8 text (byte 0x{byte:02x} on line {line}; probably saved as "
                "Windows-1252/ANSI)", _UTF8_FIX, line)]) from None


def _error(shown: str, message: str, hint: str) -> InventoryError:
    return InventoryError(shown, [Problem("", message, hint)])


def _mib(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MiB"
