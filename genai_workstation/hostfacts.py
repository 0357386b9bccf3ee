"""Reading the current host's facts: several in one command, ahead, and once where that is safe.

pyinfra 3 keeps no fact cache: every ``host.get_fact`` is a remote command (3.x's
``pyinfra.api.facts.get_fact`` has no ``use_cache`` any more). With ``-y`` it runs each
operation's generator again when executing, so a check the workstation step evaluates while
preparing (to refuse a host before anything changes) would read its facts twice. This module
is the one place that reads facts other than one by one, and the one place that keeps state
for a host during a run. Its public API:

- ``fact(cls, **kwargs)``: ``host.get_fact``, answered from what this run read already (see
  ``prefetch``) while no operation has changed the host since; read now otherwise.
- ``read_once(cls, **kwargs)``: read once per host and run: facts no run changes (platform).
- ``prefetch(specs)``: read these facts now, in one remote command, for the ``fact`` calls to
  come (a batch that cannot be read is left to them).
- ``read_together(specs)``: the values of these facts, read in one remote command.
- ``in_parallel(*calls)``: run calls that read facts at once on the host's one connection.
- ``read_only_run()``: from now on nothing changes this host (genai-drift: prepared, never
  executed), so every fact read through ``fact``/``prefetch``/``read_together`` is kept;
  ``run_memo(name)`` / ``read_only_memo(name)``: a dict kept for the host (in a read-only run).
- ``noop(description)`` / ``passed_at_prepare()``: an operation that found nothing to do while
  the run was prepared is not evaluated again when it executes.

Per-host state lives in ``_RUNS``, a WeakKeyDictionary keyed by pyinfra's Host object (the
real one behind the ``pyinfra.host`` context proxy): it ends with its host, and nothing is set
on pyinfra's objects. Not in ``host.data``: that is the inventory's data (assigning to it
writes pyinfra's override data), which deploys and reports read back. The pyinfra APIs used
here, and why: docs/pyinfra-internals.md.
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass, field

from pyinfra import host
from pyinfra.api import StringCommand
from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS, pop_global_arguments
from pyinfra.context import ctx_config, ctx_host

_START = "@@genai:fact"
_END = "@@genai:fact-rc"
_END_LINE = re.compile(rf"^{_END} (\d+) (\d+)$")


class FactReadError(RuntimeError):
    """A fact's command failed on the host."""


@dataclass
class _HostRun:
    read: dict = field(default_factory=dict)  # facts read ahead (or, read-only: every read)
    once: dict = field(default_factory=dict)  # read_once
    passed: dict = field(default_factory=dict)  # op hash -> noop reason found at prepare
    memos: dict = field(default_factory=dict)  # run_memo
    read_only: bool = False


_RUNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _run() -> _HostRun:
    """The current host's record (created on first use)."""
    current = ctx_host.get()
    record = _RUNS.get(current)
    if record is None:
        record = _RUNS[current] = _HostRun()
    return record


def _key(fact_cls, kwargs: dict):
    return (fact_cls, repr(sorted(kwargs.items())))


# ---------------------------------------------------------------------------- one command
def batch_command(facts: list[tuple[object, dict]]) -> str:
    """The shell command that runs every fact's command in its own subshell, each framed by
    marker lines carrying its position and exit status."""
    parts = []
    for index, (fact_obj, kwargs) in enumerate(facts):
        command = _attribute(fact_obj.command, kwargs)
        if isinstance(command, StringCommand):
            command = command.get_raw_value()
        required = _attribute(getattr(fact_obj, "requires_command", None), kwargs)
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


def executor_arguments() -> dict:
    """How pyinfra would run a fact's command now: --sudo, --su-user, ... of the CLI and
    the current operation (as pyinfra's own get_fact does)."""
    current = dict(host.current_op_global_arguments or {})
    global_arguments, _ = pop_global_arguments(host.state, host, current)
    return {key: value for key, value in global_arguments.items()
            if key in CONNECTOR_ARGUMENT_KEYS}


def _read_batch(specs: list[tuple[type, dict]]) -> list:
    """``[host.get_fact(cls, **kwargs) for cls, kwargs in specs]`` in one remote command. A
    fact whose command fails raises FactReadError; one whose required command is missing
    gets its default."""
    facts = [(cls(), dict(kwargs)) for cls, kwargs in specs]
    _status, output = host.run_shell_command(
        StringCommand(batch_command(facts)), print_output=False, print_input=False,
        **executor_arguments(),
    )
    parts = split_output(output.stdout_lines, len(facts))
    values = []
    for index, (fact_obj, _kwargs) in enumerate(facts):
        name = type(fact_obj).__name__
        if index not in parts:
            raise FactReadError(
                f"fact {name}: no answer from the host "
                f"({' '.join(output.stderr_lines[-3:]) or 'the command was cut short'})"
            )
        code, lines = parts[index]
        if code == 127:
            values.append(fact_obj.default())
        elif code != 0:
            raise FactReadError(f"fact {name}: its command exited {code}")
        else:
            values.append(fact_obj.process(lines) if lines else fact_obj.default())
    return values


# ---------------------------------------------------------------------------- read ahead
def read_together(specs: list[tuple[type, dict]]) -> list:
    """The values of these facts, read in one remote command; only for facts read together
    at one moment (nothing changes the host between them). In a read-only run only those not
    read yet are read (still in one command); the others are answered from memory."""
    run = _run()
    if not run.read_only:
        return _read_batch(specs)
    missing = {_key(cls, kwargs): (cls, kwargs) for cls, kwargs in specs
               if _key(cls, kwargs) not in run.read}
    if missing:
        run.read.update(zip(missing, _read_batch(list(missing.values())), strict=True))
    return [run.read[_key(cls, kwargs)] for cls, kwargs in specs]


def prefetch(specs: list[tuple[type, dict]]) -> None:
    """Read these facts now, in one remote command, for the `fact` calls that will ask for
    them. Call while the run is prepared, with the exact arguments the operations use. If the
    batch cannot be read, the operations simply read their facts themselves."""
    run = _run()
    try:
        values = read_together(specs)
    except FactReadError:
        return
    run.read.update(zip((_key(cls, kwargs) for cls, kwargs in specs), values, strict=True))


def fact(fact_cls, **kwargs):
    """``host.get_fact``, answered from this run's earlier reads while nothing has changed
    the host since them, read now otherwise (and kept, in a read-only run)."""
    run = _run()
    key = _key(fact_cls, kwargs)
    if key in run.read and not _host_changed_since_prepare():
        return run.read[key]
    value = host.get_fact(fact_cls, **kwargs)
    if run.read_only:
        run.read[key] = value
    return value


def read_once(fact_cls, **kwargs):
    """``host.get_fact``, read once per host and run: only for facts no operation changes
    during the run (the platform: kernel, distribution, architecture, init)."""
    once = _run().once
    key = _key(fact_cls, kwargs)
    if key not in once:
        once[key] = fact(fact_cls, **kwargs)
    return once[key]


def in_parallel(*calls) -> list:
    """Run these calls at once, each in a greenlet with the current host and config (their
    remote commands overlap on the host's one SSH connection); their results, in order."""
    import gevent

    current_host, config = ctx_host.get(), ctx_config.get()

    def run(call):
        with ctx_host.use(current_host), ctx_config.use(config):
            return call()

    greenlets = [gevent.spawn(run, call) for call in calls]
    gevent.joinall(greenlets, raise_error=True)
    return [greenlet.value for greenlet in greenlets]


# ---------------------------------------------------------------------------- the run
def read_only_run() -> None:
    """Declare the current host's run read-only: prepared, never executed (genai-drift).
    Nothing changes the host until the run ends, so from now on every fact read through
    this module is read once."""
    _run().read_only = True


def run_memo(name: str) -> dict:
    """A dict kept for the current host during this run, e.g. an operation to come back to."""
    return _run().memos.setdefault(name, {})


def read_only_memo(name: str) -> dict | None:
    """`run_memo(name)` while the host's run is read-only, else None: for results derived
    from host data and facts alone, e.g. a rendered stack."""
    return run_memo(name) if _run().read_only else None


def _executing() -> bool:
    return bool(getattr(host.state, "is_executing", False))  # pyinfra_testing's state has none


def _host_changed_since_prepare() -> bool:
    """While executing: whether an operation before the current one ran a command on this
    host (then what was read while preparing may be out of date)."""
    if not _executing():
        return False  # nothing has run on the host yet
    current = host.current_op_hash
    for op_hash in host.state.get_op_order():
        if op_hash == current:
            return False
        try:
            op_data = host.state.get_op_data_for_host(ctx_host.get(), op_hash)
        except KeyError:  # not an operation of this host
            continue
        if op_data.operation_meta.executed:
            return True
    return True  # not in the order: do not guess


def noop(description: str) -> None:
    """``host.noop``; while the run is prepared it also records that this operation needs
    nothing, so that `passed_at_prepare` skips it when the run executes."""
    host.noop(description)
    op_hash = host.current_op_hash
    if op_hash is not None and not _executing():
        _run().passed[op_hash] = description


def passed_at_prepare() -> bool:
    """True when executing an operation that found nothing to do while the run was prepared.

    For checks and for operations that only add (folders, the user, its groups): no earlier
    operation of the run can undo what they found, so their facts are not read again.
    """
    op_hash = host.current_op_hash
    if op_hash is None or not _executing():
        return False
    description = _run().passed.get(op_hash)
    if description is None:
        return False
    host.noop(description)
    return True
