"""Build-cache benchmark: the REAL ComfyUI (or Forge) image, rebuilt the way a user changes it.

    GENAI_UPSTREAM_DIR=../shared/upstream .venv/bin/python bench/bench_builds.py \
        [--app comfyui|forge] [--out bench/results/builds.json]

A throw-away test Docker engine (tests/harness/docker_engine.py, empty data root: the first
build starts from the base image only) builds files/comfyui/Dockerfile as the product renders
it (genai_workstation.stacks.render; the command is ImageBuild.argv, the one the lifecycle
runs), offline, from the local mirror of tests/harness/mirror.py. Four builds, in order:

1. first build (no custom node, ComfyUI at v0.3.64),
2. no change (the same build context again),
3. ref bump (ComfyUI at a new commit on top of v0.3.64, made in the bench's git mirror),
4. custom node added (ComfyUI-Login in custom_nodes).

With ``--app forge``: files/forge/Dockerfile (Forge at its pinned commit, its installer's
clones and CLIP from the mirror, tests/harness/forge_mirror.py), builds 1-3 (no custom nodes);
written to bench/results/builds-forge.json by default.

For each: wall seconds of `docker build`, and bytes the local package index served (its
pages and wheels, counted at the server), plus git and apt bytes. Needs root and the test
harness' tools; the wheelhouse is the tests' cached one ($GENAI_TEST_CACHE/wheelhouse/comfyui).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from genai_workstation.loader import load_inventory  # noqa: E402
from genai_workstation.stacks.render import render_stack  # noqa: E402
from tests.harness import forge_mirror as fm  # noqa: E402
from tests.harness import mirror as mr  # noqa: E402
from tests.harness.docker_engine import DockerEngine  # noqa: E402

BUMP_TAG = "bench-bump"


def bump_ref(git_root: Path, repo: str = "ComfyUI", ref: str = mr.COMFYUI_REF) -> str:
    """A new commit on top of `ref` in the `repo` mirror, tagged BUMP_TAG."""
    bare = git_root / f"{repo}.git"
    with tempfile.TemporaryDirectory() as work:
        run = ["git", "-C", work, "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
        subprocess.run(["git", "clone", "-q", str(bare), work], check=True)
        subprocess.run([*run[:3], "checkout", "-q", ref], check=True)
        Path(work, "BENCH_BUMP.txt").write_text("a new upstream commit\n")
        subprocess.run([*run, "add", "BENCH_BUMP.txt"], check=True)
        subprocess.run([*run, "commit", "-q", "-m", "bench: bump"], check=True)
        subprocess.run([*run, "tag", "-f", BUMP_TAG], check=True, capture_output=True)
        subprocess.run([*run, "push", "-q", "-f", "origin", f"refs/tags/{BUMP_TAG}"], check=True)
    subprocess.run(["git", "-C", str(bare), "update-server-info"], check=True)
    return BUMP_TAG


def build(engine: DockerEngine, mirror, workdir: Path, spec: dict, app: str = "comfyui") -> dict:
    settings = {"user": {"name": "bench", "uid": 1000, "gid": 1000},
                "workspace": str(workdir / "ws"), "gpu": {"mode": "none"},
                "stacks": {app: spec}}
    inventory = workdir / "inventory.yaml"
    inventory.write_text(yaml.safe_dump({"hosts": {"bench": settings}}))
    host_data = load_inventory(inventory, environ={}).hosts["bench"]  # defaults resolved
    stack = render_stack(app, host_data, {})
    context = workdir / "context"
    subprocess.run(["rm", "-rf", str(context)], check=True)
    for path, rendered in stack.image_build.files.items():
        (context / path).parent.mkdir(parents=True, exist_ok=True)
        (context / path).write_bytes(rendered.data())
    argv = stack.image_build.argv(str(workdir))
    argv[-1] = str(context)
    mirror.reset_counters()
    started = time.monotonic()
    result = subprocess.run(argv, env=engine.environ(), capture_output=True, text=True,
                            timeout=3600)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(result.stdout[-3000:] + result.stderr[-3000:])
    steps = result.stdout.count("---> Running in")
    return {"seconds": round(seconds, 1), "index_bytes": mirror.index_bytes(),
            "git_bytes": mirror.bytes_served["git"], "apt_bytes": mirror.bytes_served["apt"],
            "steps_run": steps, "steps_cached": result.stdout.count("---> Using cache")}


def comfyui_builds(engine: DockerEngine, upstream: Path, tmp: Path) -> tuple[dict, Path]:
    git_root, results = tmp / "git", {}
    wheels = mr.comfyui_wheelhouse(upstream, git_root)
    with mr.serving(engine, wheels, git_root) as mirror:
        comfyui = {"gpu": "none", "port": 8188,
                   "image": mr.image_settings(mirror, engine.base_image, "ComfyUI",
                                              mr.COMFYUI_REF)}
        login = {"url": f"{mirror.url}/git/ComfyUI-Login.git", "ref": mr.LOGIN_REF}
        results["first build"] = build(engine, mirror, tmp, comfyui)
        results["no change"] = build(engine, mirror, tmp, comfyui)
        comfyui["image"]["ref"] = bump_ref(git_root)
        results["ref bump"] = build(engine, mirror, tmp, comfyui)
        comfyui["custom_nodes"] = [login]
        results["custom node added"] = build(engine, mirror, tmp, comfyui)
    return results, wheels


def forge_builds(engine: DockerEngine, upstream: Path, tmp: Path) -> tuple[dict, Path]:
    git_root, results, repo = tmp / "git", {}, "stable-diffusion-webui-forge"
    wheels = fm.forge_wheelhouse_of(upstream, git_root)
    with mr.serving(engine, wheels, git_root) as mirror:
        image = {**mr.image_settings(mirror, engine.base_image, repo, fm.FORGE_REF),
                 "torch_packages": fm.FORGE_TORCH,
                 "installer_env": fm.forge_installer_env(mirror)}
        forge = {"image": image, "instances": [{"name": "one", "port": 7860, "gpu": "none"}]}
        results["first build"] = build(engine, mirror, tmp, forge, "forge")
        results["no change"] = build(engine, mirror, tmp, forge, "forge")
        image["ref"] = bump_ref(git_root, repo, fm.FORGE_REF)
        results["ref bump"] = build(engine, mirror, tmp, forge, "forge")
    return results, wheels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", choices=("comfyui", "forge"), default="comfyui")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out = args.out or str(REPO / "bench" / "results" / (
        "builds.json" if args.app == "comfyui" else "builds-forge.json"))
    upstream = mr.upstream_dir()
    if upstream is None:
        print("no upstream sources (../shared/upstream or GENAI_UPSTREAM_DIR)", file=sys.stderr)
        return 2
    os.environ["GENAI_TEST_DOCKER_FRESH"] = "1"  # an empty data root: a real first build
    engine = DockerEngine().start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-builds-") as tmp:
            runner = comfyui_builds if args.app == "comfyui" else forge_builds
            results, wheels = runner(engine, upstream, Path(tmp))
            size = sum(p.stat().st_size for p in wheels.glob("*.whl"))
    finally:
        engine.stop()
    report = {"app": args.app, "builds": results, "wheelhouse_bytes": size,
              "cores": os.cpu_count(),
              "engine": "dockerd 20.10 (Debian docker.io), classic builder"}
    Path(out).write_text(json.dumps(report, indent=2) + "\n")
    print("| build | seconds | index MB | git MB | apt MB | steps run / cached |")
    print("|---|---|---|---|---|---|")
    for name, row in results.items():
        print(f"| {name} | {row['seconds']} | {row['index_bytes'] / 1e6:.1f} | "
              f"{row['git_bytes'] / 1e6:.1f} | {row['apt_bytes'] / 1e6:.1f} | "
              f"{row['steps_run']} / {row['steps_cached']} |")
    print(f"wheelhouse: {size / 1e6:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
