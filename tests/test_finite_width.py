"""Tests of the single-input 1/N theory (fieldres.finite_width) against THEORY §5 and MC."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.special

from fieldres.finite_width import finite_width_single, gauss_cov_pair
from fieldres.kernels.activations import get_activation
from fieldres.kernels.recursion import Hyper, resnet_kernels
from fieldres.simulation import simulate_kernels

HYPER = Hyper(sigma_w2=1.25, sigma_b2=0.05, sigma_w2_out=1.25, sigma_b2_out=0.05)
REF = dict(k0=0.5, rho=0.3, depth=10, hyper=HYPER)


@pytest.fixture(scope="module")
def ref():
    return finite_width_single(**REF)


def test_reference_numbers(ref):
    """THEORY §5, erf, sigma_w2 = 1.25, sigma_b2 = 0.05, rho = 0.3, K0 = 0.5, L = 10."""
    assert float(ref.C[-1]) == pytest.approx(0.462566, abs=5e-7)
    assert float(ref.K[-1]) == pytest.approx(0.989557, abs=5e-7)
    assert float(ref.C_var[-1]) == pytest.approx(0.15901, abs=5e-6)
    assert float(ref.C_shift[-1]) == pytest.approx(-0.1496, abs=5e-5)
    assert float(ref.K_var[-1]) == pytest.approx(2.7575, abs=5e-5)
    assert float(ref.K_shift[-1]) == pytest.approx(-0.0836, abs=5e-5)
    # Output kernel: sigma_w2_out C + sigma_b2_out and its N-scaled variance and shift.
    assert float(ref.out) == pytest.approx(1.25 * 0.462566 + 0.05, abs=1e-6)
    assert float(ref.out_var) == pytest.approx(1.25**2 * float(ref.C_var[-1]), rel=1e-14)
    assert float(ref.out_shift) == pytest.approx(1.25 * float(ref.C_shift[-1]), rel=1e-14)


def test_leading_order_matches_kernels_module(ref):
    k = resnet_kernels(jnp.array([[0.5]]), 0.3, 10, HYPER)
    np.testing.assert_allclose(ref.K, k.trajectory[:, 0, 0], rtol=1e-14)
    np.testing.assert_allclose(ref.C, get_activation("erf").variance(ref.K), rtol=1e-14)


def test_cross_layer_terms_matter():
    """Treating the layers' noise as independent gives 0.121 instead of 0.159 (THEORY §4)."""
    r = finite_width_single(**REF, cross_layer=False)
    assert float(r.C_var[-1]) == pytest.approx(0.121, abs=5e-4)


def test_quadrature_converged():
    lo = finite_width_single(**REF, degree=96)
    hi = finite_width_single(**REF, degree=256)
    for name in ("C_cov", "K_var", "C_shift", "K_shift"):
        np.testing.assert_allclose(getattr(lo, name), getattr(hi, name), rtol=0, atol=1e-10)


def _phi2_np(x):
    return scipy.special.erf(x) ** 2


def _phi2_dd_np(x):
    """(erf^2)'' = 2 erf'^2 + 2 erf erf'' with erf' = 2 exp(-x^2) / sqrt(pi)."""
    e1 = 2.0 / np.sqrt(np.pi) * np.exp(-(x**2))
    return 2.0 * e1**2 - 4.0 * x * scipy.special.erf(x) * e1


@pytest.mark.parametrize("k1,d", [(0.5, 0.0), (0.5, 0.49), (0.3, 2.5)])
@pytest.mark.parametrize("g", ["phi2", "phi2_dd"])
def test_gauss_cov_pair_against_scipy(k1, d, g):
    """The 2-D Gauss--Hermite covariance against adaptive quadrature of the density."""
    erf = jax.scipy.special.erf
    g_jax = {"phi2": lambda x: erf(x) ** 2,
             "phi2_dd": lambda x: 2 * (2 / jnp.sqrt(jnp.pi) * jnp.exp(-(x**2))) ** 2
             - 4 * x * erf(x) * 2 / jnp.sqrt(jnp.pi) * jnp.exp(-(x**2))}[g]
    g_np = {"phi2": _phi2_np, "phi2_dd": _phi2_dd_np}[g]
    got = float(gauss_cov_pair(lambda x: erf(x) ** 2, g_jax, k1, d))

    def tg(x):  # E_v g(x + sqrt(d) v)
        if d == 0:
            return g_np(x)
        return scipy.integrate.quad(
            lambda v: g_np(x + np.sqrt(d) * v) * np.exp(-v * v / 2) / np.sqrt(2 * np.pi),
            -12, 12, epsabs=1e-13, epsrel=1e-12)[0]

    def dens(x):
        return np.exp(-x * x / (2 * k1)) / np.sqrt(2 * np.pi * k1)

    s = np.sqrt(k1) * 12
    quad = scipy.integrate.quad
    Ef = quad(lambda x: _phi2_np(x) * dens(x), -s, s, epsabs=1e-14)[0]
    Eg = quad(lambda x: tg(x) * dens(x), -s, s, epsabs=1e-13)[0]
    Efg = quad(lambda x: _phi2_np(x) * tg(x) * dens(x), -s, s, epsabs=1e-13)[0]
    assert got == pytest.approx(Efg - Ef * Eg, abs=1e-10)


@pytest.mark.parametrize("sigma_b2", [0.0, 0.2])
def test_linear_activation_exact(sigma_b2):
    """Linear phi: C-hat = K-hat obeys an exactly solvable recursion.

    Given layer l (q = K-hat^(l)), q' = |h + rho (W h + b)|^2 / N has mean (1 + a) q + b and
    variance (4 rho^2 q s + 2 rho^4 s^2) / N with s = sigma_w2 q + sigma_b2, so
    N Var q^(l+1) = (1 + a)^2 N Var q^(l) + 4 rho^2 K s + 2 rho^4 s^2 + O(1/N), and the mean
    shift vanishes.
    """
    rho, L, k0 = 0.4, 12, 0.7
    hyper = Hyper(sigma_w2=1.1, sigma_b2=sigma_b2)
    r = finite_width_single(k0, rho, L, hyper, "linear")
    a = rho**2 * 1.1
    K, v = k0, 2 * k0**2
    Ks, vs = [K], [v]
    for _ in range(L):
        s = 1.1 * K + sigma_b2
        v = (1 + a) ** 2 * v + 4 * rho**2 * K * s + 2 * rho**4 * s**2
        K = K + rho**2 * s
        Ks.append(K)
        vs.append(v)
    np.testing.assert_allclose(r.K, Ks, rtol=1e-13)
    np.testing.assert_allclose(r.C_var, vs, rtol=1e-11)
    np.testing.assert_allclose(r.K_var, vs, rtol=1e-11)
    np.testing.assert_allclose(r.C_shift, 0.0, atol=1e-12)
    np.testing.assert_allclose(r.K_shift, 0.0, atol=1e-12)


def test_structure(ref):
    n = ref.K.shape[0]
    np.testing.assert_allclose(ref.C_cov, ref.C_cov.T, atol=1e-15)
    assert float(jnp.linalg.eigvalsh(ref.C_cov)[0]) > 0
    np.testing.assert_allclose(jnp.triu(ref.R, 1), 0.0)
    np.testing.assert_allclose(jnp.diagonal(ref.R), 1.0)
    assert ref.C_cov.shape == (n, n)
    # Layer 0 is an i.i.d. Gaussian layer: Var K-hat = 2 K0^2, no mean shift,
    # and N Var C-hat = Var[erf(h)^2] computed independently.
    assert float(ref.K_var[0]) == pytest.approx(2 * 0.5**2, rel=1e-14)
    assert float(ref.C_shift[0]) == 0.0 and float(ref.K_shift[0]) == 0.0
    def dens(x):  # N(0, 0.5)
        return np.exp(-x * x) / np.sqrt(np.pi)

    m2 = scipy.integrate.quad(lambda x: _phi2_np(x) * dens(x), -12, 12, epsabs=1e-14)[0]
    m4 = scipy.integrate.quad(lambda x: _phi2_np(x) ** 2 * dens(x), -12, 12, epsabs=1e-14)[0]
    assert float(ref.C_var[0]) == pytest.approx(m4 - m2**2, abs=1e-12)


def test_generic_quadrature_activation_matches_closed_form(ref):
    """The Gauss--Hermite activation path (C', C'' by Price-theorem JVPs) agrees with erf."""
    r = finite_width_single(**REF, activation="erf-quadrature")
    for name in ("K", "C", "C_cov", "K_var", "C_shift", "K_shift"):
        np.testing.assert_allclose(getattr(r, name), getattr(ref, name), rtol=0, atol=1e-8)


def test_input_validation():
    with pytest.raises(ValueError):
        finite_width_single(jnp.eye(2), 0.3, 10)
    with pytest.raises(ValueError):
        finite_width_single(-0.5, 0.3, 10)
    with pytest.raises(ValueError):
        finite_width_single(0.5, -0.3, 10)
    with pytest.raises((ValueError, TypeError)):
        finite_width_single(0.5, 0.3, 0)


# ------------------------------------------------------------------------------------------
# Monte Carlo
# ------------------------------------------------------------------------------------------


def _var_and_se(samples):
    """Unbiased variance of the samples and its standard error (from the fourth moment)."""
    x = np.asarray(samples, dtype=np.float64)
    n = x.size
    d = x - x.mean()
    var = d.var(ddof=1)
    m4 = np.mean(d**4)
    return var, np.sqrt((m4 - var**2) / n)


def _mc_check(theory, activation, width, n_networks, seed, hyper=HYPER, k0=0.5, rho=0.3,
              depth=10, check_var=True, n_se=3.0):
    s = simulate_kernels(
        jax.random.PRNGKey(seed), jnp.array([[k0]]), rho=rho, depth=depth, width=width,
        n_networks=n_networks, activation=activation, sigma_w2=float(hyper.sigma_w2),
        sigma_b2=float(hyper.sigma_b2), method="sampler",
    )
    N = width
    out = {}
    # Means: E C-hat^(L) - (LO + Delta / N), E K-hat^(L) - (LO + Delta_K / N), within n_se SE.
    for name, mean, se, lo, shift in (
        ("C", s.C_mean, s.C_stderr, theory.C, theory.C_shift),
        ("K", s.K_mean, s.K_stderr, theory.K, theory.K_shift),
    ):
        m, e = float(mean[-1, 0, 0]), float(se[-1, 0, 0])
        pred = float(lo[-1] + shift[-1] / N)
        out[f"{name}_mean"] = (N * (m - float(lo[-1])), N * e, float(shift[-1]))
        assert abs(m - pred) < n_se * e, (name, N, m, pred, e)
    for name, last, pred in (("C", s.C_last, theory.C_var[-1]),
                             ("K", s.K_last, theory.K_var[-1])):
        v, e = _var_and_se(last[:, 0, 0])
        out[f"{name}_var"] = (N * v, N * e, float(pred))
        if check_var:
            assert abs(N * v - float(pred)) < n_se * N * e, (name, N, N * v, pred, N * e)
            assert abs(N * v / float(pred) - 1) < 0.05
    return out


def test_mc_reference_width_200(ref):
    _mc_check(ref, "erf", width=200, n_networks=40_000, seed=1)


def test_mc_tanh_width_200():
    hyper = Hyper(sigma_w2=1.5, sigma_b2=0.1)
    th = finite_width_single(0.8, 0.5, 6, hyper, "tanh")
    _mc_check(th, "tanh", width=200, n_networks=40_000, seed=2, hyper=hyper, k0=0.8, rho=0.5,
              depth=6)


# The variance is checked at N >= 200 only: N Var itself has O(1/N) corrections, which the
# statistics of 400 000 networks resolve at N = 50 (e.g. N Var K-hat = 2.785 +- 0.007 there).
@pytest.mark.slow
@pytest.mark.parametrize("width", [50, 100, 200])
def test_mc_mean_shift_widths(ref, width):
    out = _mc_check(ref, "erf", width=width, n_networks=400_000, seed=10 + width,
                    check_var=width >= 200)
    print(width, out)


@pytest.mark.slow
@pytest.mark.parametrize("width", [50, 200])
def test_mc_tanh_widths(width):
    hyper = Hyper(sigma_w2=1.5, sigma_b2=0.1)
    th = finite_width_single(0.8, 0.5, 6, hyper, "tanh")
    out = _mc_check(th, "tanh", width=width, n_networks=400_000, seed=1000 + width, hyper=hyper,
                    k0=0.8, rho=0.5, depth=6, check_var=width >= 200)
    print(width, out)
