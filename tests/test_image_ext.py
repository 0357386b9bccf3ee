"""Image extensions, the user's own image and local custom nodes, rendered (no engine).

Host data comes from the real loader (as in test_stacks_render.py); bad values must be refused
by the loader with file, line, field and fix, and by the render when it is called without it.
Compose files are checked with the real Compose v2 binary.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from genai_workstation import image_spec
from genai_workstation.errors import InventoryError
from genai_workstation.loader import schema
from genai_workstation.stacks import StackError, render_stack
from genai_workstation.stacks.builtin import app_dockerfile
from tests.test_stacks_render import PASSWORD, compose_config, lint_dockerfile, load, write

EXTEND = """
        image:
          extend:
            apt: [ffmpeg, libsm6]
            pip: ["onnxruntime==1.19.2", "insightface[extra]==0.7.3"]
            run: ["python -c 'import sys; print(sys.version)' > /opt/genai/python-version"]
"""
COMFY = """
    gpu: {mode: none}
    stacks:
      comfyui:
        port: 8188
        gpu: none
"""
FORGE = """
      forge:
        instances:
          - {name: turbo, port: 17861, gpu: none}
"""


def dockerfile(stack) -> str:
    return stack.files["build/Dockerfile"].content


def render(tmp_path: Path, body: str, name: str = "comfyui"):
    return render_stack(name, load(tmp_path, body), {})


def instructions_after(text: str, marker: str) -> list[tuple[str, str]]:
    instructions = lint_dockerfile(text)
    index = next(i for i, (k, rest) in enumerate(instructions) if marker in rest)
    return instructions[index + 1:]


# ------------------------------------------------------------------------------ extensions


@pytest.mark.parametrize("name,body,expensive", [
    ("comfyui", COMFY + EXTEND, "COPY custom-nodes.txt"),
    ("forge", "\n    gpu: {mode: none}\n    stacks:" + FORGE + EXTEND, "launch.py"),
])
def test_extension_steps_come_after_the_expensive_layers(tmp_path, name, body, expensive):
    stack = render(tmp_path, body, name)
    text = dockerfile(stack)
    steps = lint_dockerfile(text)
    keywords = [(k, rest) for k, rest in steps]
    first_ext = next(i for i, (k, rest) in enumerate(keywords) if "apt-get install" in rest
                     and "ffmpeg" in rest)
    heavy = max(i for i, (k, rest) in enumerate(keywords)
                if k in ("RUN", "COPY") and (expensive in rest or "torch" in rest))
    assert first_ext > heavy
    after = keywords[first_ext:]
    assert "ffmpeg libsm6" in after[0][1] and "rm -rf /var/lib/apt/lists" in after[0][1]
    assert after[1] == ("RUN", 'pip install --index-url "${PIP_INDEX_URL}" onnxruntime==1.19.2 '
                               "'insightface[extra]==0.7.3'")
    assert after[2] == ("COPY", "extend-run.sh /opt/genai/extend-run.sh")
    assert after[3] == ("RUN", "sh -eu /opt/genai/extend-run.sh")
    assert after[4][0] == "EXPOSE" or after[4] == ("ARG", after[4][1])
    script = stack.files["build/extend-run.sh"].content
    assert script.endswith("python -c 'import sys; print(sys.version)' > "
                           "/opt/genai/python-version\n")
    assert stack.image_build.files["extend-run.sh"].content == script


def test_no_extension_leaves_the_dockerfile_as_shipped(tmp_path):
    files = Path(__file__).parents[1] / "files"
    shipped = app_dockerfile(lambda name: (files / name).read_text(), "comfyui")
    text = dockerfile(render(tmp_path, COMFY))
    assert "Added from the inventory" not in text
    assert text.splitlines()[:40] == shipped.splitlines()[:40]


def test_an_extension_change_keeps_the_layers_before_it_and_the_other_app(tmp_path):
    """Only the touched app's build hash changes, and its Dockerfile is the same text up to the
    extension (Docker's layer cache keeps PyTorch and the requirements)."""
    body = COMFY + EXTEND + FORGE
    before = {n: render(tmp_path, body, n) for n in ("comfyui", "forge")}
    changed = body.replace("onnxruntime==1.19.2", "onnxruntime==1.20.1")
    after = {n: render(tmp_path, changed, n) for n in ("comfyui", "forge")}
    assert before["forge"].image_build.build_hash == after["forge"].image_build.build_hash
    assert dockerfile(before["forge"]) == dockerfile(after["forge"])
    assert before["comfyui"].image_build.build_hash != after["comfyui"].image_build.build_hash
    old, new = dockerfile(before["comfyui"]), dockerfile(after["comfyui"])
    cut = old.index("# image.extend.pip")
    assert old[:cut] == new[:cut] and old[cut:] != new[cut:]


@pytest.mark.parametrize("value,message", [
    ("onnxruntime", "does not have the expected form"),
    ("onnxruntime>=1.19", "does not have the expected form"),
    ("onnxruntime==", "does not have the expected form"),
    ("git+https://example.org/x.git", "does not have the expected form"),
])
def test_an_unpinned_pip_package_is_refused_with_the_fix(tmp_path, value, message):
    body = COMFY + EXTEND.replace('"onnxruntime==1.19.2"', json.dumps(value))
    with pytest.raises(InventoryError) as caught:
        load(tmp_path, body)
    text = caught.value.render()
    assert "inventory.yaml:" in text and "stacks.comfyui.image.extend.pip.0" in text
    assert message in text and "name==version" in text


def test_pip_and_apt_forms_are_the_schema_patterns():
    items = schema()["$defs"]["image"]["properties"]["extend"]["properties"]
    assert items["pip"]["items"]["pattern"] == image_spec.PIP_PIN
    assert items["apt"]["items"]["pattern"] == image_spec.APT_PACKAGE
    assert schema()["$defs"]["custom_node"]["properties"]["name"]["pattern"] == \
        image_spec.NODE_NAME


def _fake_token(prefix: str) -> str:
    return prefix + "".join("abcdefghij0123456789"[(i * 7) % 20] for i in range(30))


@pytest.mark.parametrize("line,word", [
    (lambda: f"HF_TOKEN={_fake_token('hf_')} huggingface-cli download x", "token"),
    (lambda: "curl --password s3cr3t-pass https://example.org/x", "--password"),
    (lambda: "export API_KEY=abc; wget https://example.org/f", "API_KEY"),
    (lambda: "wget --header \"Authorization: Bearer $CIVITAI_TOKEN\" https://x.example/m",
     "CIVITAI_TOKEN"),
    (lambda: "pip download https://user:pw@example.org/simple/x", "password"),
])
def test_a_build_command_with_a_credential_is_refused(tmp_path, line, word):
    text = line()
    body = COMFY + EXTEND.replace(
        "\"python -c 'import sys; print(sys.version)' > /opt/genai/python-version\"",
        json.dumps(text))
    with pytest.raises(InventoryError) as caught:
        load(tmp_path, body)
    rendered = caught.value.render()
    assert "stacks.comfyui.image.extend.run.0" in rendered and "fix:" in rendered
    assert word.lower() in rendered.lower()
    for part in re.findall(r"hf_\w+|s3cr3t-pass|user:pw", text):
        assert part not in rendered  # the value is never echoed


def test_the_render_refuses_what_the_loader_refuses(tmp_path):
    data = load(tmp_path, COMFY)  # then edited past the loader (host data from another tool)
    data["stacks"]["comfyui"].setdefault("image", {})["extend"] = {"pip": ["torch"]}
    with pytest.raises(StackError, match=r"stacks.comfyui.image.extend.pip.0: 'torch' is not "
                                         r"pinned[\s\S]*name==version"):
        render_stack("comfyui", data, {})


# ------------------------------------------------------------------------------ own image

OWN = """
        image: {build: false, name: "registry.example/forge-mine:1.2", entrypoint: keep}
"""


def test_own_image_keeps_its_entrypoint_and_gets_the_same_service(tmp_path):
    built = render(tmp_path, COMFY)
    own = render(tmp_path, COMFY + OWN)
    assert own.image_build is None
    services = {"built": yaml.safe_load(built.files["compose.yaml"].content)["services"],
                "own": yaml.safe_load(own.files["compose.yaml"].content)["services"]}
    mine, theirs = services["own"]["comfyui"], services["built"]["comfyui"]
    assert mine["image"] == "registry.example/forge-mine:1.2"
    assert "entrypoint" not in mine and "pull_policy" not in mine
    for key in ("user", "command", "volumes", "healthcheck", "environment", "ports"):
        assert mine[key] == theirs[key], key
    assert own.health == built.health
    replaced = render(tmp_path, COMFY + OWN.replace("entrypoint: keep",
                                                    "entrypoint: [/usr/local/bin/start, --x]"))
    config = compose_config(write(replaced, tmp_path / "out"))
    assert config["services"]["comfyui"]["entrypoint"] == ["/usr/local/bin/start", "--x"]


def test_own_image_reading_its_arguments_from_a_variable(tmp_path):
    """image.args_env: the arguments as shell words in that variable, the image's CMD kept
    (an empty compose command), everything else as for a built app."""
    built = render(tmp_path, COMFY)
    own = render(tmp_path, COMFY + OWN.replace("entrypoint: keep", "args_env: CLI_ARGS"))
    config = compose_config(write(own, tmp_path / "out"))["services"]["comfyui"]
    theirs = yaml.safe_load(built.files["compose.yaml"].content)["services"]["comfyui"]
    assert not config.get("command")
    assert config["environment"]["CLI_ARGS"] == " ".join(theirs["command"])
    assert config["user"] == theirs["user"] and config["healthcheck"]["test"] == \
        theirs["healthcheck"]["test"]
    with pytest.raises(StackError, match="CUDA_DEVICE_ORDER is set by genai-workstation"):
        render(tmp_path, COMFY + OWN.replace("entrypoint: keep", "args_env: CUDA_DEVICE_ORDER"))


@pytest.mark.parametrize("image,field,words", [
    ('{build: false, name: "mine:1", extend: {apt: [ffmpeg]}}', "image.extend",
     "build setting"),
    ('{build: false, name: "mine:1", base_image: "x:1"}', "image.base_image", "build setting"),
    ('{build: false}', "image.name", "no image is named"),
    ('{build: false, name: "Mine Image"}', "image.name", "not an image reference"),
    ('{entrypoint: keep}', "image.entrypoint", "your own image only"),
    ('{args_env: CLI_ARGS}', "image.args_env", "your own image only"),
    ('{build: false, name: "mine:1", args_env: "CLI-ARGS"}', "image.args_env", "expected form"),
    ('{build: false, name: "mine:1", entrypoint: start}', "image.entrypoint",
     "expected form"),
])
def test_own_image_settings_are_validated(tmp_path, image, field, words):
    with pytest.raises(InventoryError) as caught:
        load(tmp_path, COMFY + f"        image: {image}\n")
    text = caught.value.render()
    assert f"stacks.comfyui.{field}" in text and words in text and "fix:" in text


def test_own_image_with_custom_nodes_is_refused(tmp_path):
    body = COMFY + OWN + '        custom_nodes: [{url: "https://example.org/n.git", ref: v1}]\n'
    with pytest.raises(InventoryError, match="custom_nodes: custom nodes are baked"):
        load(tmp_path, body)


# ------------------------------------------------------------------------------ local nodes


def node_folder(root: Path, name: str = "my-nodes") -> Path:
    folder = root / name
    (folder / "web").mkdir(parents=True)
    (folder / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    (folder / "requirements.txt").write_text("tinynode-dep==1.0\n")
    (folder / "web" / "x.js").write_text("// js\n")
    (folder / ".env").write_text("API_KEY=do-not-bake\n")
    (folder / "deploy.pem").write_text("-----BEGIN-----\n")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "a.pyc").write_bytes(b"\0")
    return folder


def test_a_local_node_is_copied_with_its_requirements_and_without_secret_files(tmp_path):
    node_folder(tmp_path / "nodes")
    body = COMFY + ("        custom_nodes:\n"
                    '          - {url: "https://example.org/ComfyUI-Login.git", ref: v1}\n'
                    "          - {path: nodes/my-nodes}\n")
    stack = render(tmp_path, body)
    files = sorted(p for p in stack.files if p.startswith("build/local-nodes/"))
    assert files == ["build/local-nodes/my-nodes/__init__.py",
                     "build/local-nodes/my-nodes/requirements.txt",
                     "build/local-nodes/my-nodes/web/x.js"]
    assert any(".env" in w and "deploy.pem" in w and "custom_nodes.1.path" in w
               for w in stack.warnings)
    steps = instructions_after(dockerfile(stack), "custom-nodes.txt")
    assert ("COPY", "local-nodes/my-nodes/requirements.txt "
                    "/opt/genai/local-nodes/my-nodes/requirements.txt") in steps
    assert ("COPY", "local-nodes/my-nodes/ /opt/comfyui/custom_nodes/my-nodes/") in steps
    assert stack.files["build/custom-nodes.txt"].content.count("\n") == 2  # git node only
    # From the least to the most often changed: the node's requirements, the pins, its code.
    ordered = render(tmp_path, body + EXTEND)
    text = dockerfile(ordered)
    assert text.index("COPY local-nodes/my-nodes/requirements.txt") < \
        text.index("RUN pip install --index-url \"${PIP_INDEX_URL}\" onnxruntime") < \
        text.index("COPY local-nodes/my-nodes/ ") < text.index("COPY extend-run.sh")
    edited = (tmp_path / "nodes" / "my-nodes" / "__init__.py")
    edited.write_text("NODE_CLASS_MAPPINGS = {'X': object}\n")
    assert render(tmp_path, body).image_build.build_hash != stack.image_build.build_hash


@pytest.mark.parametrize("setup,node,words", [
    (lambda root: None, "{path: nowhere}", "is not a folder"),
    (lambda root: (root / "empty").mkdir(), "{path: empty}", "has no __init__.py"),
    (lambda root: node_folder(root, "Login"),
     '{path: Login, name: ComfyUI-Login}', "already named ComfyUI-Login"),
    (lambda root: node_folder(root), "{path: my-nodes, ref: v1}", "git node only"),
    (lambda root: None, "{url: https://example.org/x.git}", "needs its ref"),
    (lambda root: None, "{name: x}", "either url (+ ref) or path"),
])
def test_local_node_problems_name_the_field_and_the_fix(tmp_path, setup, node, words):
    setup(tmp_path)
    body = COMFY + ("        custom_nodes:\n"
                    '          - {url: "https://example.org/ComfyUI-Login.git", ref: v1}\n'
                    f"          - {node}\n")
    with pytest.raises(InventoryError) as caught:
        load(tmp_path, body)
    text = caught.value.render()
    assert "stacks.comfyui.custom_nodes.1" in text and words in text and "fix:" in text


def test_a_local_node_holding_a_secret_value_or_a_link_is_not_baked(tmp_path):
    """A node file with one of the host's secret values stops the render (the image would keep
    it); a symbolic link is left out with a warning (it could point anywhere)."""
    folder = node_folder(tmp_path / "nodes")
    (folder / "outside").symlink_to("/etc/hostname")
    body = COMFY + "        custom_nodes: [{path: nodes/my-nodes}]\n"
    stack = render(tmp_path, body)
    assert "build/local-nodes/my-nodes/outside" not in stack.files
    assert any("outside (a symbolic link)" in w for w in stack.warnings)
    (folder / "config.py").write_text(f"PASSWORD = {PASSWORD!r}\n")
    with pytest.raises(StackError) as caught:  # the app's login password, in the secrets file
        render(tmp_path, body + "        auth: {type: basic, username: jesse}\n")
    assert "build/local-nodes/my-nodes/config.py" in str(caught.value)
    assert PASSWORD not in str(caught.value)
