"""Smoke test of experiments/fig_nlo_validation.py (smoke preset): files and key numbers."""

import importlib
import json
import math

import pytest


@pytest.mark.usefixtures("experiments_path")
def test_fig_nlo_validation_smoke(tmp_path):
    mod = importlib.import_module("fig_nlo_validation")
    mod.main(["--preset", "smoke", "--out", str(tmp_path)])
    png, js = tmp_path / "fig_nlo_validation.png", tmp_path / "fig_nlo_validation.json"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(js.read_text())
    assert data["parameters"]["preset"] == "smoke" and data["runtime_s"] > 0
    # (a) mean shift over layers within 4 SE for both architectures and both entries
    for name in ("resnet", "ffnet"):
        for tag in ("11", "12"):
            assert data["layers"][name][f"shift_max_abs_z_{tag}"] < 4.0, (name, tag)
    # (c) the leading-order error of the mean falls like 1/N
    ws = data["width_scaling"]
    assert ws["exponent_lo"] == pytest.approx(1.0, abs=3 * ws["exponent_lo_se"] + 0.1)
    # (d) every N Cov entry within 10% of its scale at the smoke preset's width and sample
    for name in ("C", "K", "out"):
        dev = data["covariance"][name]["dev_rel_scale"]
        assert max(abs(x) for row in dev for x in row) < 0.10, name
        assert all(math.isfinite(x) for row in data["covariance"][name]["mc"] for x in row)
