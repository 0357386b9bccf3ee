"""Forge's command lines against Forge's REAL argument parser (no Docker needed).

The parser is built as Forge's modules/shared_cmd_options.py builds it (modules/cmd_args.py
plus the preload.py of the built-in extensions), from a checkout of the Forge bundle in
../shared/upstream ($GENAI_UPSTREAM_DIR) at the commit the image pins; skipped without it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from genai_workstation.stacks import StackError, render_stack
from genai_workstation.stacks.forge_flags import FORGE_FLAGS, FORGE_FLAGS_REF
from tests.harness.mirror import upstream_dir
from tests.test_stacks_render import FORGE, RESOLVED, compose, load

UPSTREAM = upstream_dir()
pytestmark = pytest.mark.skipif(UPSTREAM is None, reason=(
    "no upstream sources: ../shared/upstream (or $GENAI_UPSTREAM_DIR) holds the Forge bundle"))

PARSER = """
import json, sys
sys.path.insert(0, '.')
argv = json.loads(sys.argv[1])
sys.argv = ['launch.py']
from modules import cmd_args, script_loading
from modules.paths_internal import extensions_builtin_dir
script_loading.preload_extensions(extensions_builtin_dir, cmd_args.parser)
if argv is None:
    print(json.dumps(sorted({o for a in cmd_args.parser._actions for o in a.option_strings
                             if o.startswith('--')})))
else:
    cmd_args.parser.parse_args(argv)
    print('parsed')
"""


@pytest.fixture(scope="module")
def forge(tmp_path_factory):
    checkout = tmp_path_factory.mktemp("forge") / "forge"
    subprocess.run(["git", "clone", "-q", str(UPSTREAM / "stable-diffusion-webui-forge.bundle"),
                    str(checkout)], check=True)
    tags = subprocess.run(["git", "-C", str(checkout), "tag"], capture_output=True,
                          text=True).stdout
    assert f"forge-{FORGE_FLAGS_REF[:8]}" in tags.split(), tags
    return checkout


def real_parse(forge, argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PARSER, json.dumps(argv)], cwd=forge,
                          capture_output=True, text=True, timeout=120)


def test_the_flag_list_is_the_real_parsers(forge):
    result = real_parse(forge, None)
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout.splitlines()[-1])) == FORGE_FLAGS


def test_every_rendered_command_line_parses(forge, tmp_path):
    body = FORGE.replace("{name: turbo, port: 17861,",
                         "{name: turbo, port: 17861, extra_args: [--cuda-malloc, "
                         "--pin-shared-memory, --lora-dir=/data/models/loras],")
    gpu = render_stack("forge", load(tmp_path, body), RESOLVED)
    cpu_body = body.replace('gpu: "RTX 3080", ', "").replace(', gpu: "RTX 3090"', "")
    cpu = render_stack("forge", load(tmp_path, "    gpu: {mode: none}\n" + cpu_body), {})
    commands = [service["command"] for stack in (gpu, cpu)
                for service in compose(stack)["services"].values() if "command" in service
                and service.get("labels", {}).get("genai.service", "").startswith("forge")]
    assert len(commands) == 4 and any("--always-cpu" in c for c in commands)
    for command in commands:
        result = real_parse(forge, command)
        assert result.returncode == 0 and "parsed" in result.stdout, (command, result.stderr)


def test_an_unknown_flag_fails_the_render_as_it_fails_forge(forge, tmp_path):
    body = FORGE.replace("{name: turbo, port: 17861,",
                         "{name: turbo, port: 17861, extra_args: [--no-such-flag],")
    with pytest.raises(StackError, match="--no-such-flag is not a flag of Forge 1b44ae22"):
        render_stack("forge", load(tmp_path, body), RESOLVED)
    refused = real_parse(forge, ["--no-such-flag"])
    assert refused.returncode == 2 and "unrecognized arguments: --no-such-flag" in refused.stderr


def test_xformers_is_refused_with_the_reason(forge, tmp_path):
    body = FORGE.replace("{name: turbo, port: 17861,",
                         "{name: turbo, port: 17861, extra_args: [--xformers],")
    with pytest.raises(StackError, match="--xformers is refused: the image has no xformers"):
        render_stack("forge", load(tmp_path, body), RESOLVED)
    assert real_parse(forge, ["--xformers"]).returncode == 0  # Forge itself would accept it
