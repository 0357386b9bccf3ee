"""pyinfra inventory: the YAML in inventory/ (or $GENAI_INVENTORY), checked before connecting."""

import sys

from genai_workstation.errors import InventoryError
from genai_workstation.loader import load_inventory

try:
    _inventory = load_inventory()
except InventoryError as _error:
    print(_error.render(), file=sys.stderr)
    raise SystemExit(2) from None

# Every public module-level list becomes a pyinfra group.
globals().update(_inventory.pyinfra_groups())
