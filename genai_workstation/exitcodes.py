"""Exit codes shared by genai-drift and genai-models, and a parser that exits with them.

0 and 2 follow Terraform's `plan -detailed-exitcode` (what CI scripts already test); a usage
error is 64, EX_USAGE of BSD's sysexits(3), never 2 (argparse's default), so that a typo in a
CI job is not read as "drift found".
"""

from __future__ import annotations

import argparse
import sys

OK = 0  # ran; nothing found
ERROR = 1  # could not check or do it: host unreachable, invalid inventory, download failed
FOUND = 2  # ran; drift / problems found
USAGE = 64  # the command line is wrong: unknown option, bad value, unknown host


def epilog(found: str) -> str:
    """The exit-code table for a CLI's --help; `found` says what exit code 2 means for it."""
    return ("exit codes:\n"
            f"  {OK}   ok: nothing found\n"
            f"  {ERROR}   error: could not check (host unreachable, invalid inventory, ...)\n"
            f"  {FOUND}   {found}\n"
            f"  {USAGE}  usage error: unknown option, bad value or unknown host (never 2)")


class Parser(argparse.ArgumentParser):
    """argparse, exiting USAGE (not 2) on a usage error; subcommand parsers inherit it."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(USAGE, f"{self.prog}: error: {message}\n")


def usage_error(prog: str, message: str) -> int:
    """Print a usage error found after parsing (e.g. an unknown host); the code to exit."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return USAGE


def hosts_option(values: list[str] | None) -> list[str]:
    """Host names from repeated and comma-separated `--limit` values, in order, once each."""
    names = [part.strip() for value in values or [] for part in value.split(",")]
    return list(dict.fromkeys(name for name in names if name))
