"""Read several facts in one remote command: one round trip instead of one per fact."""

from __future__ import annotations

import re

from pyinfra import host
from pyinfra.api import StringCommand
from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS, pop_global_arguments

_START = "@@genai:fact"
_END = "@@genai:fact-rc"
_END_LINE = re.compile(rf"^{_END} (\d+) (\d+)$")


class FactReadError(RuntimeError):
    """A fact's command failed on the host."""


def batch_command(facts: list[tuple[object, dict]]) -> str:
    """The shell command that runs every fact's command in its own subshell, each framed by
    marker lines carrying its position and exit status."""
    parts = []
    for index, (fact, kwargs) in enumerate(facts):
        command = _attribute(fact.command, kwargs)
        if isinstance(command, StringCommand):
            command = command.get_raw_value()
        required = _attribute(getattr(fact, "requires_command", None), kwargs)
        if required:
            command = (f"if command -v {required} >/dev/null 2>&1; then ( {command} ); "
                       f"else exit 127; fi")
        # the end marker on a line of its own, also after output with no final newline
        parts.append(f"echo '{_START} {index}'; ( {command}\n); "
                     f"printf '\\n{_END} {index} %s\\n' $?")
    return "\n".join(parts)


def _attribute(value, kwargs: dict):
    """A fact's command or required command: a method taking the fact's arguments, or a
    plain value (as pyinfra accepts both)."""
    return value(**kwargs) if callable(value) else value


def split_output(lines: list[str], count: int) -> dict[int, tuple[int, list[str]]]:
    """{index: (exit status, output lines)} from the framed output of `batch_command`."""
    parts: dict[int, tuple[int, list[str]]] = {}
    current: list[str] | None = None
    for line in lines:
        end = _END_LINE.match(line)
        if line.startswith(f"{_START} ") and line[len(_START) + 1:].isdigit():
            current = []
        elif end and current is not None:
            if current and current[-1] == "":
                current.pop()  # the newline printed before the end marker
            parts[int(end[1])] = (int(end[2]), current)
            current = None
        elif current is not None:
            current.append(line)
    return {index: parts[index] for index in range(count) if index in parts}


def _executor_arguments() -> dict:
    """How pyinfra would run a fact's command now: --sudo, --su-user, ... of the CLI and
    the current operation (as pyinfra's own get_fact does)."""
    current = dict(host.current_op_global_arguments or {})
    global_arguments, _ = pop_global_arguments(host.state, host, current)
    return {key: value for key, value in global_arguments.items()
            if key in CONNECTOR_ARGUMENT_KEYS}


def read_facts(specs: list[tuple[type, dict]]) -> list:
    """``[host.get_fact(cls, **kwargs) for cls, kwargs in specs]`` in one remote command.

    Only for facts read together at one moment (nothing changes the host between them). A
    fact whose command fails raises FactReadError; one whose required command is missing
    gets its default.
    """
    facts = [(cls(), dict(kwargs)) for cls, kwargs in specs]
    _status, output = host.run_shell_command(
        StringCommand(batch_command(facts)), print_output=False, print_input=False,
        **_executor_arguments(),
    )
    parts = split_output(output.stdout_lines, len(facts))
    values = []
    for index, (fact, _kwargs) in enumerate(facts):
        name = type(fact).__name__
        if index not in parts:
            raise FactReadError(
                f"fact {name}: no answer from the host "
                f"({' '.join(output.stderr_lines[-3:]) or 'the command was cut short'})"
            )
        code, lines = parts[index]
        if code == 127:
            values.append(fact.default())
        elif code != 0:
            raise FactReadError(f"fact {name}: its command exited {code}")
        else:
            values.append(fact.process(lines) if lines else fact.default())
    return values
