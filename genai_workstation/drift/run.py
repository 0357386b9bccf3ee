"""genai-drift's check: ONE pyinfra run over every host, prepared and never executed.

With pyinfra's API (the State, Config and Inventory its CLI builds; operations added by running
the deploy file as `pyinfra --dry` does), each host in its own greenlet of pyinfra's pool, so
hosts are checked in parallel and a host that cannot be reached costs only its own connect
timeout:

1. connect (one SSH connection per host, for the whole check);
2. state: the verify step's checks (`deploys.steps.verify.state_findings`), whose first remote
   command also reads every fact the workstation step's plan needs;
3. config: the converge deploy (`deploys/site.py`) prepared as `pyinfra --dry` prepares it:
   each operation's generator runs against the facts; one that would yield a command is drift.

The run is read-only (`genai_workstation.hostfacts.read_only_run`): every fact is read at
most once per host and shared by the plan and the state checks. Nothing is executed.
"""

from __future__ import annotations

import logging

import gevent
import pyinfra
from pyinfra.api import Config, State
from pyinfra.api import Inventory as PyinfraInventory
from pyinfra.api.exceptions import ConnectError
from pyinfra.api.state import StateStage
from pyinfra.context import ctx_config, ctx_host, ctx_inventory, ctx_state

from genai_workstation.findings import CONFIG, ERROR, Finding, Report
from genai_workstation.loader import Inventory
from genai_workstation.resources import ROOT, shipped_path

DEFAULT_CONNECT_TIMEOUT = 10
PLAN_MARK = "plan: stack "  # the stack operation's log line saying which services it recreates


def check(inventory: Inventory, hosts: list[str], deploy: str,
          connect_timeout: float | None = None) -> Report:
    """State and config drift of `hosts` (names of the inventory) against `deploy`."""
    log = _capture_pyinfra_log()
    state = _state(inventory, hosts, connect_timeout)
    by_pyinfra_name = {inventory.pyinfra_name(name): name for name in hosts}
    code = compile(shipped_path(deploy).read_text(encoding="utf-8"), deploy, "exec")
    state.current_deploy_filename = deploy  # pyinfra orders operations by their line in it
    state.current_op_file_number = 0
    pool = {host: state.pool.spawn(_check_host, state, host, deploy, code)
            for host in state.inventory}
    gevent.joinall(list(pool.values()))

    report = Report(hosts=list(hosts))
    prepared = []
    for host, greenlet in pool.items():
        name = by_pyinfra_name[host.name]
        found, ran = greenlet.get()
        for finding in found:
            report.add(finding)
        if ran and host in state.failed_hosts:
            report.add(_error(name, "converge plan", f"`pyinfra {deploy} --dry` runs",
                              log.last_error(host) or "pyinfra failed the host",
                              _plan_fix(deploy, host.name)))
        elif ran:
            prepared.append(host)
    for finding in config_findings(state, prepared, by_pyinfra_name, deploy, log.plans):
        report.add(finding)
    return report


def config_findings(state: State, hosts: list, names: dict[str, str],
                    deploy: str, plans: list[str] = ()) -> list[Finding]:
    """An operation that would change a host (as `hosts_with_change` of `pyinfra --dry
    --json`), in the run's operation order; a stack's says which services it would recreate
    and which keep running (the operation's `plan:` log lines)."""
    found = []
    for op_hash in state.get_op_order():
        meta = state.get_op_meta(op_hash)
        for host in hosts:
            op_data = state.ops[host].get(op_hash)
            if op_data is None or op_data.global_arguments["_if"]:
                continue
            with ctx_host.use(host):
                if not op_data.operation_meta.will_change:
                    continue
            what = "a converge would change this" + _stack_plan(plans, host, _op_name(meta))
            found.append(Finding(names[host.name], _op_name(meta),
                                 "converged (no change planned)", what,
                                 f"pyinfra inventory.py {deploy} --limit {host.name}",
                                 kind=CONFIG))
    return found


def _check_host(state: State, host, deploy: str, code) -> tuple[list[Finding], bool]:
    """(findings, whether the plan was prepared) for one host, in its own greenlet."""
    from genai_workstation.deploys.steps.verify import state_findings
    from genai_workstation.hostfacts import read_only_run

    name = host.data.get("workstation_name") or host.name
    try:
        host.connect(show_errors=False, raise_exceptions=True)
    except ConnectError as error:
        return [_error(name, "host reachable", "an SSH connection", str(error),
                       f"check the connection settings of hosts.{name} and that the host "
                       "is up")], False
    state.activate_host(host)
    try:
        with ctx_config.use(state.config.copy()), ctx_host.use(host):
            read_only_run()
            try:
                found = state_findings()
            except Exception as error:  # e.g. the platform fact cannot be read
                found = [_error(name, "state checks", "the verify step's facts are read",
                                f"{type(error).__name__}: {error}",
                                "run `pyinfra inventory.py deploys/verify.py` to see why")]
            try:
                exec(code, {"__file__": deploy})  # as pyinfra's CLI runs a deploy file
            except Exception as error:
                found.append(_error(name, "converge plan", f"`pyinfra {deploy} --dry` runs",
                                    f"{type(error).__name__}: {error}",
                                    _plan_fix(deploy, host.name)))
                return found, False
        return found, True
    finally:
        host.disconnect()


def _state(inventory: Inventory, hosts: list[str], connect_timeout: float | None) -> State:
    """pyinfra's state for these hosts, set up as its CLI sets it up for `--dry`."""
    pyinfra.is_cli = True  # operation order and names exactly as `pyinfra --dry` gives them
    state = State(check_for_changes=True)
    state.cwd = str(ROOT)
    ctx_state.set(state)
    config = Config(CONNECT_TIMEOUT=connect_timeout or DEFAULT_CONNECT_TIMEOUT)
    ctx_config.set(config)
    members = [inventory.pyinfra_host(name, connect_timeout) for name in hosts]
    groups = {group: ([m for m in members if m[0] in {inventory.pyinfra_name(n)
                                                      for n in names}], {})
              for group, names in inventory.groups.items()}
    groups["workstations"] = (members, {})
    pyinfra_inventory = PyinfraInventory((members, {}), **groups)
    ctx_inventory.set(pyinfra_inventory)
    state.init(pyinfra_inventory, config)
    state.set_stage(StateStage.Connect)
    state.set_stage(StateStage.Prepare)
    return state


def _stack_plan(plans, host, op_name: str) -> str:
    """`` (recreate forge-turbo; keep running forge-main, proxy)`` for a stack operation."""
    for line in plans:
        head, _, plan = line.partition(PLAN_MARK)
        stack, _, services = plan.partition(": ")
        if head.startswith(host.print_prefix) and f"Stack {stack}: " in op_name:
            return f" ({services})"
    return ""


def _op_name(meta) -> str:
    """An operation's name as pyinfra's CLI prints it (its first name, then its arguments)."""
    name = sorted(meta.names)[0]
    return f"{name} ({', '.join(str(arg) for arg in meta.args)})" if meta.args else name


def _plan_fix(deploy: str, pyinfra_name: str) -> str:
    return (f"run `pyinfra inventory.py {deploy} --dry --limit {pyinfra_name}` to see the "
            "error")


def _error(host: str, item: str, expected: str, actual: str, fix: str) -> Finding:
    return Finding(host, item, expected, actual, fix, kind=ERROR)


class _PyinfraLog(logging.Handler):
    """pyinfra's log, kept (not printed): the error lines a failed host left, and the stacks'
    ``plan: stack X: recreate ...; keep running ...`` lines (genai_workstation/operations/
    stack.py)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.plans: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            self.lines.append(message)
        elif PLAN_MARK in message:
            self.plans.append(message)

    def last_error(self, host) -> str:
        mine = [line for line in self.lines if line.startswith(host.print_prefix)]
        return mine[-1][len(host.print_prefix):].strip() if mine else ""


def _capture_pyinfra_log() -> _PyinfraLog:
    handler = _PyinfraLog()
    logger = logging.getLogger("pyinfra")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return handler
