"""The typed host model (genai_workstation/hostmodel.py) and the one-way stack pipeline.

Host data comes from the real loader; the stack checks read their facts from a stand-in pyinfra
host (recorded fact shapes, no SSH), so the decisions run exactly as in verify and genai-drift.
"""

from __future__ import annotations

import pytest
import yaml
from pyinfra.context import ctx_host

from genai_workstation.deploys.steps import stacks as steps
from genai_workstation.hostmodel import FORGE, host_model
from genai_workstation.secrets import required_secrets
from genai_workstation.stacks import render as render_module
from genai_workstation.stacks import render_stack
from genai_workstation.stacks.rendered import AuthCheck, GpuCheck, HealthCheck
from genai_workstation.stacks.verify import stack_findings
from tests.test_stacks_render import ALL_GPUS, COMFY_EXPOSED, RESOLVED, load
from tests.test_stacks_render import FORGE as FORGE_BODY

RTX3090 = "NVIDIA GeForce RTX 3090"


def test_one_list_of_stacks_and_apps_with_the_schema_defaults(tmp_path):
    model = host_model(load(tmp_path, FORGE_BODY))
    assert [s.name for s in model.stacks] == ["forge"]
    forge = model.stack("forge")
    assert forge.health_timeout == 600  # Forge's schema default, applied by the loader only
    assert [(a.key, a.service, a.field) for a in forge.apps] == [
        ("forge/myia", "forge-myia", "stacks.forge.instances.0"),
        ("forge/turbo", "forge-turbo", "stacks.forge.instances.1")]
    assert all(a.kind is FORGE for a in forge.apps)
    # the host port each app takes: the proxy's with expose, else the app's own (never 8188)
    assert forge.published_ports() == [("stacks.forge.instances.0.port", 36525),
                                       ("stacks.forge.instances.1.port", 17861)]
    assert (model.user.uid, model.user.gid) == (1000, 1000)
    assert model.layout.stack_dir("forge") == "/home/jesse/genai/stacks/forge"
    assert model.layout.tree()[:2] == ["/home/jesse/genai", "/home/jesse/genai/models"]
    assert required_secrets("ws1", model) == {
        "FORGE_AUTH": "hosts.ws1.stacks.forge.instances.0.auth"}


def test_a_forge_port_followed_from_the_yaml_to_compose_and_the_checks(tmp_path):
    """stacks.forge.instances.1.port -> App.port -> compose `ports:` -> the health check on the
    app's own port inside the container -> the GPU check of its kind."""
    data = load(tmp_path, FORGE_BODY)
    app = host_model(data).stack("forge").apps[1]
    assert (app.field, app.port, app.kind.internal_port) == ("stacks.forge.instances.1", 17861,
                                                              7860)
    stack = render_stack("forge", data, RESOLVED, all_gpus=ALL_GPUS)
    compose = yaml.safe_load(stack.files["compose.yaml"].content)
    assert compose["services"][app.service]["ports"] == [f"127.0.0.1:{app.port}:7860"]
    assert HealthCheck(app.service, "http://127.0.0.1:7860/internal/ping",
                       ("/data/forge/outputs",)) in stack.health
    assert GpuCheck(app.service, "NVIDIA GeForce RTX 3090", "forge") in stack.gpu_checks


class StandIn:
    """A pyinfra host for the checks: answers facts from recorded shapes, counts the asks."""

    def __init__(self, status: int):
        self.status, self.asked = status, []

    def get_fact(self, fact, **kwargs):
        self.asked.append(fact.__name__)
        name = fact.__name__
        if name == "NvidiaGpus":
            return {"available": True, "gpus": ALL_GPUS, "error": None}
        if name == "ComposeProject":
            running = {"state": "running", "health": "healthy", "published": []}
            proxy = {**running, "service": "proxy",
                     "published": [{"address": "0.0.0.0", "port": 8443, "target": 8080}]}
            return {"exists": True, "config_hash": "a" * 64, "running_hashes": ["a" * 64],
                    "services": [{**running, "service": "comfyui"},
                                 {**running, "service": "idle-unload"}, proxy],
                    "compose_ports": {"proxy": ["0.0.0.0:8443:8080"]}}
        if name == "AppDevice":
            return {"name": f"cuda:0 {RTX3090} : cudaMallocAsync", "error": None}
        if name == "PathStates":
            return {p: {"exists": True, "mode": "600", "uid": 1000, "gid": 1000}
                    for p in kwargs["paths"]}
        if name == "HttpStatus":
            return {url: {"status": self.status, "location": None, "error": None}
                    for url in kwargs["urls"]}
        raise AssertionError(f"unexpected fact {name}")


@pytest.mark.parametrize("status", [401, 200])
def test_verify_asks_the_proxy_without_credentials(tmp_path, status):
    """The check verify and genai-drift run on an exposed app (stack_spec -> stack_findings):
    a proxy answering without credentials is a critical finding; 401 is none."""
    data = load(tmp_path, COMFY_EXPOSED)
    stand_in = StandIn(status)
    with ctx_host.use(stand_in):
        spec = steps.stack_spec("comfyui", data)
        found = stack_findings("ws1", spec)
    assert spec.rendered.auth_checks == [AuthCheck("comfyui", "http://127.0.0.1:8443/", 8080)]
    assert "HttpStatus" in stand_in.asked
    if status == 401:
        assert found == []
    else:
        assert [(f.item, f.severity) for f in found] == [
            ("stack comfyui: proxy refuses comfyui without credentials", "critical")]
        assert found[0].actual.startswith("HTTP 200 without credentials")


def test_the_stack_is_rendered_once_per_host_and_run(tmp_path, monkeypatch):
    """The converge and the checks after it (verify, genai-drift) share this run's render."""
    data = load(tmp_path, COMFY_EXPOSED)
    calls = []

    def counting(*args, **kwargs):
        calls.append(args[0])
        return render_stack(*args, **kwargs)

    monkeypatch.setattr(render_module, "render_stack", counting)
    model = host_model(data)
    first_host, second_host = StandIn(401), StandIn(401)
    with ctx_host.use(first_host):
        first, _, _ = steps.rendered_stack(model.stack("comfyui"), data, model)
        assert steps.stack_spec("comfyui", data).rendered is first
    with ctx_host.use(second_host):  # another host (or run): its own render
        assert steps.stack_spec("comfyui", data).rendered is not first
    assert calls == ["comfyui", "comfyui"]
    assert first_host.asked == ["NvidiaGpus"]  # the GPU fact, read once for the one render


class RecreatedByHand(StandIn):
    """The deployed config, but the proxy's container was recreated from another config."""

    rendered = None

    def get_fact(self, fact, **kwargs):
        answer = super().get_fact(fact, **kwargs)
        if fact.__name__ == "ComposeProject":
            hashes = self.rendered.service_hashes
            answer["config_hash"] = self.rendered.config_hash
            answer["running_hashes"] = []  # containers carry service hashes only
            for svc in answer["services"]:
                svc["labels"] = {"genai.service-hash": hashes[svc["service"]]}
            answer["services"][-1]["labels"] = {"genai.service-hash": "f" * 64}
        return answer


def test_a_container_off_its_service_config_is_a_finding(tmp_path):
    """Containers carry their service's hash (per-service labels): one that does not match the
    deployed config is named; the others are not."""
    data = load(tmp_path, COMFY_EXPOSED)
    stand_in = RecreatedByHand(401)
    with ctx_host.use(stand_in):
        spec = steps.stack_spec("comfyui", data)
        stand_in.rendered = spec.rendered
        found = stack_findings("ws1", spec)
    assert [(f.item, f.actual) for f in found] == [
        ("stack comfyui: container of proxy", "running config " + "f" * 12)]
