"""Dependencies point one way: facts read the host and import nothing above them.

Every module of `facts/` may import the standard library, third-party packages, other fact
modules and the project's leaf modules (LEAVES); never `genai_workstation.stacks`,
operations, deploys, verify, drift... A leaf imports nothing of the project but other leaves.
Read from the source (ast), imports inside functions included, and checked again by importing
the facts in a fresh interpreter.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FACTS = sorted((REPO / "facts").glob("*.py"))
PROJECT = ("genai_workstation", "facts", "deploys")
# Modules below both facts and stacks: names a deployed stack shares with the facts reading it.
LEAVES = {"genai_workstation.stack_names", "genai_workstation.comfyui_login"}
FACTS_PACKAGE = "genai_workstation.facts"  # facts/ as installed (pyproject's package-dir)


def imported_modules(path: Path, package: str) -> set[str]:
    """Every module `path` imports (absolute names; `from x import y` counts x and x.y)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def project_imports(path: Path, package: str) -> set[str]:
    return {name for name in imported_modules(path, package)
            if name.split(".")[0] in PROJECT}


def allowed_for_facts(name: str) -> bool:
    """A fact module may import other fact modules and the leaves (and names in them)."""
    return name.split(".")[0] == "facts" or name == FACTS_PACKAGE or name.startswith(
        FACTS_PACKAGE + ".") or any(
        name == leaf or name.startswith(leaf + ".") for leaf in LEAVES) or name == (
        "genai_workstation")  # the package of a leaf, itself empty


@pytest.mark.parametrize("path", FACTS, ids=lambda p: p.name)
def test_a_fact_module_imports_only_facts_and_leaves(path):
    bad = sorted(n for n in project_imports(path, FACTS_PACKAGE) if not allowed_for_facts(n))
    assert not bad, f"facts/{path.name} imports {bad}: move the shared names to a leaf module"


@pytest.mark.parametrize("leaf", sorted(LEAVES))
def test_a_leaf_imports_nothing_of_the_project(leaf):
    path = REPO / (leaf.replace(".", "/") + ".py")
    package = leaf.rsplit(".", 1)[0]
    above = {name for name in project_imports(path, package)
             if not any(name == other or name.startswith(other + ".") for other in LEAVES)}
    assert not above, f"{leaf} imports {sorted(above)}: a leaf imports only other leaves"


def test_the_package_of_the_leaves_imports_nothing():
    assert not project_imports(REPO / "genai_workstation" / "__init__.py", "genai_workstation")


def test_the_walk_sees_relative_and_nested_imports(tmp_path):
    source = tmp_path / "x.py"
    source.write_text("def f():\n    from ..genai_workstation.stacks import lifecycle\n"
                      "from .compose import ComposeProject\n")
    found = project_imports(source, "facts.sub")
    assert "genai_workstation.stacks.lifecycle" not in found  # ..x from facts.sub is facts.x
    assert "facts.genai_workstation.stacks" in found and "facts.sub.compose" in found
    source.write_text("def f():\n    from genai_workstation.stacks.lifecycle import q\n")
    assert not allowed_for_facts(min(project_imports(source, "facts")))


def test_importing_every_fact_loads_nothing_above_them():
    names = ", ".join(f"facts.{p.stem}" for p in FACTS if p.stem != "__init__")
    code = (f"import sys, {names}\n"
            "print('\\n'.join(m for m in sys.modules if m.split('.')[0] in "
            f"{PROJECT!r}))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.split()
    above = sorted(m for m in loaded if not allowed_for_facts(m))
    assert not above, f"importing the facts loads {above}"
