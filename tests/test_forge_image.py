"""The Forge image's build inputs (genai_workstation.stacks.forge_image, files/forge/Dockerfile):
the PyTorch layer and Forge's installer settings from the inventory, through the real loader
and renderer; no Docker engine (tests/test_realapps_forge_docker.py builds the image)."""

from __future__ import annotations

import re

import pytest

from genai_workstation.errors import InventoryError
from genai_workstation.stacks import StackError, render_stack
from tests.harness import forge_mirror
from tests.harness import mirror as mr
from tests.test_stacks_render import load

FORGE = """
    gpu: {mode: none}
    stacks:
      forge:
        instances:
          - {name: one, port: 7860}
"""


def _build(tmp_path, image: str = ""):
    body = FORGE + (f"        image: {image}\n" if image else "")
    return render_stack("forge", load(tmp_path, body), {}).image_build


def _steps(dockerfile: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", dockerfile)
    return [line for line in joined.splitlines() if line and not line.startswith("#")]


def test_default_torch_layer_is_forges_own_pins(tmp_path):
    build = _build(tmp_path)
    lines = build.files["torch-requirements.txt"].content.splitlines()
    assert lines[1:] == ["torch==2.3.1", "torchvision==0.18.1"]
    dockerfile = build.files["Dockerfile"].content
    assert "\nARG ASSETS_REPO=\n" in dockerfile and "\nARG BLIP_COMMIT_HASH=\n" in dockerfile


def test_a_forge_ref_bump_keeps_the_apt_and_pytorch_layers(tmp_path):
    """FORGE_REPO/FORGE_REF are declared after the PyTorch step: the classic builder keys a
    step on the ARGs declared before it, so a new ref rebuilds from the clone on."""
    steps = _steps(_build(tmp_path).files["Dockerfile"].content)
    torch = next(i for i, s in enumerate(steps) if "torch-requirements.txt" in s and "RUN" in s)
    apt = next(i for i, s in enumerate(steps) if "base-setup.sh" in s and "RUN" in s)
    first_ref = min(i for i, s in enumerate(steps) if s.startswith(("ARG FORGE_REF",
                                                                    "ARG FORGE_REPO")))
    seed = next(i for i, s in enumerate(steps) if "requirements-seed.txt" in s and "RUN" in s)
    installer_args = [i for i, s in enumerate(steps) if s.startswith("ARG ASSETS_REPO")]
    assert apt < torch < seed < first_ref < installer_args[0]


@pytest.mark.skipif(mr.upstream_dir() is None, reason="no ../shared/upstream (Forge bundle)")
def test_requirements_seed_is_forges_own_at_the_pinned_commit(tmp_path):
    """files/forge/requirements-seed.txt = requirements_versions.txt + the built-in extensions'
    requirements of the Forge commit the image pins (tag forge-1b44ae22 in the bundle)."""
    git_root = tmp_path / "git"
    sources = forge_mirror.forge_sources(mr.upstream_dir(), git_root)
    expected = []
    for path in sources:
        expected += [line for line in path.read_text().splitlines()
                     if line.strip() and line not in expected]
    seed = _build(tmp_path).files["requirements-seed.txt"].content.splitlines()
    assert [line for line in seed if line and not line.startswith("#")] == expected


def test_installer_env_and_torch_packages_reach_the_build(tmp_path):
    build = _build(tmp_path, "{torch_packages: [torch==2.13.0, 'torchvision>=0.28,<0.29'], "
                             "installer_env: {BLIP_REPO: 'http://m.example/git/BLIP.git', "
                             "BLIP_COMMIT_HASH: blip-48211a15, CLIP_PACKAGE: openai-clip==1.0.1}}")
    dockerfile = build.files["Dockerfile"].content
    assert "\nARG BLIP_REPO=http://m.example/git/BLIP.git\n" in dockerfile
    assert "\nARG BLIP_COMMIT_HASH=blip-48211a15\n" in dockerfile
    assert "\nARG CLIP_PACKAGE=openai-clip==1.0.1\n" in dockerfile
    assert "\nARG ASSETS_REPO=\n" in dockerfile  # unset: Forge's own default
    lines = build.files["torch-requirements.txt"].content.splitlines()
    assert lines[1:] == ["torch==2.13.0", "torchvision>=0.28,<0.29"]
    assert build.build_hash != _build(tmp_path).build_hash


@pytest.mark.parametrize("image,field", [
    ("{installer_env: {TORCH_COMMAND: 'pip'}}", "installer_env"),
    ("{installer_env: {BLIP_REPO: 'http://a b'}}", "installer_env.BLIP_REPO"),
    ("{torch_packages: ['torch; rm -rf /']}", "torch_packages.0"),
])
def test_bad_forge_image_settings_are_refused_before_anything_runs(tmp_path, image, field):
    with pytest.raises(InventoryError) as error:
        _build(tmp_path, image)
    assert f"stacks.forge.image.{field}" in str(error.value)


def test_render_refuses_what_the_schema_cannot_see(tmp_path):
    """forge_image checks again for host data that did not come through the loader."""
    data = load(tmp_path, FORGE)
    data["stacks"]["forge"]["image"] = {"installer_env": {"BLIP_REPO": "$(id)"}}
    with pytest.raises(StackError, match="installer_env.BLIP_REPO"):
        render_stack("forge", data, {})
