"""rho*(N) for every input and pair of K0, and from a data set (issue 14, item 4)."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fieldres as fr
from fieldres.cli import main
from fieldres.defaults import Hyper

K3 = np.array([[0.05, 0.03, 0.02], [0.03, 0.06, 0.025], [0.02, 0.025, 0.055]])
K3_ARG = "0.05,0.03,0.02;0.03,0.06,0.025;0.02,0.025,0.055"


def _json(capsys, argv):
    code = main(argv + ["--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out)


def _data_k0(tmp_path, n_inputs):
    fr.write_fake_cifar10(tmp_path, n_per_batch=50)
    ds = fr.make_dataset("cifar10", classes=("dog", "airplane"), n_train=n_inputs, n_test=0,
                         seed=0, data_dir=tmp_path, k0_scale=0.05)
    return np.asarray(fr.input_kernel(ds.x_train))


# ------------------------------------------------------------------------------------------
# bad input: one line, exit 2, before any computation
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, msg", [
    (["--width", "1", "--k0", K3_ARG], "1/N expansion"),
    (["--width", "0", "--dataset", "cifar10"], "--width must be >= 2"),
    (["--width", "100", "--k0", "0.05,0.05,0.01;0.05,0.05,0.01;0.01,0.01,0.05"], "singular"),
    (["--width", "100", "--k0", "0.05,-0.05;-0.05,0.05"], "identical or opposite"),
])
def test_rho_star_width_bad_input(capsys, argv, msg):
    code = main(["rho-star", "--depth", "5"] + argv)
    err = capsys.readouterr().err
    assert code == 2 and msg in err and len(err.strip().splitlines()) == 1, err


def test_rho_star_width_more_inputs_than_data(capsys, tmp_path):
    fr.write_fake_cifar10(tmp_path, n_per_batch=10)  # 50 training images in all
    code = main(["rho-star", "--depth", "5", "--width", "100", "--dataset", "cifar10",
                 "--data-dir", str(tmp_path), "--n-inputs", "120"])
    err = capsys.readouterr().err
    assert code == 2 and "train examples" in err and len(err.strip().splitlines()) == 1, err


def test_singular_pair_check_names_the_pair():
    from fieldres.finite_width.nlo_entries import check_pairs_invertible

    K = np.array([[0.05, 0.01, 0.1], [0.01, 0.05, 0.02], [0.1, 0.02, 0.2]])  # x2 = 2 x0
    with pytest.raises(fr.FieldresInputError, match="inputs 0 and 2"):
        check_pairs_invertible(K)
    check_pairs_invertible(K, [(0, 1), (1, 2)])  # the other pairs are fine


# ------------------------------------------------------------------------------------------
# every entry: exactly rho_star_width on its block; averages as the leading order's
# ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_entries_agree_with_rho_star_width_on_each_block():
    """Each entry of ``rho_star_width_entries`` (common walk grid, one compilation per kind,
    chi_0'' from the leading-order recursion) is ``rho_star_width`` on its own sub-block
    (own grid, chi_0'' through the NLO routine): the same numbers to ~1e-12 (measured
    ~1e-14 at L = 3)."""
    from fieldres.finite_width import rho_star_width, rho_star_width_entries

    L = 3
    R = rho_star_width_entries(K3, L)
    assert R.entries == ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))
    for k, e in enumerate(R.entries):
        a, b = e
        sub = K3[np.ix_([a, b], [a, b])]  # the entry depends only on its block
        r = rho_star_width(sub, L, 100.0, entry=(0, 0) if a == b else (0, 1))
        assert float(R.rho_star_inf[k]) == pytest.approx(float(r.rho_star_inf), rel=1e-12)
        for name in ("shift", "chi_inf", "chi_1"):
            assert float(getattr(R, name)[k]) == pytest.approx(float(getattr(r, name)),
                                                               rel=1e-9, abs=1e-12), (e, name)
        assert R.rho_star(100.0)[k] == pytest.approx(float(r.rho_star), rel=1e-12)
    lo = fr.rho_star_entries(K3, L, Hyper(), entries=list(R.entries))
    s = R.summary(100.0)
    for kind, sl in (("diagonal", slice(0, 3)), ("offdiagonal", slice(3, 6))):
        d = s[kind]
        assert d["n_entries"] == d["n_valid"] == 3
        assert d["rho_star_inf"] == pytest.approx(float(np.mean(lo.rho_star[sl])), rel=1e-12)
        assert d["rho_star_N"] == pytest.approx(float(np.mean(R.rho_star(100.0)[sl])),
                                                rel=1e-12)
        assert d["rho_star_N"] == pytest.approx(
            d["rho_star_inf_same"] * math.exp(d["log_shift_times_N"] / 100.0), rel=1e-12)
    # rho*(N) of many widths at once, and rho*(N) -> rho*(inf) as N -> inf
    rN = R.rho_star(np.array([50.0, 100.0, 1e12]))
    assert rN.shape == (3, 6)
    np.testing.assert_allclose(rN[2], np.asarray(R.rho_star_inf), rtol=1e-10)


@pytest.mark.slow
def test_cli_rho_star_width_all_pairs_of_k0(capsys):
    code, d = _json(capsys, ["rho-star", "--depth", "3", "--width", "100", "--k0", K3_ARG])
    assert code == 0 and d["width"] == 100 and d["finite_width_inputs"] == 3
    from fieldres.finite_width import rho_star_width_entries

    R = rho_star_width_entries(K3, 3)
    for kind, sl in (("diagonal", slice(0, 3)), ("offdiagonal", slice(3, 6))):
        fw = d["finite_width"][kind]
        assert fw["n_entries"] == fw["n_valid"] == 3
        assert fw["entries"] == [list(e) for e in R.entries[sl]]
        assert fw["rho_star_inf"] == pytest.approx(d[f"rho_star_{kind}"], rel=1e-9)
        np.testing.assert_allclose(fw["rho_star_N_per_entry"], R.rho_star(100.0)[sl],
                                   rtol=1e-12)
        assert d[f"rho_star_{kind}_N"] == pytest.approx(np.mean(R.rho_star(100.0)[sl]),
                                                        rel=1e-12)
        assert fw["shift"] == pytest.approx(fw["rho_star_N"] - fw["rho_star_inf"], rel=1e-9)
        assert d[f"rho_star_{kind}_N"] == pytest.approx(
            fw["rho_star_inf"] * math.exp(fw["log_shift_times_N"] / 100), rel=1e-12)
    main(["rho-star", "--depth", "3", "--width", "100", "--k0", K3_ARG])
    out = capsys.readouterr().out
    assert "diagonal     (3 inputs): rho*(inf) =" in out
    assert "off-diagonal (3 pairs): rho*(inf) =" in out


@pytest.mark.slow
def test_cli_rho_star_width_from_data(capsys, tmp_path):
    fr.write_fake_cifar10(tmp_path, n_per_batch=50)
    code, d = _json(capsys, ["rho-star", "--depth", "3", "--width", "100", "--dataset",
                             "cifar10", "--data-dir", str(tmp_path), "--n-inputs", "3"])
    assert code == 0
    K0 = _data_k0(tmp_path, 3)
    np.testing.assert_allclose(d["parameters"]["k0"], K0, rtol=1e-12)
    fw = d["finite_width"]
    assert fw["diagonal"]["n_entries"] == 3 and fw["offdiagonal"]["n_entries"] == 3
    assert len(fw["offdiagonal"]["rho_star_N_per_entry"]) == 3
    assert fw["diagonal"]["rho_star_inf"] == pytest.approx(d["rho_star_diagonal"], rel=1e-9)


# ------------------------------------------------------------------------------------------
# Monte Carlo: the NLO response behind rho*(N), on a data-derived pair, vs finite networks
# ------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("entry, width, n_networks", [((0, 0), 50, 200_000),
                                                       ((0, 1), 50, 400_000)])
def test_nlo_response_on_data_pair_against_monte_carlo(tmp_path, entry, width, n_networks):
    """chi_0 + chi_1 / N at the pair's leading-order rho* (L = 10) vs the pathwise
    Monte-Carlo response of finite networks on the 2 x 2 block of a (fake-)CIFAR kernel:
    within 3 MC standard errors, and the infinite-width chi_0 rejected."""
    from fieldres.finite_width import chi_out_nlo, rho_star_width_entries
    from fieldres.simulation import simulate_response

    K0 = jnp.asarray(_data_k0(tmp_path, 4)[:2, :2])
    L = 10
    R = rho_star_width_entries(K0, L, entries=[entry])
    rho = float(R.rho_star_inf[0])
    c0, c1 = chi_out_nlo(K0, rho, L, Hyper(), entry=entry)
    assert float(c0) == pytest.approx(float(R.chi_inf[0]), rel=1e-10)
    assert float(c1) == pytest.approx(float(R.chi_1[0]), rel=1e-8)
    a, b = entry
    T = jnp.zeros((2, 2)).at[a, b].set(1.0).at[b, a].set(1.0)
    r = simulate_response(jax.random.PRNGKey(7), K0, T, rho=rho, depth=L, width=width,
                          n_networks=n_networks, batch_size=1000)
    m, se = float(r.mean[a, b]), float(r.stderr[a, b])
    pred = float(c0 + c1 / width)
    print(f"entry {entry}: rho* {rho:.6f} MC {m:.6f} +- {se:.6f}, NLO {pred:.6f}, "
          f"LO {float(c0):.6f}")
    assert abs(m - pred) < 3 * se, (m, pred, se)
    assert abs(m - float(c0)) > 3 * se  # the infinite-width response is rejected


def test_rho_star_width_warns_of_long_runs(capsys, monkeypatch):
    """Many pairs at a large depth: one warning line with the time estimate first."""
    import fieldres.finite_width as fw

    def stop(*a, **k):
        raise RuntimeError("stopped after the warning")

    monkeypatch.setattr(fw, "rho_star_width_entries", stop)
    from types import SimpleNamespace

    from fieldres.cli.finite_width import _rho_star_width

    args = SimpleNamespace(width=100, depth=100, activation="erf", rho_min=1e-3, rho_max=1e2)
    with pytest.raises(RuntimeError, match="stopped"):
        _rho_star_width(args, Hyper(), np.eye(20) * 0.05)
    err = capsys.readouterr().err
    assert "190 pairs at depth 100" in err and "min" in err
