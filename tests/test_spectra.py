"""Jacobian spectra of ResNets (Tarnowski et al. 2019) and the feed-forward contrast.

Independent routes are cross-checked: quadrature vs closed-form Gaussian expectations; the
effective cumulant vs the NNGP recursion of :mod:`fieldres.kernels`; the parametric
density vs its closed-form distribution function, its Lagrange-inversion moments and the
Green's-function equation it must solve; theory vs empirical spectra of finite networks by
Kolmogorov--Smirnov distance (threshold: the DKW bound for the number of eigenvalues, whose
power is checked by rejecting a wrong ``c``) and by moments in units of their standard
error over networks.
"""

import json
import math

import jax
import numpy as np
import pytest
import scipy.integrate
import scipy.special

import fieldres
from fieldres.cli import main
from fieldres.meanfield import spectra as sp

KEY = jax.random.PRNGKey(0)


# --- activations and Gaussian expectations ----------------------------------------------


def _Phi(x):
    return 0.5 * scipy.special.erfc(-x / math.sqrt(2.0))


@pytest.mark.parametrize("k", [0.01, 0.7, 30.0])
def test_expectations_match_closed_forms(k):
    """``E phi'^2`` and ``E phi^2`` by panel quadrature vs closed forms (Tarnowski Sec. II.3)."""
    a = 1.0 / math.sqrt(2.0 * k)
    lam, alp = 1.0507009873554805, 1.6732632423543772
    closed = {
        "relu": (0.5, 0.5 * k),
        "leaky_relu:0.2": (0.5 * (1 + 0.04), 0.5 * (1 + 0.04) * k),
        "hard_tanh": (
            math.erf(a),
            k * (math.erf(a) - 2 * a / math.sqrt(math.pi) * math.exp(-a * a)) + math.erfc(a),
        ),
        "selu": (
            lam**2 * (0.5 + alp**2 * math.exp(2 * k) * _Phi(-2 * math.sqrt(k))),
            lam**2 * (0.5 * k + alp**2 * (math.exp(2 * k) * _Phi(-2 * math.sqrt(k))
                                          - 2 * math.exp(k / 2) * _Phi(-math.sqrt(k)) + 0.5)),
        ),
        "linear": (1.0, k),
    }
    for name, (d2, v) in closed.items():
        act = sp.spectral_activation(name)
        got_d2 = float(sp.gaussian_expectation(lambda x, act=act: act.deriv(x) ** 2, k,
                                               act.kinks))
        got_v = float(sp.gaussian_expectation(lambda x, act=act: act.fn(x) ** 2, k, act.kinks))
        assert got_d2 == pytest.approx(d2, rel=1e-12, abs=1e-300), name
        assert got_v == pytest.approx(v, rel=1e-11), name


@pytest.mark.parametrize("k", [0.05, 2.0, 400.0])
def test_smooth_expectations_match_adaptive_quadrature(k):
    sd = math.sqrt(k)
    for name, d in (("tanh", lambda x: np.cosh(x) ** -4),
                    ("sigmoid", lambda x: (scipy.special.expit(x) * scipy.special.expit(-x)) ** 2)):
        act = sp.spectral_activation(name)
        got = float(sp.gaussian_expectation(lambda x, act=act: act.deriv(x) ** 2, k))

        def integrand(z, d=d):
            return d(sd * z) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)

        ref = scipy.integrate.quad(integrand, -12, 12, points=[0.0], limit=400,
                                   epsabs=1e-15)[0]
        assert got == pytest.approx(ref, rel=1e-10), (name, k)


def test_activation_resolution_and_errors():
    assert sp.spectral_activation("Leaky-ReLU:0.3").name == "leaky_relu:0.3"
    assert sp.spectral_activation(fieldres.get_activation("erf")).name == "erf"
    custom = sp.spectral_activation(lambda x: x**3)
    np.testing.assert_allclose(np.asarray(custom.deriv(np.array([2.0]))), [12.0])
    with pytest.raises(ValueError, match="unknown activation"):
        sp.spectral_activation("swish2")
    with pytest.raises(ValueError, match="slope"):
        sp.spectral_activation("leaky_relu:abc")
    with pytest.raises(TypeError):
        sp.spectral_activation(3)


# --- effective cumulant ------------------------------------------------------------------


def test_cumulant_piecewise_linear_closed_forms():
    L, rho, sw = 30, 0.2, 1.5
    s2L = L * rho**2 * sw
    assert float(sp.effective_cumulant("linear", L, rho, sw).c) == pytest.approx(s2L, rel=1e-13)
    assert float(sp.effective_cumulant("relu", L, rho, sw, 0.3).c) == pytest.approx(s2L / 2,
                                                                                    rel=1e-13)
    assert float(sp.effective_cumulant("leaky_relu:0.5", L, rho, sw).c) == pytest.approx(
        s2L * 1.25 / 2, rel=1e-13)


@pytest.mark.parametrize("name", ["tanh", "erf", "relu", "linear"])
def test_variance_trajectory_is_the_nngp_recursion(name):
    """The variance that ``phi'`` sees is fieldres's ``K^(l-1)`` (kernels.resnet_kernels)."""
    L, rho, hyper = 12, 0.4, fieldres.Hyper(sigma_w2=1.3, sigma_b2=0.1)
    ec = sp.effective_cumulant(name, L, rho, 1.3, 0.1, k0=0.5)
    traj = np.asarray(fieldres.resnet_kernels(np.array([[0.5]]), rho, L, hyper, name)
                      .trajectory)[:-1, 0, 0]
    np.testing.assert_allclose(np.asarray(ec.variance), traj, rtol=1e-10)


def test_hard_tanh_cumulant_closed_form_along_trajectory():
    L, rho = 20, 0.3
    ec = sp.effective_cumulant("hard_tanh", L, rho)
    K = np.asarray(ec.variance)
    expected = rho**2 * np.sum(scipy.special.erf(1 / np.sqrt(2 * K)))
    assert float(ec.c) == pytest.approx(expected, rel=1e-12)
    assert np.all(np.diff(K) > 0)  # the skip path makes the variance grow


def test_architectures_agree_for_odd_activations_and_differ_for_sigmoid():
    """With matched first pre-activation variance (``K^(0) = rho^2 sigma_w^2 E x_0^2 +
    sigma_b^2``) both recursions coincide for odd phi; a non-zero ``E phi`` accumulates along
    the post-activation skip path (Tarnowski et al. Eq. 47-48) and drives them apart."""
    rho, sw, L = 0.3, 1.2, 25
    k_first = rho**2 * sw * 1.0
    for name in ("tanh", "hard_tanh"):
        a = sp.effective_cumulant(name, L, rho, sw, k0=k_first, architecture="fieldres")
        b = sp.effective_cumulant(name, L, rho, sw, k0=1.0, architecture="tarnowski")
        assert float(a.c) == pytest.approx(float(b.c), rel=1e-12)
        np.testing.assert_allclose(np.asarray(a.variance), np.asarray(b.variance), rtol=1e-12)
    a = sp.effective_cumulant("sigmoid", L, rho, sw, k0=k_first, architecture="fieldres")
    b = sp.effective_cumulant("sigmoid", L, rho, sw, k0=1.0, architecture="tarnowski")
    assert float(b.variance[-1]) > 2 * float(a.variance[-1])
    assert float(b.c) < float(a.c)


def test_tarnowski_mapping_roundtrip():
    assert float(sp.tarnowski_sigma2(0.2, 1.5, 50)) == pytest.approx(3.0)
    assert float(sp.rho_from_tarnowski(3.0, 50, 1.5)) == pytest.approx(0.2)


def test_finite_depth_moments_approach_universal():
    """``prod (1 + eps_l) -> e^c`` with error ``~ c^2 / (2L)``; relative variance -> 2c (linear)."""
    for L in (10, 100, 1000):
        ec = sp.effective_cumulant("linear", L, 1 / math.sqrt(L))
        c = float(ec.c)
        assert c == pytest.approx(1.0)
        assert math.log(float(ec.mean_sv2)) == pytest.approx(c - c**2 / (2 * L), abs=1 / L**2)
        # per block (1 + eps)^{-2} (2 eps + eps^2) resp. 2 eps (1 + eps)^{-2}: -3c^2/L, -4c^2/L
        assert float(ec.relvar_gaussian) == pytest.approx(2 * c - 3 * c**2 / L, abs=5 / L**2)
        assert float(ec.relvar_orthogonal) == pytest.approx(2 * c - 4 * c**2 / L, abs=7 / L**2)


def test_equalising_rho():
    for name in ("relu", "tanh", "selu"):
        rho = sp.equalising_rho(name, 40, 0.8)
        assert float(sp.effective_cumulant(name, 40, rho).c) == pytest.approx(0.8, rel=1e-9)
    assert sp.equalising_rho("relu", 40, 0.8) == pytest.approx(math.sqrt(0.8 * 2 / 40))
    with pytest.raises(ValueError, match="not reached"):
        sp.equalising_rho("tanh", 10, 5.0, rho_range=(1e-3, 1e-2))


def test_bad_inputs():
    with pytest.raises(ValueError, match="depth"):
        sp.effective_cumulant("tanh", 0, 0.1)
    with pytest.raises(ValueError, match="rho"):
        sp.effective_cumulant("tanh", 5, -0.1)
    with pytest.raises(ValueError, match="architecture"):
        sp.effective_cumulant("tanh", 5, 0.1, architecture="post")
    with pytest.raises(ValueError, match="weights"):
        sp.jacobian_spectrum(KEY, "tanh", 2, 4, weights="uniform")
    with pytest.raises(ValueError, match="cumulant"):
        sp.spectrum_edges(0.0)
    with pytest.raises(ValueError, match="decorrelate"):
        sp.jacobian_spectrum(KEY, "tanh", 2, 4, residual=False, decorrelate=True)


# --- the universal density ---------------------------------------------------------------


def _density_quadrature(c, f, n=800):
    """``int f(lambda) rho(lambda) d lambda`` with ``lambda = a + (b-a)(1-cos t)/2``."""
    lo, hi = sp.spectrum_edges(c)
    t, w = np.polynomial.legendre.leggauss(n)
    t = 0.5 * np.pi * (t + 1.0)
    lam = lo + 0.5 * (hi - lo) * (1.0 - np.cos(t))
    jac = 0.5 * (hi - lo) * np.sin(t) * 0.5 * np.pi
    return np.sum(w * jac * f(lam) * sp.universal_density(lam, c))


@pytest.mark.parametrize("c", [0.05, 2.0])
def test_density_normalises_and_matches_moments(c):
    assert _density_quadrature(c, lambda x: 1.0) == pytest.approx(1.0, abs=1e-7)
    m = sp.universal_moments(c, 4)
    for k in range(1, 5):
        assert _density_quadrature(c, lambda x, k=k: x**k) == pytest.approx(m[k - 1], rel=1e-6)
    assert m[0] == pytest.approx(math.exp(c))
    assert m[1] / m[0] ** 2 - 1 == pytest.approx(2 * c)  # relative variance 2c


@pytest.mark.parametrize("c", [1.5])
def test_density_solves_the_greens_function_equation(c):
    """``G(z) = int rho/(z - lambda)`` satisfies ``z = (1+u)/u e^{c(2u+1)}``, ``u = zG - 1``."""
    for z in (3.0 + 2.0j, 0.2 + 0.1j, -1.0 + 0.5j):
        G = _density_quadrature(c, lambda x, z=z: 1.0 / (z - x), n=800)
        u = z * G - 1.0
        assert abs((1 + u) / u * np.exp(c * (2 * u + 1)) - z) < 1e-6 * abs(z)


@pytest.mark.parametrize("c", [0.1, 1.0, 4.0])
def test_cdf_is_the_integral_of_the_density(c):
    lo, hi = sp.spectrum_edges(c)
    lam = np.geomspace(lo * 1.0001, hi * 0.9999, 7)
    for x in lam:
        ref = scipy.integrate.quad(lambda t: sp.universal_density(np.array([t]), c)[0], lo, x,
                                   limit=200, epsabs=1e-11)[0]
        assert float(sp.universal_cdf(np.array([x]), c)[0]) == pytest.approx(ref, abs=1e-8)
    assert list(sp.universal_cdf(np.array([lo / 2, hi * 2]), c)) == [0.0, 1.0]
    assert sp.universal_density(np.array([lo / 2, hi * 2]), c).tolist() == [0.0, 0.0]


def test_edges_and_condition_number():
    for c in (0.01, 0.3, 3.0):
        lo, hi = sp.spectrum_edges(c)
        lam, dens, cdf = sp.spectral_curve(c, 501)
        assert lam[0] == pytest.approx(lo, rel=1e-10) and lam[-1] == pytest.approx(hi, rel=1e-10)
        assert np.all(np.diff(lam) > 0) and np.all(np.diff(cdf) >= -1e-14)
        assert dens[0] == pytest.approx(0.0, abs=1e-6) and dens[-1] == pytest.approx(0, abs=1e-6)
        assert lo * hi == pytest.approx(1.0)  # the law's edges are reciprocal
        assert sp.condition_number(c) == pytest.approx(hi)
    # asymptotics: kappa ~ 1 + 2 sqrt(2c) for small c, ~ 2c e^{c+1} for large c
    assert sp.condition_number(1e-6) - 1 == pytest.approx(2 * math.sqrt(2e-6), rel=1e-2)
    assert sp.condition_number(200.0) / (400 * math.exp(201)) == pytest.approx(1.0, rel=1e-2)
    # kappa grows monotonically with c: smaller c, closer to isometry
    ks = [sp.condition_number(c) for c in (0.1, 0.5, 1, 2, 5)]
    assert np.all(np.diff(ks) > 0)


# --- theory vs empirical spectra ---------------------------------------------------------


def test_linear_resnet_matches_universal_law():
    """Linear ResNet, N = 200, L = 20, c = 1, 3 networks (600 eigenvalues)."""
    L, N, n_net = 20, 200, 3
    rho = math.sqrt(1.0 / L)
    lam = sp.jacobian_spectrum(KEY, "linear", L, N, rho, n_networks=n_net)
    thr = sp.ks_threshold(lam.size)  # 0.080
    assert sp.ks_distance(lam, 1.0) < thr
    # power: the law of a twice larger or smaller c is rejected by the same threshold
    assert sp.ks_distance(lam, 2.0) > thr and sp.ks_distance(lam, 0.5) > thr


def test_empirical_moments_match_finite_depth_theory():
    """Mean and relative variance of the spectrum vs the exact N -> inf finite-L values, in
    units of their standard error over independent networks."""
    L, N, n = 12, 120, 5
    for name, weights in (("tanh", "gaussian"),):
        rho = 0.3
        ec = sp.effective_cumulant(name, L, rho, architecture="tarnowski")
        means, rv = [], []
        for i in range(n):
            lam = sp.jacobian_spectrum(jax.random.fold_in(KEY, i), name, L, N, rho,
                                       weights=weights, architecture="tarnowski")
            means.append(lam.mean())
            rv.append(lam.var() / lam.mean() ** 2)
        se_m, se_v = np.std(means, ddof=1) / math.sqrt(n), np.std(rv, ddof=1) / math.sqrt(n)
        target_v = float(ec.relvar_gaussian if weights == "gaussian" else ec.relvar_orthogonal)
        # 1/N corrections: O(m1/N) = 0.01 here, added to the statistical allowance
        assert abs(np.mean(means) - float(ec.mean_sv2)) < 4 * se_m + 2 * float(ec.mean_sv2) / N
        assert abs(np.mean(rv) - target_v) < 4 * se_v + 2 * target_v / N, (name, weights)


@pytest.mark.parametrize("name", ["tanh"])
def test_tarnowski_resnet_matches_universal_law(name):
    """Post-activation ResNet (the paper's model): one law for every activation at equal c."""
    L, N = 20, 200
    rho = sp.equalising_rho(name, L, 1.0, architecture="tarnowski")
    lam = sp.jacobian_spectrum(KEY, name, L, N, rho, architecture="tarnowski", n_networks=2)
    thr = sp.ks_threshold(lam.size)
    assert sp.ks_distance(lam, 1.0) < thr
    assert sp.ks_distance(lam, 2.0) > thr and sp.ks_distance(lam, 0.5) > thr


def test_orthogonal_weights_are_orthogonal():
    """Haar samples: ``W W^T = sigma_w^2``; a depth-1 linear FFNet has singular values sigma_w."""
    lam = sp.jacobian_spectrum(KEY, "linear", 1, 50, sigma_w2=2.0, weights="orthogonal",
                               residual=False)
    np.testing.assert_allclose(lam, 2.0, rtol=1e-12)


def test_ffnet_isometry_contrast():
    """Critical FFNet (chi_1 = 1): orthogonal tanh near-isometric, Gaussian tanh and ReLU not."""
    L, N = 12, 150
    sw, q = sp.ffnet_critical_point("tanh", 1e-3)
    ff = sp.ffnet_spectrum_moments("tanh", L, sw, 1e-3, k0=q)
    np.testing.assert_allclose(np.asarray(ff.chi1), 1.0, rtol=1e-8)
    assert float(ff.mean_sv2) == pytest.approx(1.0, rel=1e-6)
    assert float(ff.relvar_gaussian) == pytest.approx(L + float(ff.relvar_orthogonal))
    assert float(ff.relvar_orthogonal) < 0.1 * float(ff.relvar_gaussian)
    for w in ("gaussian", "orthogonal"):
        lam = sp.jacobian_spectrum(KEY, "tanh", L, N, sigma_w2=sw, sigma_b2=1e-3, k0=q,
                                   weights=w, residual=False, n_networks=2)
        target = float(ff.relvar_gaussian if w == "gaussian" else ff.relvar_orthogonal)
        # the relative variance of a finite-N spectrum is biased low by the O(L/N) spread
        # missing from its top edge (measured: -10% at N = 200, L = 16)
        assert lam.var() / lam.mean() ** 2 == pytest.approx(target, rel=0.25), w
    relu = sp.ffnet_spectrum_moments("relu", L, 2.0)
    assert float(relu.relvar_orthogonal) == pytest.approx(L, rel=1e-10)  # one per layer
    assert float(relu.relvar_gaussian) == pytest.approx(2 * L, rel=1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["relu", "tanh", "sigmoid", "selu", "hard_tanh",
                                  "leaky_relu:0.3"])
def test_tarnowski_universality_large(name):
    """N = 1000, L = 50: KS within the DKW bound (0.062) for every activation at c = 1."""
    L, N = 50, 1000
    rho = sp.equalising_rho(name, L, 1.0, architecture="tarnowski")
    lam = sp.jacobian_spectrum(KEY, name, L, N, rho, architecture="tarnowski")
    assert sp.ks_distance(lam, 1.0) < 0.5 * sp.ks_threshold(N)


@pytest.mark.slow
def test_fieldres_architecture_deviation_is_the_layer_correlation():
    """Pre-activation ResNet with ReLU: phi' of a neuron persists across blocks, and the
    spectrum deviates from the universal law at any N; permuting D per block removes it."""
    L, N = 50, 800
    rho = sp.equalising_rho("relu", L, 1.0)
    plain = sp.ks_distance(sp.jacobian_spectrum(KEY, "relu", L, N, rho), 1.0)
    shuffled = sp.ks_distance(sp.jacobian_spectrum(KEY, "relu", L, N, rho, decorrelate=True), 1.0)
    assert shuffled < 0.02 < 0.03 < plain


# --- CLI ---------------------------------------------------------------------------------


def test_cli_json_and_figure(capsys, tmp_path):
    out = tmp_path / "spec.png"
    code = main(["jacobian-spectrum", "--activation", "relu", "--depth", "10", "--width", "80",
                 "--json", "--out", str(out), "--c-target", "0.5"])
    d = json.loads(capsys.readouterr().out)
    assert code == 0
    assert {"effective_cumulant", "ks_distance", "condition_number"} <= set(d)
    assert d["effective_cumulant"] == pytest.approx(0.5, rel=1e-9)
    assert d["condition_number"] == pytest.approx(sp.condition_number(0.5))
    assert 0 <= d["ks_distance"] < d["ks_threshold_iid"]
    assert d["rho"] == pytest.approx(math.sqrt(1.0 / 10))
    assert out.is_file() and out.read_bytes()[:4] == b"\x89PNG"


def test_cli_text(capsys):
    code = main(["jacobian-spectrum", "--activation", "linear", "--depth", "5", "--width", "40"])
    out = capsys.readouterr().out
    assert code == 0 and "effective cumulant c = 1" in out and "KS distance" in out


@pytest.mark.parametrize("argv, match", [
    (["--width", "0"], "width"),
    (["--depth", "0"], "depth"),
    (["--activation", "swish9"], "unknown activation"),
    (["--rho", "-1"], "rho"),
    (["--rho", "0.1", "--c-target", "1"], "either"),
    (["--sigma-w2", "0"], "sigma-w2"),
    (["--c-target", "1e9", "--depth", "3", "--width", "5"], "not reached"),
])
def test_cli_bad_input(capsys, argv, match):
    code = main(["jacobian-spectrum", *argv])
    err = capsys.readouterr().err
    assert code == 2 and match in err and err.count("\n") == 1


@pytest.mark.slow
def test_slow_extras():
    """The cases trimmed from the default run: more activations, orthogonal moments, G(z)."""
    for name in ("sigmoid", "hard_tanh", "leaky_relu:0.3"):
        rho = sp.equalising_rho(name, 40, 0.8)
        assert float(sp.effective_cumulant(name, 40, rho).c) == pytest.approx(0.8, rel=1e-9)
    for c in (0.3, 0.5):
        test_density_normalises_and_matches_moments(c)
        test_density_solves_the_greens_function_equation(c)
    L, N, n = 15, 200, 6
    ec = sp.effective_cumulant("linear", L, 0.3)
    means, rv = [], []
    for i in range(n):
        lam = sp.jacobian_spectrum(jax.random.fold_in(KEY, i), "linear", L, N, 0.3,
                                   weights="orthogonal")
        means.append(lam.mean())
        rv.append(lam.var() / lam.mean() ** 2)
    se_m, se_v = np.std(means, ddof=1) / math.sqrt(n), np.std(rv, ddof=1) / math.sqrt(n)
    assert abs(np.mean(means) - float(ec.mean_sv2)) < 4 * se_m + 2 * float(ec.mean_sv2) / N
    assert abs(np.mean(rv) - float(ec.relvar_orthogonal)) < 4 * se_v + 2 * float(
        ec.relvar_orthogonal) / N
    test_tarnowski_resnet_matches_universal_law("relu")
