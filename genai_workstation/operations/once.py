"""Facts read once per host and run, and checks that need not run twice.

pyinfra 3.10 keeps no fact cache: every ``host.get_fact`` is a remote command. With ``-y`` it runs
each operation's generator when executing, so an operation the workstation step evaluates while
preparing the run (to refuse a host before anything changes) would read its facts twice.

A read-only run (`read_only_run`: genai-drift, prepared and never executed) reads every fact at
most once per host: the plan and the state checks share what was read.
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


_PREFETCHED = "_genai_prefetched_facts"
_READ_ONLY = "_genai_read_only_run"
_MEMOS = "_genai_read_only_memos"


def _key(fact_cls, kwargs: dict, args: tuple = ()):
    return (fact_cls, repr(args), repr(sorted(kwargs.items())))


def _prefetched() -> dict:
    memo = getattr(host, _PREFETCHED, None)
    if memo is None:
        memo = {}
        setattr(host, _PREFETCHED, memo)
    return memo


def read_only() -> bool:
    return bool(getattr(host, _READ_ONLY, False))


def read_only_run() -> None:
    """Declare the current host's run read-only: prepared, never executed (genai-drift).

    Nothing changes the host until the run ends, so from now on every fact is read once:
    ``host.get_fact``, `prefetch` and `read_facts_once` answer from the facts already read.
    """
    if read_only():
        return
    memo = _prefetched()
    read = host.get_fact  # the host's own method, bound now

    def get_fact(fact_cls, *args, **kwargs):
        key = _key(fact_cls, kwargs, args)
        if key not in memo:
            memo[key] = read(fact_cls, *args, **kwargs)
        return memo[key]

    host.get_fact = get_fact  # this host object only
    setattr(host, _READ_ONLY, True)


def read_only_memo(name: str) -> dict | None:
    """A dict kept for the current host while its run is read-only (None otherwise): for
    results derived from host data and facts alone, e.g. a rendered stack."""
    if not read_only():
        return None
    memos = getattr(host, _MEMOS, None)
    if memos is None:
        memos = {}
        setattr(host, _MEMOS, memos)
    return memos.setdefault(name, {})


def in_parallel(*calls) -> list:
    """Run these calls at once, each in a greenlet with the current host and config (their
    remote commands overlap on the host's one SSH connection); their results, in order."""
    import gevent
    from pyinfra.context import ctx_config, ctx_host

    current_host, config = ctx_host.get(), ctx_config.get()

    def run(call):
        with ctx_host.use(current_host), ctx_config.use(config):
            return call()

    greenlets = [gevent.spawn(run, call) for call in calls]
    gevent.joinall(greenlets, raise_error=True)
    return [greenlet.value for greenlet in greenlets]


def read_facts_once(specs: list[tuple[type, dict]]) -> list:
    """``facts_batch.read_facts(specs)``; in a read-only run, only the facts not read yet are
    read (in one command) and the others answered from memory."""
    from genai_workstation.facts_batch import read_facts

    if not read_only():
        return read_facts(specs)
    memo = _prefetched()
    missing = {_key(cls, kwargs): (cls, kwargs) for cls, kwargs in specs
               if _key(cls, kwargs) not in memo}
    if missing:
        values = read_facts(list(missing.values()))
        memo.update(zip(missing, values, strict=True))
    return [memo[_key(cls, kwargs)] for cls, kwargs in specs]


def prefetch(specs: list[tuple[type, dict]]) -> None:
    """Read these facts now, in one remote command (genai_workstation/facts_batch.py), for
    the operations that will ask for them (`cached_fact`). Call while the run is prepared,
    with the exact arguments the operations use. If the batch cannot be read, the operations
    simply read their facts themselves."""
    from genai_workstation.facts_batch import FactReadError

    try:
        read_facts_once(specs) if read_only() else _read_into_memo(specs)
    except FactReadError:
        return


def _read_into_memo(specs: list[tuple[type, dict]]) -> None:
    from genai_workstation.facts_batch import read_facts

    memo = _prefetched()
    for (fact_cls, kwargs), value in zip(specs, read_facts(specs), strict=True):
        memo[_key(fact_cls, kwargs)] = value


def _host_changed_since_prepare() -> bool:
    """While executing: whether an operation before the current one ran a command on this
    host (then what was read while preparing may be out of date)."""
    if not _executing():
        return False  # nothing has run on the host yet
    current = getattr(host, "current_op_hash", None)
    for op_hash in host.state.get_op_order():
        if op_hash == current:
            return False
        op_data = host.state.ops.get(host, {}).get(op_hash)
        if op_data is not None and op_data.operation_meta._commands:
            return True
    return True  # not in the order: do not guess


def cached_fact(fact_cls, **kwargs):
    """``host.get_fact``, answered from `prefetch` while nothing has changed the host since,
    read afresh otherwise."""
    memo = getattr(host, _PREFETCHED, None) or {}
    key = _key(fact_cls, kwargs)
    if key in memo and not _host_changed_since_prepare():
        return memo[key]
    return host.get_fact(fact_cls, **kwargs)
