"""STAND-IN for ComfyUI and Stable Diffusion WebUI Forge: a TEST DOUBLE, not either app.

It answers only the HTTP endpoints genai-workstation's deploys and checks use, with the JSON
shapes of the real apps (ComfyUI `server.py`, Forge `modules/api/api.py`), and reports a FAKE
GPU. No model is loaded, nothing is generated. Standard library only (python3 of
local/bookworm-py:1). See docs/testing-docker.md.

App: env STANDIN_APP=comfyui|forge, else guessed from the command line (Forge-only flags such
as --api, --gpu-device-id, --skip-install, --always-cpu => forge; otherwise comfyui).

Flags accepted (unknown ones are ignored, as the product's command lines run unchanged):
  ComfyUI: --listen [IP] (bare: 0.0.0.0; default 127.0.0.1), --port (8188), --cuda-device N, --cpu
  Forge:   --listen (flag: 0.0.0.0; default 127.0.0.1), --port (7860), --api (without it
           /sdapi/* is 404, as in Forge), --gpu-device-id N, --always-cpu, --ckpt-dir,
           --models-dir

Fake GPUs (env):
  STANDIN_GPUS         cards in PCI bus order, "NAME[=VRAM_MIB],NAME..." (default one RTX 3090)
  STANDIN_FASTEST_FIRST  CUDA's "fastest first" order as PCI indices, e.g. "1,0"; used unless
                       CUDA_DEVICE_ORDER=PCI_BUS_ID (as with real CUDA)
  CUDA_VISIBLE_DEVICES also honoured; --cuda-device / --gpu-device-id N set it to N (as the
                       real apps do), so the app always sees its card as cuda:0; a pin that
                       names no card exits 1 ("No CUDA GPUs are available"), as torch would
  STANDIN_GPU_NAME     overrides the whole device name, e.g. "cuda:0 NVIDIA GeForce RTX 3080 :
                       cudaMallocAsync"
Failure modes: STANDIN_FAIL=1 (or "exit") exits with status 3 at start; STANDIN_FAIL=500 serves
HTTP 500 on every endpoint; STANDIN_START_DELAY=SECONDS waits before listening.
SIGTERM/SIGINT end it at once (it is fine as PID 1; the product also sets `init: true`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

MIB = 1024 * 1024
DEFAULT_GPUS = "NVIDIA GeForce RTX 3090=24576"
KNOWN_VRAM_MIB = {"3090": 24576, "3080": 10240, "4090": 24564, "4070": 12282, "3060": 12288}
FORGE_ONLY = {"--api", "--gpu-device-id", "--skip-install", "--skip-prepare-environment",
              "--always-cpu", "--ckpt-dir", "--skip-torch-cuda-test", "--no-download-sd-model",
              "--data-dir", "--skip-version-check", "--api-auth", "--gradio-auth-path"}
CKPT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf")


def log(message: str) -> None:
    print(message, flush=True)


def pick_app(argv: list[str]) -> str:
    app = os.environ.get("STANDIN_APP", "").strip().lower()
    if app in ("comfyui", "forge"):
        return app
    flags = {arg.split("=", 1)[0] for arg in argv}
    return "forge" if flags & FORGE_ONLY else "comfyui"


def parse(app: str, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"standin-{app}", add_help=False, allow_abbrev=False)
    parser.add_argument("--port", type=int, default=8188 if app == "comfyui" else 7860)
    if app == "comfyui":
        parser.add_argument("--listen", nargs="?", const="0.0.0.0", default="127.0.0.1")
        parser.add_argument("--cuda-device", type=int, default=None)
        parser.add_argument("--cpu", action="store_true")
    else:
        parser.add_argument("--listen", action="store_true")
        parser.add_argument("--api", action="store_true")
        parser.add_argument("--gpu-device-id", default=None)
        parser.add_argument("--always-cpu", action="store_true")
        parser.add_argument("--ckpt-dir", default=None)
        parser.add_argument("--models-dir", default=None)
    args, unknown = parser.parse_known_args(argv)
    args.unknown = unknown
    if app == "forge":
        args.listen = "0.0.0.0" if args.listen else "127.0.0.1"
    return args


def gpu_table() -> list[tuple[str, int]]:
    cards = []
    for item in (os.environ.get("STANDIN_GPUS") or DEFAULT_GPUS).split(","):
        name, _, vram = item.strip().partition("=")
        if not name:
            continue
        if not vram:
            vram = next((v for k, v in KNOWN_VRAM_MIB.items() if k in name), 8192)
        cards.append((name.strip(), int(vram)))
    return cards


def visible_card(app: str, args: argparse.Namespace) -> tuple[str, int] | None:
    """(device name, VRAM MiB) of cuda:0 as the real app would see it, or None for CPU."""
    if (app == "comfyui" and args.cpu) or (app == "forge" and args.always_cpu):
        return None
    pin = args.cuda_device if app == "comfyui" else args.gpu_device_id
    if pin is not None:  # both apps set CUDA_VISIBLE_DEVICES from their flag
        os.environ["CUDA_VISIBLE_DEVICES"] = str(pin)
    cards = gpu_table()
    if os.environ.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID":
        order = os.environ.get("STANDIN_FASTEST_FIRST", "")
        if order.strip():
            cards = [cards[int(i)] for i in order.split(",") if i.strip()]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip():
        try:
            cards = [cards[int(i)] for i in visible.split(",") if i.strip()]
        except (ValueError, IndexError):
            cards = []
    if not cards:
        return ("", 0)
    name, vram = cards[0]
    allocator = "cudaMallocAsync" if app == "comfyui" else "native"
    return (os.environ.get("STANDIN_GPU_NAME") or f"cuda:0 {name} : {allocator}", vram)


class StandIn:
    def __init__(self, app: str, argv: list[str]):
        self.app, self.argv = app, argv
        self.args = parse(app, argv)
        self.card = visible_card(app, self.args)
        self.fail_http = os.environ.get("STANDIN_FAIL", "") == "500"

    # --- ComfyUI ------------------------------------------------------------------------
    def system_stats(self) -> dict:
        if self.card is None:
            devices = [{"name": "cpu", "type": "cpu", "index": None, "vram_total": 16 << 30,
                        "vram_free": 12 << 30, "torch_vram_total": 16 << 30,
                        "torch_vram_free": 12 << 30}]
        else:
            total = self.card[1] * MIB
            devices = [{"name": self.card[0], "type": "cuda", "index": 0, "vram_total": total,
                        "vram_free": total - 600 * MIB, "torch_vram_total": 0,
                        "torch_vram_free": 0}]
        return {"system": {"os": "posix", "ram_total": 64 << 30, "ram_free": 48 << 30,
                           "comfyui_version": "0.0.0-standin",
                           "required_frontend_version": "0.0.0",
                           "python_version": sys.version, "pytorch_version": "standin",
                           "embedded_python": False, "argv": ["main.py", *self.argv]},
                "devices": devices}

    def checkpoints(self) -> list[str]:
        return sorted(self._model_files("/data/models/checkpoints"))

    # --- Forge --------------------------------------------------------------------------
    def memory(self) -> dict:
        ram = {"free": float(48 << 30), "used": float(16 << 30), "total": float(64 << 30)}
        if self.card is None or not self.card[0]:
            return {"ram": ram, "cuda": {"error": "unavailable"}}
        total = self.card[1] * MIB
        used = 600 * MIB
        zero = {"current": 0, "peak": 0}
        return {"ram": ram, "cuda": {
            "system": {"free": total - used, "used": used, "total": total},
            "active": zero, "allocated": zero, "reserved": zero, "inactive": zero,
            "events": {"retries": 0, "oom": 0}}}

    def sd_models(self) -> list[dict]:
        folder = self.args.ckpt_dir or os.path.join(self.args.models_dir or "models",
                                                    "Stable-diffusion")
        return [{"title": name, "model_name": os.path.splitext(name)[0], "hash": None,
                 "sha256": None, "filename": os.path.join(folder, name), "config": None}
                for name in sorted(self._model_files(folder))]

    def cmd_flags(self) -> dict:
        return {k: v for k, v in vars(self.args).items() if k != "unknown"}

    @staticmethod
    def _model_files(folder: str) -> list[str]:
        try:
            return [n for n in os.listdir(folder) if n.lower().endswith(CKPT_SUFFIXES)]
        except OSError:
            return []

    # --- routing ------------------------------------------------------------------------
    def route(self, method: str, path: str) -> tuple[int, object]:
        if self.fail_http:
            return 500, {"error": "STANDIN_FAIL=500"}
        if self.app == "comfyui":
            if path.startswith("/api/"):
                path = path[len("/api"):]
            table = {
                ("GET", "/system_stats"): self.system_stats,
                ("GET", "/queue"): lambda: {"queue_running": [], "queue_pending": []},
                ("GET", "/history"): dict,
                ("GET", "/object_info"): dict,
                ("GET", "/models"): lambda: ["checkpoints", "loras", "vae"],
                ("GET", "/models/checkpoints"): self.checkpoints,
                ("POST", "/free"): lambda: None,
                ("POST", "/queue"): lambda: None,
                ("POST", "/interrupt"): lambda: None,
                ("GET", "/"): lambda: "ComfyUI STAND-IN",
            }
        else:
            table = {("GET", "/internal/ping"): dict, ("GET", "/"): lambda: "Forge STAND-IN"}
            if self.args.api:
                table.update({
                    ("GET", "/sdapi/v1/memory"): self.memory,
                    ("GET", "/sdapi/v1/sd-models"): self.sd_models,
                    ("GET", "/sdapi/v1/cmd-flags"): self.cmd_flags,
                    ("GET", "/sdapi/v1/options"): dict,
                    ("POST", "/sdapi/v1/options"): lambda: None,
                    ("POST", "/sdapi/v1/refresh-checkpoints"): lambda: None,
                })
        handler = table.get((method, path))
        if handler is None:
            return 404, {"detail": "Not Found"}
        return 200, handler()


def serve(standin: StandIn) -> None:
    class Handler(BaseHTTPRequestHandler):
        server_version = f"standin-{standin.app}/1"

        def _answer(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            status, body = standin.route(method, urlsplit(self.path).path)
            if body is None:  # ComfyUI's POST /free and friends: 200, empty body
                data, kind = b"", "text/plain; charset=utf-8"
            elif isinstance(body, str):
                data, kind = body.encode(), "text/plain; charset=utf-8"
            else:
                data, kind = json.dumps(body).encode(), "application/json"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._answer("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._answer("POST")

        def log_message(self, fmt: str, *args) -> None:
            sys.stdout.write(f"standin {self.address_string()} {fmt % args}\n")
            sys.stdout.flush()

    host = standin.args.listen.split(",")[0] or "0.0.0.0"
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer((host, standin.args.port), Handler)
    log(f"STAND-IN {standin.app}: listening on http://{host}:{standin.args.port}")
    server.serve_forever(poll_interval=0.2)


def main(argv: list[str]) -> int:
    def stop(signum, _frame):
        log(f"STAND-IN: signal {signum}, exiting")
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    app = pick_app(argv)
    standin = StandIn(app, argv)
    log(f"STAND-IN {app} (test double of genai-workstation, not the real app); "
        f"python {platform.python_version()}; argv: {argv}")
    if standin.args.unknown:
        log(f"STAND-IN: ignoring flags {standin.args.unknown}")
    if standin.card is None:
        log("Device: cpu")
    elif standin.card[0]:
        log(f"Total VRAM {standin.card[1]} MB, total RAM 65536 MB")
        log(f"Device: {standin.card[0]}")
    else:  # as torch does when CUDA_VISIBLE_DEVICES names no card
        log("STAND-IN: RuntimeError: No CUDA GPUs are available "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
        return 1
    if os.environ.get("STANDIN_FAIL", "") in ("1", "exit", "true", "yes"):
        log("STAND-IN: STANDIN_FAIL set: failing at start (exit 3)")
        return 3
    delay = float(os.environ.get("STANDIN_START_DELAY") or 0)
    if delay > 0:
        log(f"STAND-IN: waiting {delay:g} s before listening")
        time.sleep(delay)
    serve(standin)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
