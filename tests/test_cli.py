"""CLI: readable output, JSON keys, figures, exit codes for bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest

from fieldres.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_rho_star_json_matches_reference(capsys):
    code, out, _ = run(capsys, "rho-star", "--depth", "10", "--json")
    assert code == 0
    d = json.loads(out)
    assert d["rho_star_diagonal"] == pytest.approx(0.326509, abs=5e-7)
    assert d["rho_star_offdiagonal"] == pytest.approx(1.089168, abs=5e-7)
    assert d["chi_out_max_diagonal"] == pytest.approx(2.01900, abs=5e-6)
    assert d["chi_out_max_offdiagonal"] == pytest.approx(11.4089, abs=5e-5)
    assert d["parameters"]["sigma_w2"] == 1.25 and d["parameters"]["k0"][0][1] == 0.03


def test_rho_star_text(capsys):
    code, out, _ = run(capsys, "rho-star", "--depth", "10")
    assert code == 0 and "rho* = 0.3265" in out and "sigma_w^2 = 1.25" in out


def test_rho_star_relu_reports_no_maximum(capsys):
    code, out, _ = run(capsys, "rho-star", "--depth", "10", "--activation", "relu", "--json")
    d = json.loads(out)
    assert code == 1
    assert d["rho_star_diagonal"] is None and "increases monotonically" in d[
        "status_diagonal"]


@pytest.mark.parametrize(
    "argv, match",
    [
        (["rho-star", "--sigma-w2", "-1"], "non-negative"),
        (["rho-star", "--k0", "0.5,0.6;0.6,0.5"], "positive semi-definite"),
        (["rho-star", "--depth", "0"], "depth"),
        (["rho-star", "--k0", "nan"], "NaN"),
        (["rho-star", "--activation", "softsign"], "unknown activation"),
        (["rho-star", "--k0", "1,2;3"], "rows"),
        (["scaling", "--depths", "10", "-5"], "depths"),
    ],
)
def test_bad_input_exit_2(capsys, argv, match):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert match in err and err.startswith("fieldres: error:") and err.count("\n") == 1


def test_scaling_json_and_figure(capsys, tmp_path):
    fig = tmp_path / "scaling.png"
    code, out, _ = run(capsys, "scaling", "--depths", "10", "100", "1000", "--json", "--out",
                       str(fig))
    assert code == 0
    d = json.loads(out)
    for key in ("depths", "rho_star_diagonal", "rho_star_offdiagonal", "exponent_diagonal",
                "exponent_offdiagonal"):
        assert key in d
    assert d["rho_star_diagonal"][1] == pytest.approx(0.097219, abs=5e-7)
    assert -0.55 < d["exponent_diagonal"] < -0.45
    assert fig.stat().st_size > 1000


def test_response_and_kernel(capsys, tmp_path):
    fig = tmp_path / "resp.png"
    code, out, _ = run(capsys, "response", "--depths", "10", "20", "--n-rho", "40", "--json",
                       "--out", str(fig))
    assert code == 0 and fig.exists()
    d = json.loads(out)
    assert len(d["chi_out_diagonal"]["10"]) == 40
    assert max(d["chi_out_diagonal"]["10"]) <= 2.01900 + 1e-5
    code, out, _ = run(capsys, "kernel", "--depth", "10", "--rho", "0.3", "--k0", "0.5")
    d = json.loads(out)
    assert d["K"][-1][0][0] == pytest.approx(0.989557, abs=5e-7)
    assert d["C"][-1][0][0] == pytest.approx(0.462566, abs=5e-7)
    npz = tmp_path / "k.npz"
    assert main(["kernel", "--depth", "3", "--out", str(npz)]) == 0 and npz.exists()


def test_console_script_runs():
    r = subprocess.run([sys.executable, "-m", "fieldres.cli", "rho-star", "--depth", "0"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "depth" in r.stderr


def test_rho_star_from_data(capsys, tmp_path):
    import fieldres as fr

    fr.write_fake_cifar10(tmp_path, n_per_batch=50)
    code, out, _ = run(capsys, "rho-star", "--depth", "10", "--dataset", "cifar10",
                       "--data-dir", str(tmp_path), "--n-inputs", "4", "--json")
    assert code == 0
    d = json.loads(out)
    assert len(d["rho_star_diagonal_per_input"]) == 4
    assert len(d["rho_star_offdiagonal_per_pair"]) == 6
    assert d["parameters"]["data"]["k0_scale"] == 0.05
    code, _, err = run(capsys, "rho-star", "--dataset", "cifar10", "--data-dir",
                       str(tmp_path / "missing"))
    assert code == 2 and "FIELDRES_DATA_DIR" in err


def test_scaling_and_response_without_maximum_exit_1(capsys):
    code, out, _ = run(capsys, "scaling", "--activation", "relu", "--depths", "10", "20")
    assert code == 1
    assert "no optimum" in out and "fewer than two optima" in out
    code, out, _ = run(capsys, "response", "--activation", "relu", "--depths", "10",
                       "--n-rho", "5", "--json")
    d = json.loads(out)
    assert code == 1 and d["rho_star_diagonal"]["10"] is None
    assert "increases monotonically" in d["status_diagonal"]["10"]


def test_scaling_text_with_two_depths(capsys):
    # two depths: an exponent but no standard error of the fit
    code, out, _ = run(capsys, "scaling", "--depths", "10", "20")
    assert code == 0 and "fitted exponent: diagonal -0." in out


def test_simulate_json_reproducible_bit_for_bit(capsys):
    """Seeded Monte Carlo: the same command twice gives the same JSON, byte for byte."""
    argv = ["simulate", "--depth", "2", "--width", "4", "--n-networks", "16",
            "--batch-size", "8", "--seed", "3", "--json"]
    outs = []
    for _ in range(2):
        code, out, _ = run(capsys, *argv)
        assert code == 0
        outs.append(out)
    assert outs[0] == outs[1]
    d = json.loads(outs[0])
    assert d["parameters"]["seed"] == 3 and d["parameters"]["fieldres_version"]
    assert d["parameters"]["width"] == 4 and d["parameters"]["n_networks"] == 16
    code, out, _ = run(capsys, *argv[:-2], "4", "--json")  # another seed, other numbers
    assert out != outs[0]


def test_json_records_every_hyperparameter(capsys):
    code, out, _ = run(capsys, "kernel", "--depth", "2", "--sigma-b2-out", "0.07", "--json")
    p = json.loads(out)["parameters"]
    for key in ("activation", "sigma_w2", "sigma_b2", "sigma_w2_out", "sigma_b2_out", "k0",
                "depth", "rho", "fieldres_version"):
        assert key in p
    assert p["sigma_b2_out"] == 0.07 and p["rho"] == 0.3


def test_wide_rho_range_finds_the_same_optimum(capsys):
    """Solver edit (issue 15): a huge --rho-max keeps the grid dense enough to bracket rho*."""
    code, out, _ = run(capsys, "rho-star", "--depth", "10", "--rho-max", "1e300", "--json")
    d = json.loads(out)
    assert code == 0 and d["status"] == "ok"
    assert d["rho_star_diagonal"] == pytest.approx(0.326509, abs=5e-7)
    assert d["rho_star_offdiagonal"] == pytest.approx(1.089168, abs=5e-7)


def test_continuum_overflow_is_a_status():
    """Solver edit (issue 15): sigma_w^2 = 1e300 gives SOLVER_FAILED, not an exception."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import fieldres as fr

    c = fr.rho_star_continuum(0.05, 100, fr.Hyper(1e300, 0.05))
    assert int(c.status) == fr.Status.SOLVER_FAILED and np.isnan(float(c.rho_star))


def test_deep_rho_star_routes_to_continuum(capsys):
    code, out, _ = run(capsys, "rho-star", "--depth", "1000000")
    assert code == 0 and "continuum limit" in out and "rho* = 0.000965944" in out
