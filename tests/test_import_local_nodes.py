"""`genai-import custom-nodes --keep-local-folders`: node folders that are not git checkouts
become `path:` entries, which the loader accepts and the render copies into the image."""

from __future__ import annotations

import yaml

from genai_workstation.stacks import render_stack
from tests.test_import import make_node, run_import
from tests.test_stacks_render import load


def _install(tmp_path):
    nodes = tmp_path / "ComfyUI" / "custom_nodes"
    login = make_node(nodes, "ComfyUI-Login", "https://github.com/liusida/ComfyUI-Login.git")
    mine = nodes / "my-fixes"
    mine.mkdir()
    (mine / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    (mine / ".env").write_text("SOME_KEY=x\n")
    (nodes / "not-a-node").mkdir()
    (nodes / "not-a-node" / "readme.txt").write_text("notes\n")
    return nodes, login


def test_local_folders_become_path_entries_that_render(tmp_path):
    nodes, login = _install(tmp_path)
    plain = run_import(tmp_path, "custom-nodes", "--comfyui-dir", "ComfyUI")
    assert "--keep-local-folders" in plain.stderr  # the note says how to carry them
    assert len(yaml.safe_load(plain.stdout)["custom_nodes"]) == 1

    result = run_import(tmp_path, "custom-nodes", "--comfyui-dir", "ComfyUI",
                        "--keep-local-folders")
    assert result.returncode == 0, result.stderr
    entries = yaml.safe_load(result.stdout)["custom_nodes"]
    assert entries == [{"url": "https://github.com/liusida/ComfyUI-Login.git", "ref": login},
                       {"path": str((nodes / "my-fixes").resolve())}]
    assert "my-fixes: local folder" in result.stderr and "left out of the image: .env" in \
        result.stderr
    assert "not-a-node: folder" in result.stderr and "no __init__.py" in result.stderr

    body = ("    gpu: {mode: none}\n    stacks:\n      comfyui:\n        port: 8188\n"
            "        gpu: none\n        custom_nodes: " + yaml.safe_dump(entries,
                                                                         default_flow_style=True))
    stack = render_stack("comfyui", load(tmp_path, body), {})
    assert "build/local-nodes/my-fixes/__init__.py" in stack.files
    assert "build/local-nodes/my-fixes/.env" not in stack.files


def test_compose_import_takes_the_option_for_a_mounted_install(tmp_path):
    _install(tmp_path)
    (tmp_path / "docker-compose.yml").write_text(yaml.safe_dump({"services": {"comfyui": {
        "image": "comfy:local", "ports": ["127.0.0.1:8188:8188"],
        "volumes": [f"{tmp_path}/ComfyUI:/workspace/ComfyUI"]}}}))
    result = run_import(tmp_path, "compose", "docker-compose.yml", "--keep-local-folders")
    assert result.returncode == 0, result.stdout + result.stderr
    draft = yaml.safe_load((tmp_path / "imported.yaml").read_text())
    nodes = draft["hosts"]["local"]["stacks"]["comfyui"]["custom_nodes"]
    assert {"path": str((tmp_path / "ComfyUI/custom_nodes/my-fixes").resolve())} in nodes
