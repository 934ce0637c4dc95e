"""Smoke test of ``experiments/langevin_rho_sweep.py`` (its ``smoke`` preset, fake CIFAR-10)."""

import importlib
import json
import math

import numpy as np
import pytest

import fieldres


@pytest.mark.usefixtures("experiments_path")
def test_langevin_rho_sweep_smoke(tmp_path):
    fieldres.write_fake_cifar10(tmp_path / "data", n_per_batch=100, n_batches=2, n_test=200)
    mod = importlib.import_module("langevin_rho_sweep")
    out = tmp_path / "out"
    res = mod.main(["--preset", "smoke", "--out", str(out), "--data-dir",
                    str(tmp_path / "data")])
    png, js = out / "langevin_rho_sweep.png", out / "langevin_rho_sweep.json"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    data = json.loads(js.read_text())
    p = data["parameters"]
    assert p["preset"] == "smoke" and data["runtime_s"] > 0
    depths, factors = p["depths"], p["factors"]
    assert len(data["points"]) == len(depths) * len(factors)

    # rho*(L) is the core calculator's data-driven optimum on the same training inputs
    ds = fieldres.make_dataset("cifar10", classes=("dog", "airplane"), n_train=p["n_train"],
                               n_test=p["n_test"], seed=0, data_dir=tmp_path / "data",
                               k0_scale=0.05)
    K0 = np.asarray(fieldres.input_kernel(ds.x_train[:20]))
    for L in depths:
        P = K0.shape[0]
        r = fieldres.rho_star_entries(K0, L, entries=[(a, a) for a in range(P)])
        assert data["rho_star"][str(L)]["diagonal"] == pytest.approx(
            float(np.nanmean(np.asarray(r.rho_star))), rel=1e-9)
        pts = [q for q in data["points"] if q["depth"] == L]
        assert sorted(q["factor"] for q in pts) == sorted(factors)
        for q in pts:
            assert q["rho"] == pytest.approx(q["factor"] * q["rho_star"], rel=1e-12)
            for k in ("test_error", "test_mse", "train_mse", "kernel_alignment",
                      "acceptance_rate"):
                assert q[k] is not None and math.isfinite(q[k]), k
            assert 0 <= q["test_error"] <= 1 and q["steps"] == p["steps"]
            assert isinstance(q["converged"], bool) and "rhat_max" in q
    s = data["summary"]
    assert set(s["per_depth"]) == {str(L) for L in depths}
    for v in s["per_depth"].values():
        assert v["best_factor_test_error"] in factors
        assert v["test_error_min"] <= v["test_error_at_rho_star"] <= v["test_error_max"]
        assert 0 <= v["n_converged"] <= v["n_points"] == len(factors)
    assert res["summary"]["n_depths"] == s["n_depths"] == len(depths)
    # the figure can be redrawn from the JSON alone
    mod.main(["--replot", str(js)])
