"""Command-line flags of ComfyUI and Forge as a hand-kept compose file passes them."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Flags that take a value (the ones users put in compose files; others are read as switches
# unless the next word is clearly a value).
_VALUED = {
    "--port", "--gpu-device-id", "--device-id", "--cuda-device", "--gradio-auth", "--api-auth",
    "--gradio-auth-path", "--server-name", "--ngrok", "--ckpt-dir", "--lora-dir", "--vae-dir",
    "--models-dir", "--data-dir", "--output-directory", "--input-directory", "--user-directory",
    "--temp-directory", "--base-directory", "--extra-model-paths-config", "--text-encoder-dir",
    "--embeddings-dir", "--hypernetwork-dir", "--controlnet-dir", "--esrgan-models-path",
    "--preview-method", "--reserve-vram", "--cache-lru", "--front-end-version", "--ckpt",
    "--vae-path", "--gfpgan-models-path", "--codeformer-models-path", "--lyco-dir",
    "--lora-dir-backcompat", "--clip-models-path", "--ui-settings-file", "--ui-config-file",
}
# Flags genai-workstation sets itself for each app (listening address, ports, GPU pin, folders).
MANAGED = {
    "comfyui": {"--listen", "--port", "--cuda-device", "--cpu", "--disable-auto-launch",
                "--input-directory", "--output-directory", "--user-directory",
                "--temp-directory", "--base-directory", "--extra-model-paths-config"},
    "forge": {"--listen", "--server-name", "--port", "--api", "--gpu-device-id", "--device-id",
              "--skip-prepare-environment", "--skip-install", "--skip-version-check",
              "--skip-torch-cuda-test", "--no-download-sd-model", "--data-dir", "--always-cpu",
              "--ckpt-dir", "--lora-dir", "--vae-dir", "--text-encoder-dir", "--embeddings-dir",
              "--hypernetwork-dir", "--controlnet-dir", "--esrgan-models-path", "--models-dir"},
}
CREDENTIAL_FLAGS = ("--gradio-auth", "--api-auth")
TUNNEL_FLAGS = ("--share", "--ngrok", "--cloudflared", "--localhostrun")


@dataclass(frozen=True)
class Flag:
    name: str
    value: str | None


def app_flags(argv: tuple[str, ...], entry: re.Pattern) -> list[Flag]:
    """The flags after the app's entry point (`main.py`, `launch.py`, ...), or all of argv's
    flags when no entry point is named (images that take only the app's arguments)."""
    words = list(argv)
    for index, word in enumerate(words):
        if entry.search(word):
            words = words[index + 1:]
            break
    flags, index = [], 0
    while index < len(words):
        word = words[index]
        index += 1
        if not word.startswith("--"):
            if word in ("&&", ";", "|", "||"):
                break
            continue
        name, equals, value = word.partition("=")
        if equals:
            flags.append(Flag(name, value))
            continue
        following = words[index] if index < len(words) else None
        takes_value = name in _VALUED or (name == "--listen" and following
                                          and re.match(r"^[\d.:\[\]a-f]+$", following))
        if takes_value and following is not None and not following.startswith("--"):
            flags.append(Flag(name, following))
            index += 1
        else:
            flags.append(Flag(name, None))
    return flags


def flag_value(flags: list[Flag], *names: str) -> str | None:
    for flag in flags:
        if flag.name in names:
            return flag.value
    return None


def as_args(flag: Flag) -> list[str]:
    return [flag.name] if flag.value is None else [flag.name, flag.value]
