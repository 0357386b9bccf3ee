"""genai_workstation/hostfacts.py: facts read in one command, ahead, and once where safe,
with nothing set on pyinfra's objects and no pyinfra private attribute outside the list in
docs/pyinfra-internals.md.

Real pyinfra runs: the `@local` connector runs real commands on this machine (a fact that
appends a line to a file each time it runs counts the reads), and the `@fake` WSL2 host of
tests/workstation_fake.py (recorded real outputs) runs the whole converge plan read-only, as
genai-drift does.
"""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pyinfra
from pyinfra.api import Config, FactBase, Inventory, State
from pyinfra.api.connect import connect_all
from pyinfra.api.deploy import add_deploy
from pyinfra.api.host import Host
from pyinfra.context import ctx_config, ctx_host, ctx_state

from genai_workstation import hostfacts
from tests.workstation_fake import host_data, wsl_responses

REPO = Path(__file__).resolve().parent.parent
PYINFRA = Path(pyinfra.__file__).resolve().parent
PRODUCT = ("genai_workstation", "deploys", "facts")


class Counted(FactBase):
    """Appends a line to ``path`` each time its command runs; returns the number of lines."""

    def command(self, path: str) -> str:
        return f"echo x >> {shlex.quote(path)}; wc -l < {shlex.quote(path)}"

    def process(self, output: list[str]):
        return int(output[0].strip())


def local_host() -> tuple[State, Host]:
    inventory = Inventory(([("@local", {})], {}))
    return State(inventory, Config()), inventory.get_host("@local")


def our_attributes(host: Host, before: set[str]) -> set[str]:
    """Attributes set on a pyinfra Host since `before` (its attribute names then) that
    pyinfra's Host class does not declare, and any method replaced on the instance."""
    return {name for name in set(vars(host)) - before if not hasattr(Host, name)} | (
        {"get_fact", "run_shell_command", "connector"} & (set(vars(host)) - before))


def test_a_read_only_run_reads_each_fact_once_and_sets_nothing_on_the_host(tmp_path):
    state, host = local_host()
    before = set(vars(host))
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    with ctx_state.use(state), ctx_host.use(host):
        assert hostfacts.fact(Counted, path=a) == 1
        assert hostfacts.fact(Counted, path=a) == 2  # a run that may change the host: read again
        hostfacts.read_only_run()
        assert hostfacts.fact(Counted, path=a) == 3
        assert hostfacts.fact(Counted, path=a) == 3  # kept
        hostfacts.prefetch([(Counted, {"path": a}), (Counted, {"path": b})])  # reads b only
        assert hostfacts.read_together([(Counted, {"path": b}), (Counted, {"path": a})]) == [1, 3]
        assert hostfacts.fact(Counted, path=b) == 1 and hostfacts.read_once(Counted, path=a) == 3
        hostfacts.run_memo("x")["y"] = 1
        assert hostfacts.read_only_memo("x") == {"y": 1}
    assert (tmp_path / "a").read_text() == "x\n" * 3 and (tmp_path / "b").read_text() == "x\n"
    assert our_attributes(host, before) == set()

    other_state, other = local_host()  # another host (a new run): nothing carried over
    with ctx_state.use(other_state), ctx_host.use(other):
        assert hostfacts.read_only_memo("x") is None
        assert hostfacts.fact(Counted, path=a) == 4


def test_prefetch_is_one_command_and_answers_the_reads_that_follow(tmp_path):
    state, host = local_host()
    paths = [str(tmp_path / name) for name in "abc"]
    with ctx_state.use(state), ctx_host.use(host):
        hostfacts.prefetch([(Counted, {"path": p}) for p in paths])
        assert [hostfacts.fact(Counted, path=p) for p in paths] == [1, 1, 1]
        assert hostfacts.fact(Counted, path=paths[0]) == 1
    assert all(Path(p).read_text() == "x\n" for p in paths)


def test_a_read_only_converge_plan_reads_each_of_our_facts_once(tmp_path):
    """genai-drift's pass on the @fake WSL2 host (GPU expected, Docker Desktop, ComfyUI not
    deployed yet): the verify checks, then deploys/site.py's steps prepared and each
    operation's generator run, as drift/run.py does. The platform, the GPUs, the stack's
    compose state... are asked for by several of them and read once."""
    from genai_workstation.deploys.steps.models import sync_models
    from genai_workstation.deploys.steps.stacks import comfyui_stack, custom_stacks, forge_stack
    from genai_workstation.deploys.steps.verify import state_findings, verify_host
    from genai_workstation.deploys.steps.workstation import workstation
    from genai_workstation.drift.run import config_findings

    data = host_data(tmp_path, docker={"source": "desktop"}, stacks={"comfyui": {"port": 8188}})
    data.update({"fake_responses": wsl_responses(), "fake_delay": 0, "fake_delay_jitter": 0})
    inventory = Inventory(([("@fake/wsl", data)], {}))
    state = State(inventory, Config())
    connect_all(state)
    host = inventory.get_host("@fake/wsl")
    before = set(vars(host))
    with ctx_state.use(state), ctx_config.use(state.config.copy()), ctx_host.use(host):
        hostfacts.read_only_run()
        found = state_findings()
    for step in (workstation, sync_models, comfyui_stack, forge_stack, custom_stacks,
                 verify_host):
        add_deploy(state, step)
    changes = config_findings(state, [host], {host.name: "wsl"}, "deploys/site.py")
    sent = [str(command) for command in host.connector.executed_commands]

    assert "stack comfyui" in [f.item for f in found] and changes  # not deployed: drift
    alone = [c for c in sent if not c.startswith("echo '@@genai:fact 0'")]
    for marker in ("uname -r", "--query-gpu=", "docker compose ps --all", "@@genai:label",
                   "sha256sum <", "@@genai:wsl.conf", "@@genai:account"):
        assert sum(marker in command for command in alone) == 1, marker
    # What else repeats is pyinfra's own File and Directory facts of a file files.put writes
    # (the same command, two facts), and the batch of facts the @fake connector cannot frame
    # (so it is asked again, alone or batched): neither is read twice by the project's code.
    repeated = {c for c in sent if sent.count(c) > 1}
    assert all(sent.count(c) == 2 and c.startswith(("! (test -e", "echo '@@genai:fact 0'"))
               for c in repeated), repeated
    assert our_attributes(host, before) == set()


# --- pyinfra's private attributes -----------------------------------------------------------

def pyinfra_private_names() -> set[str]:
    """Underscore names pyinfra's api, connectors and context define on their objects."""
    names = set()
    sources = [*(PYINFRA / "api").glob("*.py"), *(PYINFRA / "connectors").glob("*.py"),
               PYINFRA / "context.py"]
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id in ("self", "cls"):
                names.add(node.attr)
            elif isinstance(node, ast.ClassDef):
                for item in node.body:
                    targets = ([item.target] if isinstance(item, ast.AnnAssign)
                               else getattr(item, "targets", []))
                    names.update(t.id for t in targets if isinstance(t, ast.Name))
                    if isinstance(item, ast.FunctionDef):
                        names.add(item.name)
    names.add("_inner")  # set on every operation function by pyinfra's @operation
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def product_uses(names: set[str]) -> dict[str, list[str]]:
    """{name: [file:line]} of attribute reads/writes of these names in the product code."""
    uses: dict[str, list[str]] = {}
    for folder in PRODUCT:
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Attribute) and node.attr in names:
                    uses.setdefault(node.attr, []).append(
                        f"{path.relative_to(REPO)}:{node.lineno}")
    return uses


def documented_private_names() -> set[str]:
    """The names in the table of docs/pyinfra-internals.md's "Private attributes" section."""
    text = (REPO / "docs" / "pyinfra-internals.md").read_text(encoding="utf-8")
    section = text.split("## Private attributes", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(_[A-Za-z0-9_]+)`", section, flags=re.M))


def test_pyinfra_private_attributes_only_where_the_docs_list_them():
    private = pyinfra_private_names()
    assert {"_commands", "_success", "_inner"} <= private  # the scan sees them
    uses = product_uses(private)
    documented = documented_private_names()
    assert not set(uses) - documented, (
        f"pyinfra private attributes used but not listed in docs/pyinfra-internals.md: "
        f"{ {n: uses[n] for n in set(uses) - documented} }")
    assert not documented - set(uses), f"listed but no longer used: {documented - set(uses)}"
