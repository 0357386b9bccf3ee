"""Migration of an A1111/Forge model tree into ComfyUI names: plan, verified copy, duplicates."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from genai_workstation.models import downloader, migrate

REPO = Path(__file__).resolve().parent.parent


def make_webui(root: Path) -> dict[str, bytes]:
    files = {
        "models/Stable-diffusion/sdxl/base.safetensors": b"checkpoint" * 5000,
        "models/Stable-diffusion/v2.yaml": b"model: config\n",
        "models/Lora/detail.safetensors": b"lora-detail" * 3000,
        "models/LyCORIS/detail-copy.safetensors": b"lora-detail" * 3000,  # duplicate
        "models/VAE/vae-ft-mse.pt": b"vae" * 4000,
        "models/ESRGAN/4x-UltraSharp.pth": b"esrgan" * 2000,
        "models/RealESRGAN/RealESRGAN_x4plus.pth": b"realesrgan" * 2000,
        "models/ControlNet/canny.safetensors": b"controlnet" * 2500,
        "models/hypernetworks/h.pt": b"hyper" * 100,
        "models/text_encoder/t5xxl.safetensors": b"t5" * 7000,
        "models/Lora/detail.preview.png": b"\x89PNG preview",
        "models/Lora/detail.civitai.info": b"{}",
        "models/deepbooru/model.pt": b"not for comfy",
        "embeddings/easynegative.safetensors": b"embedding" * 100,
        "extensions/sd-webui-controlnet/README.md": b"ignored",
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def test_plan_maps_a1111_names_and_finds_the_duplicate(tmp_path):
    source = tmp_path / "mnt" / "d" / "stable-diffusion-webui"
    make_webui(source)
    plan = migrate.plan(source, tmp_path / "srv" / "models")
    where = {str(m.source.relative_to(source)): m.rel for m in plan.moves}
    assert where == {
        "models/Stable-diffusion/sdxl/base.safetensors": "checkpoints/sdxl/base.safetensors",
        "models/Stable-diffusion/v2.yaml": "checkpoints/v2.yaml",
        "models/Lora/detail.safetensors": "loras/detail.safetensors",
        "models/LyCORIS/detail-copy.safetensors": "loras/detail-copy.safetensors",
        "models/VAE/vae-ft-mse.pt": "vae/vae-ft-mse.pt",
        "models/ESRGAN/4x-UltraSharp.pth": "upscale_models/4x-UltraSharp.pth",
        "models/RealESRGAN/RealESRGAN_x4plus.pth": "upscale_models/RealESRGAN_x4plus.pth",
        "models/ControlNet/canny.safetensors": "controlnet/canny.safetensors",
        "models/hypernetworks/h.pt": "hypernetworks/h.pt",
        "models/text_encoder/t5xxl.safetensors": "text_encoders/t5xxl.safetensors",
        "embeddings/easynegative.safetensors": "embeddings/easynegative.safetensors",
    }
    (dup,) = plan.duplicates
    assert dup.source.name == "detail-copy.safetensors"
    assert dup.duplicate_of.name == "detail.safetensors"
    text = plan.render()
    assert "duplicate of" in text and "free in" in text and "to copy: 10 files" in text
    assert "deepbooru" in text  # reported as skipped, not silently dropped
    assert not (tmp_path / "srv").exists()  # a plan writes nothing


def test_apply_copies_verified_once_and_keeps_the_source(tmp_path):
    source = tmp_path / "webui"
    files = make_webui(source)
    models = tmp_path / "models"
    out = io.StringIO()
    summary = migrate.apply(migrate.plan(source, models),
                            progress=downloader.Progress(stream=out, tty=False))
    assert summary["copied"] == 10 and summary["duplicates"] == 1 and summary["deleted"] == 0
    assert (models / "loras" / "detail.safetensors").read_bytes() == \
        files["models/Lora/detail.safetensors"]
    assert not (models / "loras" / "detail-copy.safetensors").exists()
    for rel in files:
        assert (source / rel).exists()  # nothing deleted without --delete-source
    assert not list(models.rglob("*.part"))
    sidecar = json.loads((models / downloader.SIDECAR).read_text())["files"]
    base = files["models/Stable-diffusion/sdxl/base.safetensors"]
    assert sidecar["checkpoints/sdxl/base.safetensors"]["sha256"] == \
        hashlib.sha256(base).hexdigest()
    # A second plan finds everything in place.
    again = migrate.plan(source, models)
    assert not again.to_copy and all(m.already or m.duplicate_of for m in again.moves)


def test_delete_source_only_after_verified_copy(tmp_path):
    source = tmp_path / "models-on-d"
    (source / "Lora").mkdir(parents=True)
    (source / "Lora" / "a.safetensors").write_bytes(b"a" * 1000)
    (source / "LyCORIS").mkdir()
    (source / "LyCORIS" / "a-again.safetensors").write_bytes(b"a" * 1000)
    (source / "VAE").mkdir()
    (source / "VAE" / "v.safetensors").write_bytes(b"v" * 10)
    models = tmp_path / "models"
    (models / "vae").mkdir(parents=True)
    (models / "vae" / "v.safetensors").write_bytes(b"different")  # a conflict: kept
    plan = migrate.plan(source, models)
    assert len(plan.conflicts) == 1
    summary = migrate.apply(plan, delete_source=True,
                            progress=downloader.Progress(stream=io.StringIO(), tty=False))
    assert summary["deleted"] == 2  # the copy and its duplicate
    assert not (source / "Lora" / "a.safetensors").exists()
    assert not (source / "LyCORIS" / "a-again.safetensors").exists()
    assert (source / "VAE" / "v.safetensors").exists()  # conflict: not copied, not deleted
    assert (models / "vae" / "v.safetensors").read_bytes() == b"different"


def test_cli_plans_first_then_applies(tmp_path):
    source = tmp_path / "webui"
    make_webui(source)
    models = tmp_path / "models"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_TOKEN")}
    env["GENAI_SECRETS"] = str(tmp_path / "none.env")
    command = [sys.executable, "-m", "genai_workstation.models", "migrate", str(source),
               "--models-dir", str(models)]
    planned = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert planned.returncode == 0, planned.stderr
    assert "migration plan" in planned.stdout and "--apply" in planned.stdout
    assert not models.exists()
    applied = subprocess.run(command + ["--apply"], cwd=REPO, env=env, capture_output=True,
                             text=True)
    assert applied.returncode == 0, applied.stderr
    assert "10 copied" in applied.stdout and "1 duplicates not copied" in applied.stdout
    assert (models / "checkpoints" / "sdxl" / "base.safetensors").exists()
