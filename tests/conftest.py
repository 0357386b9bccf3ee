"""Shared pytest set-up: every module in tests/harness/ is a fixture plugin."""

import pkgutil
from pathlib import Path

import pytest

# Harness modules import each other; have them all rewritten before the first import.
pytest.register_assert_rewrite("tests.harness")

pytest_plugins = [
    f"tests.harness.{module.name}"
    for module in pkgutil.iter_modules([str(Path(__file__).parent / "harness")])
]
