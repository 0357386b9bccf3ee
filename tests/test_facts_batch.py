"""Facts read in one command (genai_workstation/hostfacts.py) answer as each read alone.

Real shell, real commands on this machine: each fact's command is run alone by /bin/sh and
processed, then all of them in one batched command, and the results must be equal.
"""

from __future__ import annotations

import shlex
import subprocess

from genai_workstation.facts.docker import DockerRuntimes
from genai_workstation.facts.filesystem import PathStates
from genai_workstation.facts.health import HostHealth
from genai_workstation.facts.platform import Platform
from genai_workstation.hostfacts import batch_command, split_output


def sh(command: str) -> tuple[int, list[str]]:
    result = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True,
                            timeout=60)
    return result.returncode, result.stdout.splitlines()


class Failing:
    def command(self):
        return "echo partial; exit 3"

    def requires_command(self):
        return None


class NeedsAbsentTool:
    requires_command = "genai-no-such-tool"  # a plain value, as facts/probe.py has it

    def command(self):
        return "genai-no-such-tool --version"


def test_batched_facts_equal_the_facts_read_alone(tmp_path):
    (tmp_path / "it's here").mkdir()
    paths = [str(tmp_path / "it's here"), str(tmp_path / "missing" / "deeper"), "/"]
    specs = [(Platform(), {}), (PathStates(), {"paths": paths}), (HostHealth(), {})]
    alone = []
    for fact, kwargs in specs:
        code, lines = sh(fact.command(**kwargs))
        assert code == 0, (fact, lines)
        alone.append(fact.process(lines))

    code, lines = sh(batch_command(specs))
    parts = split_output(lines, len(specs))
    assert code == 0 and sorted(parts) == [0, 1, 2]
    batched = [fact.process(parts[i][1]) for i, (fact, _kwargs) in enumerate(specs)]
    # HostHealth reads the clock and free memory: compare everything else
    for value in (alone[2], batched[2]):
        value.pop("epoch", None), value.pop("mem_available_mib", None)
    assert batched == alone
    assert batched[1][paths[0]]["exists"] is True
    assert batched[1][paths[1]]["exists"] is False


class Printing:
    """A fact printing `text` as is (a file read with `cat`, e.g. a daemon.json written
    without a final newline)."""

    def __init__(self, text: str):
        self.text = text

    def command(self):
        return f"printf %s {shlex.quote(self.text)}"

    def requires_command(self):
        return None


def test_each_fact_keeps_its_exit_status_and_output():
    specs = [(Failing(), {}), (NeedsAbsentTool(), {}), (DockerRuntimes(), {}),
             (Printing('{"log-level": "warn"}'), {}), (Printing("a\n\nb\n\n"), {}),
             (Printing(""), {})]
    _code, lines = sh(batch_command(specs))
    parts = split_output(lines, len(specs))
    assert parts[0] == (3, ["partial"])
    assert parts[1] == (127, [])
    assert 2 in parts  # docker may be absent here (127) or answer: either way framed
    assert parts[3] == (0, ['{"log-level": "warn"}'])
    assert parts[4] == (0, ["a", "", "b", ""])  # as str.splitlines() gives them alone
    assert parts[5] == (0, [])


def test_a_cut_short_answer_leaves_the_missing_facts_out():
    specs = [(Failing(), {}), (Failing(), {})]
    _code, lines = sh(batch_command(specs))
    assert sorted(split_output(lines, 2)) == [0, 1]
    first_end = next(i for i, line in enumerate(lines) if line.startswith("@@genai:fact-rc"))
    assert sorted(split_output(lines[: first_end + 1], 2)) == [0]
    assert sorted(split_output(lines[: first_end + 3], 2)) == [0]


def test_batched_facts_run_as_pyinfra_runs_facts_sudo_included():
    """`pyinfra --sudo --sudo-user ...` reaches the batched command as it reaches get_fact."""
    from pyinfra.api import Config, Inventory, State
    from pyinfra.context import ctx_host, ctx_state

    from genai_workstation.hostfacts import executor_arguments

    for config, expected in ((Config(), {"_sudo": False}),
                             (Config(SUDO=True, SUDO_USER="genai"),
                              {"_sudo": True, "_sudo_user": "genai"})):
        inventory = Inventory(([("@local", {})], {}))
        state = State(inventory, config)
        host = inventory.get_host("@local")
        with ctx_state.use(state), ctx_host.use(host):
            arguments = executor_arguments()
        assert {key: arguments.get(key) for key in expected} == expected
