"""Smoke tests of the figure scripts in ``experiments/`` (their ``smoke`` presets).

Each script's ``main`` is run into a temporary folder; the PNG and JSON must exist and the
key numbers must be right: Fig. 4 against THEORY's reference table, Fig. 2/3 theory against
the Monte-Carlo simulation in units of its standard error, Fig. 5 on a tiny fake CIFAR-10.
"""

import importlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

import fieldres


def _run(module: str, tmp_path: Path, *extra: str) -> tuple[dict, dict]:
    mod = importlib.import_module(module)
    res = mod.main(["--preset", "smoke", "--out", str(tmp_path), *extra])
    png, js = tmp_path / f"{module}.png", tmp_path / f"{module}.json"
    assert png.is_file() and png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(js.read_text())
    assert data["parameters"]["preset"] == "smoke"
    assert data["runtime_s"] > 0
    return res, data


@pytest.mark.usefixtures("experiments_path")
def test_fig4_reference_table(tmp_path):
    _, data = _run("fig4_optimal_scaling", tmp_path)
    checks = data["reference_check"]
    assert set(checks) == {"10", "100", "1000"}
    for c in checks.values():
        assert c["rho_star_diag"] == pytest.approx(c["rho_star_diag_ref"], abs=1e-6)
        assert c["rho_star_off"] == pytest.approx(c["rho_star_off_ref"], abs=1e-6)
        assert c["chi_max_diag"] == pytest.approx(c["chi_max_diag_ref"], abs=1e-5)
        assert c["chi_max_off"] == pytest.approx(c["chi_max_off_ref"], abs=1e-4)
    assert checks["10"]["rho_star_diag"] == pytest.approx(0.326509, abs=1e-6)
    assert checks["10"]["rho_star_off"] == pytest.approx(1.089168, abs=1e-6)
    sc = data["scaling"]
    assert sc["exponent_diag"] == pytest.approx(-0.5, abs=0.05)
    assert sc["exponent_off"] == pytest.approx(-0.5, abs=0.05)
    assert sc["exponent_diag_large_L"] == pytest.approx(-0.5, abs=0.02)
    assert sc["exponent_off_large_L"] == pytest.approx(-0.5, abs=0.02)
    assert all(s == 0 for s in sc["status_diag"] + sc["status_off"])
    assert sc["continuum_K_star"] == pytest.approx(0.2511, abs=1e-3)
    assert sc["continuum_sqrt_tau_star"] == pytest.approx(0.966, abs=2e-3)
    # the continuum prediction approaches the exact rho* at large depth
    assert sc["continuum_rho_star"][-1] == pytest.approx(sc["rho_star_diag"][-1], rel=0.01)
    # curves: the maximum of the plotted diagonal curve at L = 10 sits at rho*
    rho = np.asarray(data["rho"])
    curve = np.asarray(data["curves"]["diagonal"]["10"])
    assert rho[np.argmax(curve)] == pytest.approx(0.326509, rel=0.06)


@pytest.mark.slow
@pytest.mark.usefixtures("experiments_path")
def test_fig2_theory_matches_simulation(tmp_path):
    _, data = _run("fig2_resnet_vs_ffnet", tmp_path)
    dev = data["max_abs_deviation_in_se"]
    for arch in ("resnet", "ffnet"):
        for q in ("C_diag", "C_off", "K_diag", "chi_diag", "chi_off", "chi_out"):
            z = dev[arch][q]
            assert z is not None and math.isfinite(z)
            assert z < 5.0, (arch, q, z)
        d = data[arch]
        L = data["parameters"]["depth"]
        assert len(d["C_diag_theory"]) == len(d["C_diag_mc"]) == L + 1
        assert d["chi_diag_theory"][0] == pytest.approx(1.0)
    # ResNet responses stay O(1), the FFNet's decay over layers (the paper's message)
    assert data["resnet"]["chi_diag_theory"][-1] > 1.0
    assert data["ffnet"]["chi_diag_theory"][-1] < 0.01


@pytest.mark.usefixtures("experiments_path")
def test_fig3_rho_dependence(tmp_path):
    _, data = _run("fig3_rho_dependence", tmp_path)
    curves = data["curves"]
    assert [c["rho"] for c in curves] == [1.0, 0.3, 0.1]
    final_K = [c["K_diag_theory"][-1] for c in curves]
    final_chi = [c["chi_diag_theory"][-1] for c in curves]
    assert final_K[0] > final_K[1] > final_K[2]  # rho sets the growth rate
    assert final_chi[0] > final_chi[1] > final_chi[2]
    for c in curves:
        for q, z in c["max_abs_deviation_in_se"].items():
            assert z is not None and z < 5.0, (c["rho"], q, z)


@pytest.mark.usefixtures("experiments_path")
def test_fig5_fake_cifar(tmp_path):
    fieldres.write_fake_cifar10(tmp_path / "data")
    out = tmp_path / "out"
    _, data = _run("fig5_data_rho_star", out, "--data-dir", str(tmp_path / "data"))
    p = data["parameters"]
    assert p["P"] == 6
    assert p["K0_mean_diag"] == pytest.approx(0.05, rel=1e-6)
    n_diag, n_off = p["P"], p["P"] * (p["P"] - 1) // 2
    depths = p["depths"]
    assert len(data["lines"]) == 9
    for ln in data["lines"]:
        for kind, n in (("diagonal", n_diag), ("offdiagonal", n_off)):
            pts = ln[kind]
            assert len(pts) == len(depths)
            for pt in pts:
                assert pt["n_total"] == n
                assert pt["n_ok"] + pt["n_no_maximum"] == n
                if pt["n_ok"]:
                    assert 0 < pt["mean"] < 100
                else:
                    assert pt["mean"] is None  # nothing averaged, never a bracket end
            means = [pt["mean"] for pt in pts]
            if all(m is not None for m in means):
                assert means[0] > means[-1]  # rho* falls with depth


@pytest.mark.usefixtures("experiments_path")
def test_cli_defaults(tmp_path, monkeypatch, capsys):
    """``--out`` defaults to ``results/`` and the presets are validated by argparse."""
    import _common

    args = _common.parse_args("x", [])
    assert args.preset == "smoke" and args.out == "results"
    with pytest.raises(SystemExit):
        _common.parse_args("x", ["--preset", "huge"])
    for old, new in (("quick", "smoke"), ("small", "default")):
        with pytest.raises(SystemExit):
            _common.parse_args("x", ["--preset", old])
        err = capsys.readouterr().err
        assert f"renamed: use --preset {new}" in err
    assert _common.parse_args("x", ["--preset", "default"]).preset == "default"
    assert _common.to_jsonable({"a": np.array([1.0, np.nan]), "b": np.float64(2)}) == {
        "a": [1.0, None],
        "b": 2.0,
    }


@pytest.mark.slow
@pytest.mark.usefixtures("experiments_path")
def test_fig_rho_star_width_data_fake_cifar(tmp_path):
    """rho*(N) against N on (fake) CIFAR-10: per-entry shifts, averages, the MC points.

    Slow: the smoke preset compiles the walk NLO routine for two depths and both kinds
    (~290 s on the loaded shared 2-core machine, mostly compilation)."""
    fieldres.write_fake_cifar10(tmp_path / "data")
    _, data = _run("fig_rho_star_width_data", tmp_path / "out", "--data-dir",
                   str(tmp_path / "data"))
    p = data["parameters"]
    assert p["P"] == 3 and p["K0_mean_diag"] == pytest.approx(0.05, rel=1e-6)
    W = np.asarray(data["widths"])
    for ln in data["lines"]:
        assert ln["entries"] == [[0, 0], [1, 1], [2, 2], [0, 1], [0, 2], [1, 2]]
        r0, c = np.asarray(ln["rho_star_inf"]), np.asarray(ln["shift"])
        for kind, sl in (("diagonal", slice(0, 3)), ("offdiagonal", slice(3, 6))):
            d = ln[kind]
            rel = np.asarray(d["relative_shift"])
            assert rel.shape == W.shape and d["n_used"] == d["n_entries"]
            assert d["rho_star_inf"] == pytest.approx(r0[sl].mean(), rel=1e-12)
            # the 1/N law of the average: N (rhobar*(N)/rhobar*(inf) - 1) -> the rho*-weighted
            # mean of the per-entry c as N -> inf (N = 1e4: O(c^2/N) = 1e-4 relative)
            cbar = float(np.sum(r0[sl] * c[sl]) / np.sum(r0[sl]))
            assert W[-1] * rel[-1] == pytest.approx(cbar, rel=1e-3, abs=1e-6)
    mc = data["monte_carlo"]
    assert mc is not None and len(mc["points"]) == 1
    q = mc["points"][0]
    assert q["se"] > 0 and abs(q["z_nlo"]) < 4
