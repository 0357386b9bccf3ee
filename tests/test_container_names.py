"""Two containers of one host with the same name are refused at load time, through the real
`pyinfra inventory.py` CLI, before any host is contacted (file, line, field, fix)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from genai_workstation.loader import load_inventory
from tests.test_inventory_errors import run_cli


def _template(folder: Path, name: str, value: str) -> None:
    """A custom stack's template folder whose service has a fixed container name."""
    (folder / name.split("/")[0]).mkdir()
    (folder / name).write_text(textwrap.dedent(f"""\
        services:
          app:
            image: local/app:1
            container_name: {value}   # the owner's scripts call it by name
        """))


CASES = {
    "comfyui and a forge instance": (
        """
        hosts:
          ws1:
            stacks:
              comfyui: {port: 8188, service: {container_name: comfyui-qwen}}
              forge:
                instances:
                  - {name: myia, port: 7860, service: {container_name: myia}}
                  - name: turbo
                    port: 7861
                    service: {container_name: comfyui-qwen}
        """,
        ["inv.yaml:11: hosts.ws1.stacks.forge.instances.1.service.container_name: container "
         "name 'comfyui-qwen' is already used by hosts.ws1.stacks.comfyui.service.container_name",
         "fix: give each container its own name, or remove `container_name` from one of them"],
    ),
    "a name Compose gives another container": (
        """
        hosts:
          ws1:
            stacks:
              comfyui: {port: 8188}
              forge:
                instances:
                  - {name: a, port: 7860, service: {container_name: genai-comfyui-comfyui-1}}
        """,
        ["hosts.ws1.stacks.forge.instances.0.service.container_name: container name "
         "'genai-comfyui-comfyui-1' is already used by hosts.ws1.stacks.comfyui (Compose's "
         "name for it)"],
    ),
    "a custom stack's compose.yaml": (
        """
        hosts:
          ws1:
            stacks:
              forge:
                instances:
                  - {name: myia, port: 7860, service: {container_name: myia}}
              custom:
                tools: {template_dir: CUSTOM/tools}
        """,
        ["hosts.ws1.stacks.custom.tools.template_dir: container name 'myia' (",
         "tools/compose.yaml line 4) is already used by "
         "hosts.ws1.stacks.forge.instances.0.service.container_name"],
    ),
    "two custom stacks, one a template with vars": (
        """
        hosts:
          ws1:
            stacks:
              custom:
                tools: {template_dir: CUSTOM/tools}
                more: {template_dir: CUSTOM/more, vars: {name: myia}}
        """,
        ["hosts.ws1.stacks.custom.tools.template_dir: container name 'myia' (",
         "tools/compose.yaml line 4) is already used by hosts.ws1.stacks.custom.more."
         "template_dir (", "more/compose.yaml.j2 line 4)"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_container_name_clash_is_refused_before_any_host_is_contacted(tmp_path, case):
    _template(tmp_path, "tools/compose.yaml", "myia")
    _template(tmp_path, "more/compose.yaml.j2", '"{{ vars.name }}"')
    yaml_text, expected = CASES[case]
    result = run_cli(tmp_path, yaml_text.replace("CUSTOM", str(tmp_path)))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no host was contacted" in result.stderr
    assert "Connecting" not in result.stdout + result.stderr
    for text in expected:
        assert text in result.stderr, f"{text!r} missing from:\n{result.stderr}"


def test_the_same_name_on_two_hosts_or_distinct_names_load(tmp_path):
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(textwrap.dedent("""\
        defaults:
          stacks:
            comfyui: {port: 8188, idle_unload_minutes: 20, service: {container_name: comfyui}}
            forge:
              instances:
                - {name: myia, port: 7860, service: {container_name: myia}}
                - {name: turbo, port: 7861}
        hosts:
          ws1: {connection: {type: ssh, host: 203.0.113.7}}
          ws2: {connection: {type: ssh, host: 203.0.113.8}}
        """))
    loaded = load_inventory(inventory, environ={"GENAI_SECRETS": str(tmp_path / "none")})
    assert sorted(loaded.hosts) == ["ws1", "ws2"]
