"""Operation cases of genai_workstation.operations in pyinfra's JSON format (pyinfra-testing).

One folder per operation, tests/operations/<module>.<operation>/*.json: the facts the
operation sees (recorded real outputs, already parsed), its arguments, and the exact commands
it must yield (or the OperationError it must raise, or its no-op description).
"""

from __future__ import annotations

from pathlib import Path

from pyinfra_testing.operations import make_operation_tests

CASES = Path(__file__).resolve().parent / "operations"

for _folder in sorted(p for p in CASES.iterdir() if p.is_dir()):
    _cls = make_operation_tests("genai_workstation.operations", _folder.name, _folder)
    _cls.__name__ = f"TestOperation_{_folder.name.replace('.', '_')}"
    globals()[_cls.__name__] = _cls
del _folder, _cls
