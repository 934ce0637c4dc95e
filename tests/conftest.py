"""Shared test configuration: float64 everywhere (the science needs it)."""

import sys
from pathlib import Path

import jax
import pytest
import submitit  # noqa: F401  (see below)

# submitit configures its loggers on first import with the current sys.stdout/sys.stderr.
# Imported here, at collection, they are pytest's session-long streams; first imported inside
# a test, they would be that test's capture streams, closed when the test ends.

jax.config.update("jax_enable_x64", True)


EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


@pytest.fixture(scope="module")
def experiments_path():
    """Make the ``experiments/`` scripts importable for the tests that run their presets."""
    sys.path.insert(0, str(EXPERIMENTS))
    yield
    sys.path.remove(str(EXPERIMENTS))


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    """Drop JAX's compiled executables after each test module.

    Every XLA:CPU executable keeps its own memory mappings; the full suite compiles
    thousands of them (grid sizes, shapes, activations), and without this the process
    reaches the kernel's mapping limit (vm.max_map_count = 65530) and XLA aborts inside a
    later compilation (seen in tests/test_training.py after ~300 tests).
    """
    yield
    jax.clear_caches()
