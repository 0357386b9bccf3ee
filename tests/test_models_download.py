"""The downloader against a real loopback HTTP server (tests/harness/model_server.py)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from genai_workstation.models import downloader as d

HF_TOKEN = "hf_" + "testtoken" + "A" * 24  # fake, built: no token literal in git
CIVITAI_TOKEN = "0123456789abcdef0123456789abcdef"
REPO = Path(__file__).resolve().parent.parent


def blob(n: int, seed: int = 1) -> bytes:
    return (hashlib.sha256(str(seed).encode()).digest() * (n // 32 + 1))[:n]


def run_sync(specs, models_dir, server=None, tokens=None, **kwargs):
    out = io.StringIO()
    progress = d.Progress(stream=out, tty=False, interval=60)
    kwargs.setdefault("backoff", 0.01)
    kwargs.setdefault("fsync", False)
    if server is not None:
        kwargs.setdefault("hf_endpoint", server.url)
        kwargs.setdefault("civitai_endpoint", server.url)
    result = d.sync(specs, str(models_dir), tokens=tokens, progress=progress, **kwargs)
    return result, out.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_resume_after_cut_fetches_only_missing_bytes(model_server, tmp_path):
    data = blob(3 * (1 << 20) + 17)
    served = model_server.add_file("model.safetensors", data)
    served.cut_after = (1 << 20) + 123
    spec = {"url": f"{model_server.url}/files/model.safetensors", "folder": "checkpoints",
            "sha256": sha(data)}
    result, out = run_sync([spec], tmp_path / "models", model_server)
    assert result.ok, out
    final = tmp_path / "models" / "checkpoints" / "model.safetensors"
    assert final.read_bytes() == data
    assert not Path(str(final) + ".part").exists()
    # Everything crossed the wire exactly once: the retry asked only for the missing bytes.
    assert served.sent == len(data)
    ranges = [r.range for r in model_server.log
              if r.method == "GET" and r.path.startswith("/files/model")]
    assert ranges == [None, f"bytes={(1 << 20) + 123}-"]
    assert "retrying" in out


def test_resume_in_a_new_run_from_an_existing_part_file(model_server, tmp_path):
    data = blob(2 * (1 << 20), seed=2)
    served = model_server.add_file("m.safetensors", data)
    served.cut_after = 700_000
    spec = {"url": f"{model_server.url}/files/m.safetensors", "folder": "loras",
            "sha256": sha(data)}
    first, out = run_sync([spec], tmp_path / "models", model_server, retries=0)
    assert not first.ok
    part = tmp_path / "models" / "loras" / "m.safetensors.part"
    assert part.stat().st_size == 700_000
    assert not (tmp_path / "models" / "loras" / "m.safetensors").exists()
    before = served.sent
    second, out = run_sync([spec], tmp_path / "models", model_server)
    assert second.ok, out
    assert served.sent - before == len(data) - 700_000
    assert "resuming at" in out
    assert (tmp_path / "models" / "loras" / "m.safetensors").read_bytes() == data


def test_wrong_hash_removes_the_part_and_names_both_hashes(model_server, tmp_path):
    data = blob(300_000, seed=3)
    model_server.add_file("bad.safetensors", data)
    wanted = "ab" * 32
    spec = {"url": f"{model_server.url}/files/bad.safetensors", "folder": "vae",
            "sha256": wanted}
    result, out = run_sync([spec], tmp_path / "models", model_server)
    assert not result.ok
    (rel, message), = result.failed
    assert wanted in message and sha(data) in message
    folder = tmp_path / "models" / "vae"
    assert list(folder.iterdir()) == []  # no part file, no final file


def test_server_ignoring_range_restarts_from_zero(model_server, tmp_path):
    data = blob(1_500_000, seed=4)
    served = model_server.add_file("x.safetensors", data)
    model_server.ignore_range = True
    folder = tmp_path / "models" / "checkpoints"
    folder.mkdir(parents=True)
    # A stale part whose bytes are WRONG: had they been kept, the hash would not match.
    (folder / "x.safetensors.part").write_bytes(b"\0" * 400_000)
    spec = {"url": f"{model_server.url}/files/x.safetensors", "folder": "checkpoints",
            "sha256": sha(data)}
    result, out = run_sync([spec], tmp_path / "models", model_server)
    assert result.ok, out
    assert "ignored the Range request" in out
    assert (folder / "x.safetensors").read_bytes() == data
    assert served.sent == len(data)


def test_retries_on_5xx(model_server, tmp_path):
    data = blob(100_000, seed=5)
    served = model_server.add_file("flaky.pth", data)
    served.fail_times = 2
    spec = {"url": f"{model_server.url}/files/flaky.pth", "folder": "upscale_models",
            "sha256": sha(data)}
    result, out = run_sync([spec], tmp_path / "models", model_server)
    assert result.ok, out
    assert out.count("HTTP 503") == 2


def test_hf_token_stays_on_the_hf_host_across_the_cdn_redirect(model_server, tmp_path):
    data = blob(200_000, seed=6)
    model_server.add_hf_file("org/repo", "main", "unet/model.safetensors", data)
    spec = {"hf": "org/repo", "file": "unet/model.safetensors", "revision": "main",
            "folder": "diffusion_models"}
    result, out = run_sync([spec], tmp_path / "models", model_server,
                           tokens={"HF_TOKEN": HF_TOKEN})
    assert result.ok, out
    # The hash was resolved from the LFS metadata, and the run says so.
    assert f"resolved sha256 of hf:org/repo@main/unet/model.safetensors from Hugging Face " \
           f"LFS metadata (paths-info): {sha(data)}" in out
    main_host = [r for r in model_server.log if r.host.startswith("127.0.0.1")]
    other_host = [r for r in model_server.log if r.host.startswith("127.0.0.2")]
    assert main_host and other_host
    assert all(r.authorization == f"Bearer {HF_TOKEN}" for r in main_host)
    assert all(r.authorization is None for r in other_host)
    assert HF_TOKEN not in out
    assert (tmp_path / "models" / "diffusion_models" / "model.safetensors").read_bytes() == data


def test_hf_hash_from_x_linked_etag_when_paths_info_is_missing(model_server, tmp_path,
                                                               monkeypatch):
    data = blob(50_000, seed=7)
    model_server.add_hf_file("org/other", "v1", "model.safetensors", data)

    def no_paths_info(self, *args, **kwargs):
        raise d.requests.ConnectionError("mirror without the API")

    original = d.Http.open

    def open_(self, method, url, **kwargs):
        if "/paths-info/" in url:
            return no_paths_info(self)
        return original(self, method, url, **kwargs)

    monkeypatch.setattr(d.Http, "open", open_)
    spec = {"hf": "org/other", "file": "model.safetensors", "revision": "v1", "folder": "loras"}
    result, out = run_sync([spec], tmp_path / "models", model_server)
    assert result.ok, out
    assert "(X-Linked-Etag)" in out and sha(data) in out


def test_civitai_token_as_header_never_to_the_storage_host(model_server, tmp_path):
    data = blob(120_000, seed=8)
    model_server.add_civitai_version(4242, "styleLora_v1.safetensors", data)
    spec = {"civitai": 4242, "folder": "loras"}
    result, out = run_sync([spec], tmp_path / "models", model_server,
                           tokens={"CIVITAI_TOKEN": CIVITAI_TOKEN})
    assert result.ok, out
    assert "from Civitai model-version metadata" in out
    final = tmp_path / "models" / "loras" / "styleLora_v1.safetensors"
    assert final.read_bytes() == data
    download = [r for r in model_server.log if r.path.startswith("/api/download/")]
    assert download and download[0].authorization == f"Bearer {CIVITAI_TOKEN}"
    storage = [r for r in model_server.log if r.host.startswith("127.0.0.2")]
    assert storage and all(r.authorization is None for r in storage)
    assert all(CIVITAI_TOKEN not in r.path for r in model_server.log)  # never in a URL
    assert CIVITAI_TOKEN not in out


def test_no_token_for_a_plain_url_on_another_host(model_server, tmp_path):
    data = blob(10_000, seed=9)
    model_server.add_file("plain.safetensors", data)
    spec = {"url": f"{model_server.other_url}/files/plain.safetensors", "folder": "vae",
            "sha256": sha(data)}
    result, out = run_sync([spec], tmp_path / "models", model_server,
                           tokens={"HF_TOKEN": HF_TOKEN, "CIVITAI_TOKEN": CIVITAI_TOKEN})
    assert result.ok, out
    assert all(r.authorization is None for r in model_server.log)


def test_plain_url_gets_no_token_even_on_an_endpoint_origin(model_server, tmp_path):
    """A `url:` entry carries no credential, even when it points at the Hugging Face
    endpoint's origin (and across its redirect): the source decides, not the origin."""
    data = blob(10_000, seed=10)
    model_server.add_file("r.safetensors", data)
    spec = {"url": f"{model_server.url}/redirect/r.safetensors", "folder": "vae",
            "sha256": sha(data)}
    result, out = run_sync([spec], tmp_path / "models", model_server,
                           tokens={"HF_TOKEN": HF_TOKEN, "CIVITAI_TOKEN": CIVITAI_TOKEN})
    assert result.ok, out
    first, *rest = [r for r in model_server.log if r.method == "GET"]
    assert first.host.startswith("127.0.0.1") and rest  # the redirect was followed
    assert all(r.authorization is None for r in model_server.log), model_server.log


def test_one_mirror_for_both_sources_gets_each_token_for_its_own_source(model_server,
                                                                        tmp_path):
    """Hugging Face and Civitai endpoints on ONE origin: every request of an `hf` entry carries
    HF_TOKEN, every request of a `civitai` entry CIVITAI_TOKEN, a plain URL none, and the
    storage host behind the redirects none (counted at the server)."""
    hf_data, civitai_data, plain = blob(60_000, seed=21), blob(70_000, seed=22), blob(500, 23)
    model_server.add_hf_file("org/repo", "main", "m.safetensors", hf_data)
    model_server.add_civitai_version(777, "lora_v1.safetensors", civitai_data)
    model_server.add_file("plain.safetensors", plain)
    specs = [{"hf": "org/repo", "file": "m.safetensors", "revision": "main",
              "folder": "checkpoints"},
             {"civitai": 777, "folder": "loras"},
             {"url": f"{model_server.url}/files/plain.safetensors", "folder": "vae",
              "sha256": sha(plain)}]
    result, out = run_sync(specs, tmp_path / "models", model_server,
                           tokens={"HF_TOKEN": HF_TOKEN, "CIVITAI_TOKEN": CIVITAI_TOKEN})
    assert result.ok, out
    assert (tmp_path / "models" / "loras" / "lora_v1.safetensors").read_bytes() == civitai_data
    mirror = model_server.requests_to("127.0.0.1")
    hf = [r for r in mirror if r.path.startswith(("/api/models/", "/org/repo/"))]
    civitai = [r for r in mirror if r.path.startswith(("/api/v1/", "/api/download/"))]
    plain_requests = [r for r in mirror if r.path.startswith("/files/plain")]
    assert hf and civitai and plain_requests, mirror
    assert {r.authorization for r in hf} == {f"Bearer {HF_TOKEN}"}, hf
    assert {r.authorization for r in civitai} == {f"Bearer {CIVITAI_TOKEN}"}, civitai
    assert {r.authorization for r in plain_requests} == {None}, plain_requests
    assert {r.authorization for r in model_server.requests_to("127.0.0.2")} == {None}
    assert HF_TOKEN not in out and CIVITAI_TOKEN not in out


def test_a_token_goes_only_below_its_own_endpoint():
    """Endpoints on one origin with path prefixes: each token stays below its own prefix."""
    http = d.Http({"HF_TOKEN": HF_TOKEN, "CIVITAI_TOKEN": CIVITAI_TOKEN},
                  "http://mirror.lan:8080/hf", "http://mirror.lan:8080/civitai/")
    assert http.token_for("http://mirror.lan:8080/hf/org/repo/resolve/main/x", "hf") == HF_TOKEN
    assert http.token_for("http://mirror.lan:8080/civitai/api/v1/x", "hf") is None
    assert http.token_for("http://mirror.lan:8080/hfx/org/repo", "hf") is None
    assert http.token_for("http://mirror.lan:8080/civitai/api/download/models/1",
                          "civitai") == CIVITAI_TOKEN
    assert http.token_for("http://mirror.lan:8080/hf/org/repo", "civitai") is None
    assert http.token_for("https://mirror.lan:8080/hf/org/repo", "hf") is None  # scheme
    assert http.token_for("http://mirror.lan:8080/hf/org/repo", None) is None  # plain url


def test_second_run_changes_nothing_and_asks_nobody(model_server, tmp_path):
    files = {f"m{i}.safetensors": blob(150_000 + i, seed=20 + i) for i in range(4)}
    specs = []
    for name, data in files.items():
        model_server.add_file(name, data)
        specs.append({"url": f"{model_server.url}/files/{name}", "folder": "checkpoints",
                      "sha256": sha(data)})
    model_server.add_hf_file("org/r", "main", "text.safetensors", blob(5000, seed=30))
    specs.append({"hf": "org/r", "file": "text.safetensors", "folder": "text_encoders"})
    first, out = run_sync(specs, tmp_path / "models", model_server, jobs=2)
    assert first.ok and len(first.fetched) == 5, out
    stats = {p: p.stat() for p in (tmp_path / "models").rglob("*.safetensors")}
    requests_before = len(model_server.log)
    second, out = run_sync(specs, tmp_path / "models", model_server, jobs=2)
    assert second.ok and not second.fetched and len(second.present) == 5, out
    assert len(model_server.log) == requests_before  # not even a metadata request
    for path, st in stats.items():
        assert path.stat().st_mtime_ns == st.st_mtime_ns
    sidecar = json.loads((tmp_path / "models" / d.SIDECAR).read_text())
    assert sidecar["files"]["text_encoders/text.safetensors"]["source"] == \
        "hf:org/r@main/text.safetensors"


def test_existing_file_with_the_right_hash_is_adopted_without_download(model_server, tmp_path):
    data = blob(80_000, seed=11)
    served = model_server.add_file("have.safetensors", data)
    folder = tmp_path / "models" / "loras"
    folder.mkdir(parents=True)
    (folder / "have.safetensors").write_bytes(data)
    spec = {"url": f"{model_server.url}/files/have.safetensors", "folder": "loras",
            "sha256": sha(data)}
    result, out = run_sync([spec], tmp_path / "models", model_server)
    assert result.ok and result.present == ["loras/have.safetensors"], out
    assert served.sent == 0


def test_free_space_is_checked_before_starting(model_server, tmp_path, monkeypatch):
    data = blob(50_000, seed=12)
    served = model_server.add_file("big.safetensors", data)
    usage = d.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(d.shutil, "disk_usage",
                        lambda path: usage._replace(free=10_000))
    spec = {"url": f"{model_server.url}/files/big.safetensors", "folder": "checkpoints",
            "sha256": sha(data)}
    with pytest.raises(d.DownloadError, match="not enough free space"):
        run_sync([spec], tmp_path / "models", model_server)
    assert served.sent == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_disk_full_midway_fails_cleanly_without_a_final_file(model_server, tmp_path):
    """A real 1 MiB tmpfs fills up while 3 MiB are written (the free-space check is bypassed
    by calling `download` itself): the error names the write, nothing hangs, no final file."""
    import threading

    data = blob(3 * (1 << 20), seed=21)
    model_server.add_file("huge.safetensors", data)
    models = tmp_path / "small"
    models.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(models)], check=True)
    try:
        item = d.Item({"url": f"{model_server.url}/files/huge.safetensors",
                       "folder": "checkpoints", "sha256": sha(data)})
        outcome: list = []

        def fetch():
            try:
                d.download(item, d.Http(), str(models), fsync=False, log=lambda _m: None)
            except d.DownloadError as exc:
                outcome.append(exc)

        worker = threading.Thread(target=fetch, daemon=True)
        worker.start()
        worker.join(60)
        assert not worker.is_alive(), "the download hung on a full disk"
        assert outcome and "writing" in str(outcome[0]) and "No space left" in str(outcome[0])
        assert not (models / "checkpoints" / "huge.safetensors").exists()
    finally:
        subprocess.run(["umount", "-l", str(models)], check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_files_belong_to_the_workstation_user(model_server, tmp_path):
    data = blob(20_000, seed=13)
    model_server.add_file("own.safetensors", data)
    spec = {"url": f"{model_server.url}/files/own.safetensors", "folder": "loras/sdxl",
            "sha256": sha(data)}
    result, out = run_sync([spec], tmp_path / "models", model_server, uid=4321, gid=4322)
    assert result.ok, out
    final = tmp_path / "models" / "loras" / "sdxl" / "own.safetensors"
    st = final.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (4321, 4322, 0o644)
    assert (tmp_path / "models" / "loras").stat().st_uid == 4321
    # Owner drift is repaired without a download.
    os.chown(final, 0, 0)
    before = len(model_server.log)
    again, out = run_sync([spec], tmp_path / "models", model_server, uid=4321, gid=4322)
    assert again.fixed == ["loras/sdxl/own.safetensors"] and len(model_server.log) == before
    assert final.stat().st_uid == 4321


def test_401_explains_the_token_and_never_prints_it(model_server, tmp_path):
    model_server.add_civitai_version(77, "gated.safetensors", blob(1000, seed=14))
    spec = {"civitai": 77, "folder": "loras"}
    result, out = run_sync([spec], tmp_path / "models", model_server)  # no token
    assert not result.ok
    assert "HTTP 401" in result.failed[0][1] and "CIVITAI_TOKEN" in result.failed[0][1]


def test_host_runner_reads_tokens_from_stdin_only(model_server, tmp_path):
    """The script pyinfra uploads: tokens on stdin, nothing secret in argv or output."""
    data = blob(64_000, seed=15)
    model_server.add_hf_file("org/gated", "main", "g.safetensors", data)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({
        "models_dir": str(tmp_path / "models"), "hf_endpoint": model_server.url,
        "models": [{"hf": "org/gated", "file": "g.safetensors", "folder": "checkpoints",
                    "gated": True}]}))
    script = REPO / "genai_workstation" / "models" / "downloader.py"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_TOKEN")}
    proc = subprocess.run([sys.executable, str(script), "--manifest", str(manifest),
                           "--secrets-stdin"], input=f"HF_TOKEN={HF_TOKEN}\n",
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert HF_TOKEN not in proc.stdout + proc.stderr
    assert any(r.authorization == f"Bearer {HF_TOKEN}" for r in model_server.log)
    assert "resolved sha256" in proc.stdout
    assert (tmp_path / "models" / "checkpoints" / "g.safetensors").read_bytes() == data


def test_tty_progress_shows_speed_and_eta(model_server, tmp_path):
    data = blob(4 << 20, seed=16)
    model_server.add_file("p.safetensors", data)
    out = io.StringIO()
    progress = d.Progress(stream=out, tty=True, interval=0.001)
    counter = d.Counter("checkpoints/p.safetensors", len(data))
    with progress:
        progress.add(counter)
        counter.done = len(data) // 2
        import time

        time.sleep(0.05)
    text = out.getvalue()
    assert "\r" in text and "/s" in text and "ETA" in text


def test_cli_fetch_then_nothing_to_do(model_server, tmp_path):
    data = blob(90_000, seed=17)
    model_server.add_file("cli.safetensors", data)
    secrets = tmp_path / "secrets.env"
    secrets.write_text(f"HF_TOKEN={HF_TOKEN}\n")
    secrets.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.endswith("_TOKEN")}
    env["GENAI_SECRETS"] = str(secrets)
    command = [sys.executable, "-m", "genai_workstation.models", "fetch",
               f"{model_server.url}/files/cli.safetensors", "--folder", "loras",
               "--sha256", sha(data), "--models-dir", str(tmp_path / "models"),
               "--hf-endpoint", model_server.url]
    first = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=120)
    assert first.returncode == 0, first.stderr
    assert "1 fetched" in first.stdout and HF_TOKEN not in first.stdout + first.stderr
    second = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120)
    assert second.returncode == 0 and "1 present, 0 fetched" in second.stdout
    assert (tmp_path / "models" / "loras" / "cli.safetensors").read_bytes() == data
