"""What the Forge image build takes beyond the shared image settings (stacks.forge.image).

- ``torch_packages``: the PyTorch layer, installed from ``torch_index_url`` BEFORE Forge is
  cloned (a new Forge ref keeps it); Forge's installer then finds torch installed and never runs
  its own TORCH_COMMAND. Default: the pins of that TORCH_COMMAND at the commit the image pins.
- ``installer_env``: the environment of Forge's installer (``launch.py --exit`` at build time),
  by the names Forge reads (modules/launch_utils.py ``prepare_environment`` and the built-in
  extensions' ``install.py``): where it clones its four repositories from and at which commit
  (a mirror's URL and a tag or commit it has), and the packages it installs from URLs.

Both become build-context content (``torch-requirements.txt``, the Dockerfile's ``ARG``
defaults), so they are part of the build hash.
"""

from __future__ import annotations

import re

from genai_workstation.stacks.errors import StackError

# Forge 1b44ae22's TORCH_COMMAND: pip install torch==2.3.1 torchvision==0.18.1.
DEFAULT_TORCH_PACKAGES = ("torch==2.3.1", "torchvision==0.18.1")
INSTALLER_ENV = (
    "ASSETS_REPO", "ASSETS_COMMIT_HASH", "HUGGINGFACE_GUESS_REPO", "HUGGINGFACE_GUESS_HASH",
    "GOOGLE_BLOCKLY_REPO", "GOOGLE_BLOCKLY_COMMIT_HASH", "BLIP_REPO", "BLIP_COMMIT_HASH",
    "CLIP_PACKAGE", "OPENCLIP_PACKAGE", "INSIGHTFACE_WHEEL", "HANDREFINER_WHEEL",
    "DEPTH_ANYTHING_WHEEL", "DEPTH_ANYTHING_V2_WHEEL",
)
_REQUIREMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,-]+\])?"
                          r"([<>=!~]=?[A-Za-z0-9.*+!_-]+(,[<>=!~]=?[A-Za-z0-9.*+!_-]+)*)?$")
_UNSAFE = re.compile(r"[\s'\"\\$`]")
FIELD = "stacks.forge.image"


def torch_requirements(image: dict) -> str:
    """The PyTorch layer's requirements file (one requirement a line)."""
    packages = image.get("torch_packages") or list(DEFAULT_TORCH_PACKAGES)
    for index, package in enumerate(packages):
        if not _REQUIREMENT.match(str(package)):
            raise StackError(f"{FIELD}.torch_packages.{index}: {package!r} is not a pip "
                             "requirement", "e.g. torch==2.3.1 (no spaces, no URL)")
    return "# the PyTorch layer, from torch_index_url\n" + "\n".join(map(str, packages)) + "\n"


def installer_args(image: dict) -> dict[str, str]:
    """Every installer variable as a build argument; "" keeps Forge's own default."""
    env = image.get("installer_env") or {}
    for name, value in env.items():
        if name not in INSTALLER_ENV:
            raise StackError(f"{FIELD}.installer_env.{name}: Forge's installer does not read "
                             "this name", "one of " + ", ".join(INSTALLER_ENV))
        if not value or _UNSAFE.search(str(value)):
            raise StackError(f"{FIELD}.installer_env.{name}: {value!r} cannot be used",
                             "a URL, commit, tag or requirement without spaces, quotes, "
                             "backslashes or $")
    return {name: str(env.get(name) or "") for name in INSTALLER_ENV}
