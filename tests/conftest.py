"""Shared pytest set-up: every module in tests/harness/ is a fixture plugin."""

import pkgutil
from pathlib import Path

import gevent.monkey
import pytest

# pyinfra_cli (imported by pyinfra_testing) calls gevent.monkey.patch_all() on import, which
# turns the harness's relay threads (they setns() into a test host's network namespace) into
# greenlets. The tests drive pyinfra as a subprocess or through its API: keep real threads.
gevent.monkey.patch_all = lambda *args, **kwargs: None

# Harness modules import each other; have them all rewritten before the first import.
pytest.register_assert_rewrite("tests.harness")

pytest_plugins = [
    f"tests.harness.{module.name}"
    for module in pkgutil.iter_modules([str(Path(__file__).parent / "harness")])
]
