"""The README's first set-up command works on this machine: the main job's dry run plans cleanly."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Set-up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for line in section.splitlines() if line.startswith("    ")]


def test_readme_has_exactly_two_setup_commands():
    commands = readme_commands()
    assert len(commands) == 2, commands
    assert "deploys/comfyui.py --dry" in commands[0]
    assert "pytest" in commands[1]
    assert (REPO / ".ci" / "run").read_text().count(commands[1]) == 1


def test_main_job_dry_run_on_the_default_inventory(tmp_path):
    main_job = readme_commands()[0].split("&&")[-1].strip()
    argv = re.sub(r"^\.venv/bin/", "", main_job).split()
    assert argv[:3] == ["pyinfra", "inventory.py", "deploys/comfyui.py"], argv
    pyinfra = str(Path(sys.executable).with_name("pyinfra"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENAI_")}
    env["GENAI_SECRETS"] = str(tmp_path / "none.env")
    result = subprocess.run([pyinfra, *argv[1:], "--json"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    plan = json.loads(result.stdout)["plan"]
    names = [operation["name"] for operation in plan]
    assert any(name.startswith("Stack | Stack comfyui") for name in names), names
    assert names[-1].startswith("Verify | Verify workstation, stack comfyui"), names
