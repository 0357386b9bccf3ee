"""Bring a model collection from a Windows drive (A1111/Forge names) into the ext4 tree.

Plan first (what goes where, total size, free space, duplicates), then copy: each file is read
once (sha256 in the same pass) into `<dest>.part`, the written copy is read back and must hash
the same, then it is renamed into place. Duplicates (same content twice in the source) are
copied once. Nothing is deleted from the source unless asked, and only after its content is
verified in the destination.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..layout import COMFYUI_MODEL_FOLDERS, LEGACY_MODEL_FOLDERS
from . import downloader
from .downloader import Counter, Progress, VerifiedCache, human

# A1111 / Forge / SD.Next folder names (lower case) -> ComfyUI folder.
A1111_FOLDERS = {
    "stable-diffusion": "checkpoints",
    "lora": "loras",
    "lycoris": "loras",
    "locon": "loras",
    "vae": "vae",
    "vae-approx": "vae_approx",
    "esrgan": "upscale_models",
    "realesrgan": "upscale_models",
    "swinir": "upscale_models",
    "scunet": "upscale_models",
    "dat": "upscale_models",
    "hat": "upscale_models",
    "controlnet": "controlnet",
    "control-lora": "controlnet",
    "t2i-adapter": "controlnet",
    "embeddings": "embeddings",
    "textual_inversion": "embeddings",
    "hypernetworks": "hypernetworks",
    "text_encoder": "text_encoders",
    "text_encoders": "text_encoders",
    "clip": "text_encoders",
    "unet": "diffusion_models",
    "diffusion_models": "diffusion_models",
    "clip_vision": "clip_vision",
}
for _name in COMFYUI_MODEL_FOLDERS:
    A1111_FOLDERS.setdefault(_name.lower(), _name)
for _legacy, _name in LEGACY_MODEL_FOLDERS.items():
    A1111_FOLDERS.setdefault(_legacy, _name)

MODEL_SUFFIXES = {".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft", ".onnx",
                  ".yaml", ".yml"}


@dataclass
class Move:
    source: Path
    rel: str  # below models_dir
    size: int
    sha256: str | None = None
    duplicate_of: Path | None = None  # same content as another source file: not copied
    already: bool = False  # the destination already holds this content


@dataclass
class Plan:
    source: Path
    models_dir: Path
    moves: list[Move] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    conflicts: list[tuple[Move, str]] = field(default_factory=list)
    free: int = 0

    @property
    def to_copy(self) -> list[Move]:
        return [m for m in self.moves if not m.duplicate_of and not m.already]

    @property
    def bytes_to_copy(self) -> int:
        return sum(m.size for m in self.to_copy)

    @property
    def duplicates(self) -> list[Move]:
        return [m for m in self.moves if m.duplicate_of]

    def render(self) -> str:
        lines = [f"migration plan: {self.source} -> {self.models_dir}"]
        for move in self.moves:
            note = ""
            if move.duplicate_of:
                note = f"  (duplicate of {move.duplicate_of}: not copied)"
            elif move.already:
                note = "  (already there, same sha256)"
            lines.append(f"  {move.source.relative_to(self.source)} -> {move.rel} "
                         f"[{human(move.size)}]{note}")
        for move, why in self.conflicts:
            lines.append(f"  CONFLICT {move.source.relative_to(self.source)}: {why}")
        for path, why in self.skipped:
            lines.append(f"  skip {path.relative_to(self.source)}: {why}")
        lines.append(f"to copy: {len(self.to_copy)} files, {human(self.bytes_to_copy)}; "
                     f"duplicates: {len(self.duplicates)}; free in {self.models_dir}: "
                     f"{human(self.free)}"
                     + ("" if self.fits else "  NOT ENOUGH SPACE"))
        return "\n".join(lines)

    @property
    def fits(self) -> bool:
        return self.bytes_to_copy <= self.free


def comfy_folder(name: str) -> str | None:
    return A1111_FOLDERS.get(name.lower())


def plan(source: str | Path, models_dir: str | Path) -> Plan:
    """What goes where. Hashes only files whose size collides (duplicate candidates) or whose
    destination already exists."""
    source, models_dir = Path(source), Path(models_dir)
    result = Plan(source=source, models_dir=models_dir)
    roots = [source]
    if (source / "models").is_dir():  # a webui root: models/ plus embeddings/ beside it
        roots = [source / "models", source]
    seen_dirs = set()
    for root in roots:
        for top in sorted(p for p in root.iterdir() if p.is_dir()):
            if top == source / "models" or top.resolve() in seen_dirs:
                continue
            seen_dirs.add(top.resolve())
            folder = comfy_folder(top.name)
            if folder is None:
                if root != source or len(roots) == 1:
                    result.skipped.append((top, "not a model folder ComfyUI knows"))
                continue
            for path in sorted(top.rglob("*")):
                if not path.is_file() or path.is_symlink():
                    continue
                if path.suffix.lower() not in MODEL_SUFFIXES or path.name.endswith(".part"):
                    result.skipped.append((path, "not a model file (preview, notes, metadata)"))
                    continue
                rel = f"{folder}/{path.relative_to(top).as_posix()}"
                result.moves.append(Move(path, rel, path.stat().st_size))

    by_size: dict[int, list[Move]] = {}
    for move in result.moves:
        by_size.setdefault(move.size, []).append(move)
    for group in by_size.values():
        if len(group) > 1:
            first_by_hash: dict[str, Move] = {}
            for move in group:
                move.sha256 = _sha256(move.source)
                if move.sha256 in first_by_hash:
                    move.duplicate_of = first_by_hash[move.sha256].source
                else:
                    first_by_hash[move.sha256] = move

    targets: dict[str, Move] = {}
    kept = []
    for move in result.moves:
        if move.duplicate_of:
            kept.append(move)
            continue
        if move.rel in targets:
            result.conflicts.append((move, f"{move.rel} would also come from "
                                           f"{targets[move.rel].source}; rename one"))
            continue
        targets[move.rel] = move
        dest = models_dir / move.rel
        if dest.exists():
            if dest.stat().st_size == move.size:
                move.sha256 = move.sha256 or _sha256(move.source)
                if _sha256(dest) == move.sha256:
                    move.already = True
                    kept.append(move)
                    continue
            result.conflicts.append((move, f"{move.rel} exists with different content"))
            continue
        kept.append(move)
    result.moves = kept
    probe = models_dir
    while not probe.exists():
        probe = probe.parent
    result.free = shutil.disk_usage(probe).free
    return result


def apply(plan_: Plan, *, delete_source: bool = False, uid=None, gid=None,
          progress: Progress | None = None) -> dict:
    """Copy what the plan says, verified; delete sources only when asked and verified."""
    progress = progress or Progress()
    say = progress.say
    if not plan_.fits:
        raise downloader.DownloadError(
            f"not enough free space in {plan_.models_dir}: need {human(plan_.bytes_to_copy)}, "
            f"{human(plan_.free)} free")
    models_dir = str(plan_.models_dir)
    downloader._makedirs(models_dir, models_dir, uid, gid)
    cache = VerifiedCache(models_dir, uid, gid)
    copied, verified_hash = [], {}
    total = Counter("migration", plan_.bytes_to_copy)
    progress.add(total)
    with progress:
        for move in plan_.to_copy:
            sha = _copy_verified(move, plan_.models_dir, total, uid, gid)
            verified_hash[move.source] = sha
            cache.record(move.rel, str(plan_.models_dir / move.rel), sha,
                         f"migrated:{move.source}")
            copied.append(move)
            say(f"copied {move.rel} ({human(move.size)}), sha256 {sha} verified")
    progress.remove(total)
    for move in plan_.moves:
        if move.already:
            verified_hash[move.source] = move.sha256
            dest = plan_.models_dir / move.rel
            cache.record(move.rel, str(dest), move.sha256, f"migrated:{move.source}")
    deleted = []
    if delete_source:
        for move in plan_.moves:
            reference = move.duplicate_of or move.source
            sha = verified_hash.get(reference)
            if sha and (move.sha256 is None or move.sha256 == sha):
                move.source.unlink()
                deleted.append(move.source)
        say(f"deleted {len(deleted)} verified source files")
    summary = {"copied": len(copied), "bytes": sum(m.size for m in copied),
               "duplicates": len(plan_.duplicates),
               "already": sum(1 for m in plan_.moves if m.already),
               "conflicts": len(plan_.conflicts), "deleted": len(deleted)}
    say(f"migration: {summary['copied']} copied ({human(summary['bytes'])}), "
        f"{summary['duplicates']} duplicates not copied, {summary['already']} already there, "
        f"{summary['conflicts']} conflicts, {summary['deleted']} source files deleted")
    return summary


def _copy_verified(move: Move, models_dir: Path, counter: Counter, uid, gid) -> str:
    dest = models_dir / move.rel
    downloader._makedirs(str(dest.parent), str(models_dir), uid, gid)
    part = Path(str(dest) + ".part")
    hasher = hashlib.sha256()
    buffer = bytearray(downloader.CHUNK)
    view = memoryview(buffer)
    with open(move.source, "rb", buffering=0) as src, open(part, "wb", buffering=0) as out:
        while True:
            n = src.readinto(buffer)
            if not n:
                break
            hasher.update(view[:n])
            written = 0
            while written < n:
                written += out.write(view[written:n])
            counter.done += n
        os.fsync(out.fileno())
    sha = hasher.hexdigest()
    if move.sha256 and sha != move.sha256:
        part.unlink()
        raise downloader.HashMismatch(str(move.source), move.sha256, sha)
    copy_sha = _sha256(part)
    if copy_sha != sha:
        part.unlink()
        raise downloader.HashMismatch(move.rel + " (copy read back)", sha, copy_sha)
    downloader._own(str(part), uid, gid, 0o644)
    os.replace(part, dest)
    return sha


def _sha256(path: Path) -> str:
    return downloader._hash_file(str(path)).hexdigest()
