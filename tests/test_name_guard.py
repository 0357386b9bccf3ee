"""The pre-`up` guard on fixed container names (genai_workstation/stacks/name_guard.py): the
rendered compose file's names, and a name held outside the stack refused with the fix."""

from genai_workstation.stacks import render_stack
from genai_workstation.stacks.name_guard import fixed_names, foreign_name_problems
from tests.test_stacks_render import ALL_GPUS, RESOLVED, load

FORGE = """
    stacks:
      forge:
        instances:
          - {name: myia, port: 7860, gpu: "RTX 3080", service: {container_name: myia}}
          - {name: turbo, port: 7861, gpu: "RTX 3090"}
"""
OLD = {"id": "9e8d7c6b5a4f3e2d1c0b9a8f", "image": "ghcr.io/ai-dock/forge:latest-cuda",
       "state": "exited"}


def test_fixed_names_of_a_rendered_stack(tmp_path):
    stack = render_stack("forge", load(tmp_path, FORGE), RESOLVED, all_gpus=ALL_GPUS)
    assert fixed_names(stack.files["compose.yaml"].content) == ("genai-forge", ["myia"])
    assert fixed_names("not: [yaml") == ("", [])


def test_a_name_held_by_the_old_compose_project_is_refused_with_the_fix():
    problems = foreign_name_problems("forge", "genai-forge", {"myia": {**OLD, "project": "sd"}})
    assert problems == [
        "stack forge: the container name myia is taken by container 9e8d7c6b5a4f (exited, "
        "image ghcr.io/ai-dock/forge:latest-cuda, Compose project 'sd'), not by this stack; "
        "nothing was changed. Fix: if it is the old setup, stop and remove it (docker compose "
        "down in that project's folder, or docker rm -f myia), then run the deploy again; else "
        "choose another service.container_name"]


def test_a_container_outside_compose_gets_docker_rm_and_the_stack_own_passes():
    problems = foreign_name_problems("forge", "genai-forge", {
        "myia": {**OLD, "project": None}, "turbo": {**OLD, "project": "genai-forge"}})
    assert len(problems) == 1 and "no Compose project" in problems[0]
    assert "(docker rm -f myia)" in problems[0]
