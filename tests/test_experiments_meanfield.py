"""Smoke tests of the mean-field experiment scripts (their ``smoke`` presets).

Each script's ``main`` runs into a temporary folder; PNG and JSON must exist and the key
numbers must be right: the tanh critical point against the library, finite nets against the
mean field in standard errors, fitted against derived exponents, and the MNIST grid on a
generated MNIST fixture (and a clean skip without data).
"""

import importlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

import fieldres


def _png_ok(path: Path):
    assert path.is_file() and path.stat().st_size > 10_000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _run(module: str, tmp_path: Path, *extra: str) -> dict:
    mod = importlib.import_module(module)
    mod.main(["--preset", "smoke", "--out", str(tmp_path), *extra])
    data = json.loads((tmp_path / f"{module}.json").read_text())
    assert data["parameters"]["preset"] == "smoke" and data["runtime_s"] > 0
    return data


@pytest.mark.slow
@pytest.mark.usefixtures("experiments_path")
def test_ff_phase_diagram(tmp_path):
    data = _run("ff_phase_diagram", tmp_path)
    _png_ok(tmp_path / "ff_phase_diagram.png")
    from fieldres import meanfield as mf

    crit = data["sigma_w2_critical_at_0.05"]["tanh"]
    assert crit == pytest.approx(float(mf.critical_sigma_w2(0.05, "tanh").sigma_w2), rel=1e-10)
    xi = np.array(data["xi_c"], dtype=float)
    assert xi.shape == (len(data["sigma_b2"]), len(data["sigma_w2"]))
    assert np.nanmax(xi) > 10 * np.nanmin(xi)  # the depth scale peaks at the transition
    for v in data["validation"]:
        assert v["max_abs_deviation_in_se"] < 5.0
    chaotic = data["validation"][1]
    assert chaotic["chi_1"] > 1 and chaotic["c_star"] < 1


@pytest.mark.slow
@pytest.mark.usefixtures("experiments_path")
def test_resnet_meanfield_laws(tmp_path):
    data = _run("resnet_meanfield_laws", tmp_path)
    for name in ("tanh", "relu", "alpha-relu"):
        _png_ok(tmp_path / f"resnet_meanfield_laws_{name}.png")
        d = data["activations"][name]
        for k in ("p", "chi"):
            law, fit = d["laws"][k], d["fits"][k]
            assert fit["exponent"] == pytest.approx(law["exponent"], rel=0.01), (name, k)
        for q, z in d["max_abs_deviation_in_se"].items():
            assert z < 5.0, (name, q, z)
    _png_ok(tmp_path / "resnet_meanfield_laws.png")
    ini = data["initialisation"]
    assert np.all(np.diff(ini["xavier"]) > 0) and np.all(np.diff(ini["optimal_sigma_v2"]) < 0)


@pytest.mark.usefixtures("experiments_path")
def test_mnist_grid_on_fake_data_and_clean_skip(tmp_path, capsys):
    fieldres.write_fake_mnist(tmp_path / "data", n_train=120, n_test=60)
    out = tmp_path / "out"
    data = _run("mnist_sgd_grid", out, "--data-dir", str(tmp_path / "data"))
    _png_ok(out / "mnist_sgd_grid.png")
    acc = np.array(data["test_accuracy"], dtype=float)
    p = data["parameters"]
    assert acc.shape == (len(p["depths"]), len(p["sigma_v2"]))
    assert np.all((acc[np.isfinite(acc)] >= 0) & (acc[np.isfinite(acc)] <= 1))
    th = np.array(data["theory"], dtype=float)
    assert np.all(np.isfinite(th)) and np.all(np.diff(th, axis=1) > 0)  # grows with sigma_v^2
    assert np.all(np.diff(th, axis=0) > 0)  # and with depth
    assert len(data["best_cell_per_depth"]) == len(p["depths"])
    # no data: a clear message, a JSON that says so, no figure, no exception
    out2 = tmp_path / "out2"
    data2 = _run("mnist_sgd_grid", out2, "--data-dir", str(tmp_path / "missing"))
    assert "MNIST not found" in data2["skipped"]
    assert not (out2 / "mnist_sgd_grid.png").exists()
    assert "skipped" in capsys.readouterr().out
    assert math.isfinite(data2["runtime_s"])
