"""Shared test configuration: float64 everywhere (the science needs it)."""

import sys
from pathlib import Path

import jax
import pytest

jax.config.update("jax_enable_x64", True)


EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"


@pytest.fixture(scope="module")
def experiments_path():
    """Make the ``experiments/`` scripts importable for the tests that run their presets."""
    sys.path.insert(0, str(EXPERIMENTS))
    yield
    sys.path.remove(str(EXPERIMENTS))
