"""The top-level namespace: core API eagerly, topic modules lazily."""

import subprocess
import sys

import pytest

import fieldres as fr


def test_topic_modules_are_reachable_from_the_package():
    for name in ("kernels", "signal", "finite_width", "simulation", "bayes", "meanfield", "data",
                 "cli"):
        mod = getattr(fr, name)
        assert mod.__name__ == f"fieldres.{name}" and name in dir(fr)
    with pytest.raises(AttributeError, match="no attribute 'not_a_module'"):
        fr.not_a_module  # noqa: B018


def test_core_import_does_not_load_the_sampler_stack():
    code = "import sys, fieldres; fieldres.rho_star; print('blackjax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
