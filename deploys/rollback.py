"""Roll a stack back to a previous config kept under `<workspace>/stacks/<name>/.history/`.

    pyinfra inventory.py deploys/rollback.py --data rollback_stack=comfyui
    pyinfra inventory.py deploys/rollback.py --data rollback_stack=forge \\
        --data rollback_to=20261123T094200Z-ab12cd34ef56

Without `rollback_to`: the newest good snapshot (verified by a run) whose config differs from
the one deployed now, else the newest snapshot taken by a deploy. The run lists every kept
snapshot and says which are good. With it: that snapshot (a name, a unique
prefix, or a config hash prefix). The config deployed now is kept first, as
`<timestamp>-<hash>-rollback`, unless it is kept already. Without `rollback_stack`, the one
enabled stack of the host is used. The next `deploys/comfyui.py` run deploys the inventory's
config again: fix the inventory before that.
"""

from pyinfra import host

from genai_workstation.deploys.steps.stacks import fail, rollback
from genai_workstation.verify import enabled_stacks

_stack = host.data.get("rollback_stack")
_enabled = enabled_stacks(host.data.dict())
if _stack:
    rollback(_stack, host.data.get("rollback_to"))
elif len(_enabled) == 1:
    rollback(_enabled[0], host.data.get("rollback_to"))
else:
    fail("Roll back: which stack?", [
        "name the stack to roll back: --data rollback_stack=<name> (enabled here: "
        + (", ".join(_enabled) or "none") + ")"])
