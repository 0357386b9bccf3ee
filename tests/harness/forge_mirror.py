"""The Forge build inputs for tests/harness/mirror.py: git mirrors of Forge and the four
repositories its installer clones (../shared/upstream), its wheelhouse, and the inventory's
Forge installer settings that point at the mirror."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.harness.mirror import (
    WHEELHOUSE_ROOT,
    MirrorServer,
    _record_line,
    git_mirror,
    repack_torchvision_for_cpu,
)

FORGE_REF = "forge-1b44ae22"  # the tag in stable-diffusion-webui-forge.bundle
# The repositories Forge's installer clones: (bundle, tag, its *_REPO and commit variables).
FORGE_CLONES = (
    ("stable-diffusion-webui-assets", "assets-6f7db241", "ASSETS_REPO", "ASSETS_COMMIT_HASH"),
    ("huggingface_guess", "hfguess-84826248", "HUGGINGFACE_GUESS_REPO", "HUGGINGFACE_GUESS_HASH"),
    ("google_blockly_prototypes", "blockly-1e98997c", "GOOGLE_BLOCKLY_REPO",
     "GOOGLE_BLOCKLY_COMMIT_HASH"),
    ("BLIP", "blip-48211a15", "BLIP_REPO", "BLIP_COMMIT_HASH"),
)
# Forge's installer fetches CLIP and open_clip as GitHub archives; from an index: the same code
# as packages (openai-clip is openai/CLIP; open-clip-torch is pinned in requirements_versions).
FORGE_PACKAGES = {"CLIP_PACKAGE": "openai-clip==1.0.1",
                  "OPENCLIP_PACKAGE": "open-clip-torch==2.20.0"}
FORGE_TORCH = ["torch==2.13.0", "torchvision==0.28.0"]
_FORGE_EXTRA_REQUIREMENTS = ("extensions-builtin/forge_legacy_preprocessors/requirements.txt",
                             "extensions-builtin/sd_forge_controlnet/requirements.txt")


FORGE_UPSTREAM_COMMIT = "1b44ae22e3996b8af048f268bd076702b296b469"  # FORGE_REF's upstream


def forge_sources(upstream: Path, git_root: Path) -> list[Path]:
    """Bare mirrors of Forge and the four repositories it clones; its requirement files
    (requirements_versions.txt and its built-in extensions' requirements)."""
    git_root.mkdir(parents=True, exist_ok=True)
    forge = git_mirror(upstream / "stable-diffusion-webui-forge.bundle", git_root)
    for bundle, _tag, _repo, _commit in FORGE_CLONES:
        git_mirror(upstream / f"{bundle}.bundle", git_root)
    files = []
    for index, path in enumerate(("requirements_versions.txt", *_FORGE_EXTRA_REQUIREMENTS)):
        text = subprocess.run(["git", "-C", str(forge), "show", f"{FORGE_REF}:{path}"],
                              check=True, capture_output=True, text=True).stdout
        files.append(git_root / f"forge-{index}.requirements.txt")
        files[-1].write_text(text)
    return files


def forge_wheelhouse(requirement_files: list[Path]) -> Path:
    """The Forge wheelhouse: ``pip wheel`` (Forge needs a few sdist-only packages built) of its
    requirements, CLIP and the CPU torch, repacked first (repack_torch_without_setuptools).
    pip runs without this machine's find-links and constraints, so that the repacked torch is
    the only 2.13.0+cpu it sees."""
    folder = WHEELHOUSE_ROOT / "forge"
    folder.mkdir(parents=True, exist_ok=True)
    source = next(Path(os.environ.get("PIP_FIND_LINKS", "/opt/wheels")).glob(
        "torch-2.13.0+cpu-cp311-*.whl"))
    torch = repack_torch_without_setuptools(source, folder)
    pins = [f"torch=={torch.name.split('-')[1]}", FORGE_TORCH[1], "pip",
            *FORGE_PACKAGES.values()]
    texts = [*pins, *(p.read_text() for p in requirement_files)]
    stamp = folder / f".complete-{hashlib.sha256(chr(10).join(texts).encode()).hexdigest()[:16]}"
    if not stamp.exists():
        constraints = folder / ".constraints.txt"
        constraints.write_text(pins[0] + "\n")
        argv = [sys.executable, "-m", "pip", "wheel", "--progress-bar", "off",
                "--disable-pip-version-check", "--find-links", str(folder), "-w", str(folder),
                "-c", str(constraints), *pins]
        for path in requirement_files:
            argv += ["-r", str(path)]
        env = {k: v for k, v in os.environ.items() if k != "PIP_FIND_LINKS"}
        result = subprocess.run(argv, capture_output=True, text=True, timeout=3000,
                                env={**env, "PIP_CONFIG_FILE": os.devnull})
        if result.returncode != 0:
            raise RuntimeError(f"pip wheel failed:\n{result.stdout[-3000:]}\n"
                               f"{result.stderr[-3000:]}")
        stamp.write_text("\n".join(texts))
    repack_torchvision_for_cpu(folder)
    return folder


def forge_wheelhouse_of(upstream: Path, git_root: Path) -> Path:
    """Forge's git mirrors under `git_root` and its wheelhouse (for mirror.upstream_mirror)."""
    return forge_wheelhouse(forge_sources(upstream, git_root))


def forge_installer_env(mirror: MirrorServer) -> dict[str, str]:
    """The inventory's `image.installer_env` for Forge's installer to use this mirror."""
    env = dict(FORGE_PACKAGES)
    for bundle, tag, repo, commit in FORGE_CLONES:
        env[repo], env[commit] = f"{mirror.url}/git/{bundle}.git", tag
    return env


def repack_torch_without_setuptools(source: Path, wheels: Path) -> Path:
    """A copy of the CPU torch wheel without its ``setuptools>=77`` requirement, in `wheels`.

    Forge pins ``setuptools==69.5.1`` (requirements_versions.txt) for the torch it pins (2.3.1,
    which does not require setuptools); the only torch this machine has offline is 2.13, which
    does, and pip then refuses Forge's requirements. torch needs setuptools only to build C++
    extensions. NOT what a user installs: a user's build takes Forge's own torch pins."""
    target = wheels / source.name
    if target.exists():
        return target
    partial = target.with_suffix(".partial")
    records = []
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED,
                                                         compresslevel=1) as zout:
        for item in zin.infolist():
            if item.filename.endswith(".dist-info/RECORD"):
                record_name = item.filename
                continue
            data = zin.read(item.filename)
            if item.filename.endswith(".dist-info/METADATA"):
                data = re.sub(rb"Requires-Dist: setuptools[^\n]*\n", b"", data)
            zout.writestr(item, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)
            records.append(_record_line(item.filename, data))
        records.append(f"{record_name},,")
        zout.writestr(record_name, "\n".join(records) + "\n")
    os.replace(partial, target)
    return target
