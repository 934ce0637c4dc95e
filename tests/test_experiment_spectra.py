"""Smoke test of ``experiments/jacobian_spectra.py`` (smoke preset) and its key numbers."""

import importlib
import json
import math

import pytest


@pytest.mark.usefixtures("experiments_path")
def test_jacobian_spectra_smoke(tmp_path):
    mod = importlib.import_module("jacobian_spectra")
    mod.main(["--preset", "smoke", "--out", str(tmp_path)])
    png, js = tmp_path / "jacobian_spectra.png", tmp_path / "jacobian_spectra.json"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000
    d = json.loads(js.read_text())
    p = d["parameters"]
    assert p["preset"] == "smoke" and d["runtime_s"] > 0
    L = p["depth"]
    cum = d["cumulants"]
    # closed forms: linear c = L rho^2 sigma_w^2 = 1 at rho = 1/sqrt(L), ReLU half of it
    assert cum["linear"]["fieldres"]["c"] == pytest.approx(1.0, rel=1e-12)
    assert cum["relu"]["tarnowski"]["c"] == pytest.approx(0.5, rel=1e-12)
    assert cum["relu"]["fieldres"]["rho_equalising"] == pytest.approx(math.sqrt(2 / L), rel=1e-8)
    # saturating activations need a larger rho for the same spectrum
    assert cum["tanh"]["fieldres"]["c"] < 1.0
    assert cum["tanh"]["fieldres"]["rho_equalising"] > 1 / math.sqrt(L)
    assert cum["sigmoid"]["fieldres"]["c"] < cum["tanh"]["fieldres"]["c"]
    assert d["universal"]["condition_number"] == pytest.approx(d["universal"]["edges"][1])
    thr = d["ks_threshold_iid"]
    for k, v in d["ks"].items():
        assert 0 < v["ks"] < thr, k
    # feed-forward contrast: moments theory vs simulation, orthogonal ReLU still ~ L
    ff = d["ffnet"]
    for k in ("tanh/gaussian", "tanh/orthogonal", "relu/gaussian", "relu/orthogonal"):
        assert ff[k]["relvar_empirical"] == pytest.approx(ff[k]["relvar_theory"], rel=0.3), k
    assert ff["tanh/orthogonal"]["relvar_theory"] < 0.2 * ff["tanh/gaussian"]["relvar_theory"]
    assert ff["relu/orthogonal"]["relvar_theory"] == pytest.approx(p["ff_depth"])
