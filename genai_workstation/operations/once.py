"""Facts read once per host and run, and checks that need not run twice.

pyinfra 3.10 keeps no fact cache: every ``host.get_fact`` is a remote command. With ``-y`` it runs
each operation's generator when executing, so an operation the workstation step evaluates while
preparing the run (to refuse a host before anything changes) would read its facts twice.
"""

from __future__ import annotations

from pyinfra import host

_FACTS = "_genai_facts_once"
_PASSED = "_genai_passed_at_prepare"


def read_once(fact_cls, **kwargs):
    """``host.get_fact``, read once per host and run: only for facts no operation changes
    during the run (the platform: kernel, distribution, architecture, init)."""
    memo = getattr(host, _FACTS, None)
    if memo is None:
        memo = {}
        setattr(host, _FACTS, memo)
    key = (fact_cls, repr(sorted(kwargs.items())))
    if key not in memo:
        memo[key] = host.get_fact(fact_cls, **kwargs)
    return memo[key]


def _executing() -> bool:
    return bool(getattr(host.state, "is_executing", False))


def noop(description: str) -> None:
    """``host.noop``; while the run is prepared it also records that this operation needs
    nothing, so that `passed_at_prepare` skips it when the run executes."""
    host.noop(description)
    op_hash = getattr(host, "current_op_hash", None)
    if op_hash is None or _executing():
        return
    passed = getattr(host, _PASSED, None)
    if passed is None:
        passed = {}
        setattr(host, _PASSED, passed)
    passed[op_hash] = description


def passed_at_prepare() -> bool:
    """True when executing an operation that found nothing to do while the run was prepared.

    For checks and for operations that only add (folders, the user, its groups): no earlier
    operation of the run can undo what they found, so their facts are not read again.
    """
    op_hash = getattr(host, "current_op_hash", None)
    if op_hash is None or not _executing():
        return False
    description = (getattr(host, _PASSED, None) or {}).get(op_hash)
    if description is None:
        return False
    host.noop(description)
    return True
