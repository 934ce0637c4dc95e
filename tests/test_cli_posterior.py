"""`fieldres posterior` on the tiny fake CIFAR-10, and the posterior experiment's smoke preset."""

import json

import numpy as np
import pytest

import fieldres as fr
from fieldres.bayes import posterior as po
from fieldres.cli import main

KEYS = ("test_error", "test_mse", "train_mse", "log_evidence", "kernel_alignment", "rho",
        "rho_star_diagonal", "rho_star_offdiagonal", "depth", "width", "n_train", "noise", "seed")
SMALL = ("--depth", "5", "--n-train", "20", "--n-test", "20")


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    path = tmp_path_factory.mktemp("data")
    fr.write_fake_cifar10(path, n_per_batch=100)  # 20 images per class in the training split
    return str(path)


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_posterior_json_matches_the_api(capsys, fake):
    code, out, _ = run(capsys, "posterior", *SMALL, "--rho-factor", "4", "--data-dir", fake,
                       "--json")
    assert code == 0
    d = json.loads(out)
    assert set(KEYS) <= set(d) and d["width"] is None and d["n_train"] == 20
    assert d["rho"] == pytest.approx(4 * d["rho_star_diagonal"], rel=1e-12)
    ds = fr.make_dataset("cifar10", n_train=20, n_test=20, seed=0, data_dir=fake, k0_scale=0.05)
    rs = po.rho_star_data(fr.input_kernel(ds.x_train), 5)
    assert d["rho_star_diagonal"] == pytest.approx(rs.rho_star_diagonal, rel=1e-12)
    assert d["rho_star_offdiagonal"] == pytest.approx(rs.rho_star_offdiagonal, rel=1e-12)
    r = po.network_posterior(ds.x_train, ds.y_train, ds.x_test, ds.y_test, rho=d["rho"],
                             depth=5, noise=1e-3)
    for k in ("test_error", "test_mse", "train_mse", "log_evidence", "kernel_alignment"):
        assert d[k] == pytest.approx(float(getattr(r, k)), rel=1e-10, abs=1e-14), k
    code, out, _ = run(capsys, "posterior", *SMALL, "--rho-factor", "2", "--rho-factor-of",
                       "offdiagonal", "--data-dir", fake)
    assert code == 0 and "2.000 rho*_offdiagonal" in out and "test error" in out


def test_posterior_scan_json(capsys, fake):
    code, out, _ = run(capsys, "posterior", *SMALL, "--scan", "--data-dir", fake, "--json")
    assert code == 0
    d = json.loads(out)
    rows = d["scan"]
    assert len(rows) == 13 and all(set(KEYS) <= set(r) for r in rows)
    f = np.array([r["rho_factor_diagonal"] for r in rows])
    np.testing.assert_allclose(f, 2.0 ** (np.arange(-6, 7) / 2), rtol=1e-12)
    err = [r["test_error"] for r in rows]
    assert d["argmin_rho_factor_diagonal"] == pytest.approx(f[int(np.argmin(err))])
    ratio = d["rho_star_diagonal"] / d["rho_star_offdiagonal"]
    assert d["argmin_rho_factor_offdiagonal"] == pytest.approx(
        d["argmin_rho_factor_diagonal"] * ratio)


@pytest.mark.slow
def test_posterior_evidence(capsys, fake):
    code, out, _ = run(capsys, "posterior", *SMALL, "--rho", "evidence", "--data-dir", fake,
                       "--json")
    d = json.loads(out)
    assert code == 0 and d["evidence"]["status"] == "OK"
    ds = fr.make_dataset("cifar10", n_train=20, n_test=20, seed=0, data_dir=fake, k0_scale=0.05)
    grid = [f * d["rho_star_diagonal"] for f in po.HALF_OCTAVES]
    vals = [float(po.network_log_evidence(ds.x_train, ds.y_train, rho=r, depth=5, noise=1e-3))
            for r in grid]
    assert d["log_evidence"] >= max(vals) - 1e-9


@pytest.mark.parametrize("args,message", [
    (("--noise", "0"), "--noise T must be a positive"),
    (("--noise", "-1"), "--noise T must be a positive"),
    (("--classes", "dog,unicorn"), "unknown class 'unicorn'"),
    (("--n-train", "100"), "has only"),
    (("--width", "64"), "finite-width posterior is not implemented"),
    (("--rho", "fast"), "--rho must be a number or 'evidence'"),
    (("--rho", "-1"), "--rho must be positive"),
])
def test_posterior_bad_input_exit_2(capsys, fake, args, message):
    argv = ["posterior", "--depth", "5", "--n-train", "20", "--n-test", "20", "--data-dir", fake]
    # later options override earlier ones
    code, out, err = run(capsys, *argv, *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("fieldres: error:") and message in err, err


def test_posterior_missing_data_exit_2(capsys, tmp_path):
    code, _, err = run(capsys, "posterior", "--depth", "5", "--data-dir", str(tmp_path / "no"))
    assert code == 2 and err.count("\n") == 1 and "FIELDRES_DATA_DIR" in err


def test_experiment_smoke(tmp_path, fake, experiments_path):
    import importlib

    mod = importlib.import_module("posterior_rho_scan")
    res = mod.main(["--preset", "smoke", "--out", str(tmp_path), "--data-dir", fake])
    assert (tmp_path / "posterior_rho_scan.png").exists()
    saved = json.loads((tmp_path / "posterior_rho_scan.json").read_text())
    assert len(saved["cases"]) == 4 and saved["summary"].keys() == res["summary"].keys()
    s = next(iter(res["summary"].values()))
    assert set(s["per_depth"]) == {3, 5}
    d = s["per_depth"][5]
    assert len(d["test_error"]) == 3 and all(0 <= e <= 1 for e in d["test_error"])
    per = d["argmin_rho_factor_diagonal_per_subset"]
    assert len(per) == 2 and set(per) <= {0.5, 1.0, 4.0}
    assert d["argmin_rho_factor_diagonal"] == pytest.approx(np.mean(per))
