"""The general-P 1/N theory (fieldres.finite_width.finite_width): exact special cases,
independent routes for the Gaussian integrals, and Monte Carlo of finite networks.

Monte-Carlo comparisons: means within 3 standard errors (SE) of the NLO prediction; N Cov
within a few percent of its scale sqrt(Cov_ii Cov_jj) (N Cov itself has O(1/N)
corrections, resolved by the statistics used here at N = 100: see the slow tests).
"""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.special
import scipy.stats

from fieldres.finite_width import bvn_excess, finite_width, finite_width_single
from fieldres.finite_width.moments import _erf_inner
from fieldres.kernels.recursion import Hyper
from fieldres.simulation import simulate_nlo

HYPER = Hyper(sigma_w2=1.25, sigma_b2=0.05, sigma_w2_out=1.25, sigma_b2_out=0.05)
K2 = np.array([[0.5, 0.3], [0.3, 0.8]])  # the P = 2 erf validation case (rho = 0.5, L = 8)
TANH = dict(K0=np.array([[0.8, 0.4], [0.4, 0.6]]), rho=0.5, depth=6,
            hyper=Hyper(sigma_w2=1.5, sigma_b2=0.1), activation="tanh")
FF = dict(K0=K2, rho=1.0, depth=4, hyper=Hyper(sigma_w2=1.5, sigma_b2=0.1), residual=False)


@pytest.fixture(scope="module")
def p2():
    return finite_width(K2, 0.5, 8, HYPER)  # the walk method (default for P <= 2)


@pytest.fixture(scope="module")
def p2_pairs():
    return finite_width(K2, 0.5, 8, HYPER, method="pairs")


# ------------------------------------------------------------------------------------------
# Exact special cases
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["walk", "pairs"])
def test_single_input_special_case(method):
    """P = 1 of the general code = the single-input code (THEORY §5 case) to 1e-10."""
    g = finite_width(jnp.array([[0.5]]), 0.3, 10, HYPER, method=method)
    s = finite_width_single(0.5, 0.3, 10, HYPER, degree=256)
    assert g.method == method
    if method == "pairs":  # every pair of layers
        np.testing.assert_allclose(g.C_cov_layers[:, :, 0, 0, 0, 0], s.C_cov, atol=1e-10)
    else:
        assert g.C_cov_layers is None
    np.testing.assert_allclose(g.C_cov[:, 0, 0, 0, 0], jnp.diagonal(s.C_cov), atol=1e-10)
    np.testing.assert_allclose(g.K_cov[:, 0, 0, 0, 0], s.K_var, atol=1e-10)
    np.testing.assert_allclose(g.C_shift[:, 0, 0], s.C_shift, rtol=0, atol=1e-10)
    np.testing.assert_allclose(g.K_shift[:, 0, 0], s.K_shift, rtol=0, atol=1e-10)
    assert float(g.C_cov[-1, 0, 0, 0, 0]) == pytest.approx(0.15901, abs=5e-6)
    assert float(g.C_shift[-1, 0, 0]) == pytest.approx(-0.1496, abs=5e-5)
    assert float(g.out_shift[0, 0]) == pytest.approx(1.25 * float(s.C_shift[-1]), rel=1e-9)


def test_diagonal_entries_are_single_input_problems(p2):
    """Diagonal entries of a P = 2 problem depend only on their own input: P = 1 results.

    (Tolerance: the quadrature accuracy of the default rules at K^(L) ~ 1.6, see
    ``test_quadrature_converged``; the exactness of the P = 1 reduction is tested to 1e-10
    with converged rules in ``test_single_input_special_case``.)
    """
    for a, k0 in ((0, 0.5), (1, 0.8)):
        s = finite_width_single(k0, 0.5, 8, HYPER)
        np.testing.assert_allclose(p2.C_cov[:, a, a, a, a], jnp.diagonal(s.C_cov), atol=5e-8)
        np.testing.assert_allclose(p2.C_shift[:, a, a], s.C_shift, atol=5e-8)
        np.testing.assert_allclose(p2.K_cov[:, a, a, a, a], s.K_var, atol=5e-8)


def _linear_recursion(K0, rho, depth, sw, sb, residual):
    """N Cov(K-hat^(l)) of a linear network by its exact one-step recursion (independent)."""
    K = K0.copy()

    def iss(A, B):
        return np.einsum("ka,lb->klab", A, B) + np.einsum("kb,la->klab", A, B)

    V = iss(K, K)
    Ks, Vs = [K], [V]
    a = rho**2 * sw
    for _ in range(depth):
        if residual:
            S = a * K + rho**2 * sb
            # Given layer l: Cov[(h+xi)_k (h+xi)_l, (h+xi)_a (h+xi)_b] per neuron, averaged.
            inc = iss(S, S) + iss(K, S) + iss(S, K)
            V = (1 + a) ** 2 * V + inc
            K = K + S
        else:
            S = sw * K + sb
            V = sw**2 * V + iss(S, S)
            K = S
        Ks.append(K)
        Vs.append(V)
    return np.array(Ks), np.array(Vs)


@pytest.mark.parametrize("method", ["walk", "pairs"])
@pytest.mark.parametrize("residual", [True, False])
def test_linear_network_exact(residual, method):
    """Linear phi, P = 2: C-hat = K-hat obey an exact recursion; the mean shift vanishes."""
    K0 = np.array([[0.7, 0.3], [0.3, 0.5]])
    rho, L, sw, sb = 0.4, 6, 1.1, 0.2
    r = finite_width(K0, rho, L, Hyper(sigma_w2=sw, sigma_b2=sb), "linear", residual=residual,
                     degree=32, inner_degree=32, method=method)
    Ks, Vs = _linear_recursion(K0, rho, L, sw, sb, residual)
    np.testing.assert_allclose(r.K, Ks, rtol=1e-13)
    for name in ("C_cov", "K_cov", "CK_cov"):
        np.testing.assert_allclose(getattr(r, name), Vs, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(r.C_shift, 0.0, atol=1e-12)
    np.testing.assert_allclose(r.K_shift, 0.0, atol=1e-12)
    if method == "walk":
        return
    T = r.K_cov_layers
    if residual:  # cross-layer: N Cov(K^(l+1), K^(m)) = (1 + a) N Cov(K^(l), K^(m)), m <= l
        a = rho**2 * sw
        np.testing.assert_allclose(T[4, 2], (1 + a) ** 2 * T[2, 2], rtol=1e-11)
    else:  # FFNet: N Cov(K^(l+1), K^(l)) = sw N Cov(K^(l), K^(l)) (the propagated part)
        np.testing.assert_allclose(T[3, 2], sw * T[2, 2], rtol=1e-11)


def test_ffnet_single_input_recursion():
    """FFNet, P = 1, tanh: against the one-line recursions evaluated with scipy quadrature.

    Given layer l, C-hat^(l+1) is an average of N i.i.d. phi(xi)^2, xi ~ N(0, S), S = sw C +
    sb, so N Var C^(l+1) = (sw C'(K))^2 N Var C^(l) + Var_K[phi^2] and Delta^(l+1) = sw C'
    Delta^(l) + sw^2 C'' N Var C^(l) / 2.
    """
    sw, sb, k0, L = 1.6, 0.1, 0.7, 5
    r = finite_width(jnp.array([[k0]]), 1.0, L, Hyper(sigma_w2=sw, sigma_b2=sb), "tanh",
                     residual=False)

    def E(f, K):
        return scipy.integrate.quad(lambda x: f(x) * np.exp(-x * x / (2 * K))
                                    / np.sqrt(2 * np.pi * K), -14 * np.sqrt(K),
                                    14 * np.sqrt(K), epsabs=1e-14, limit=200)[0]

    def C(K):
        return E(lambda x: np.tanh(x) ** 2, K)

    t, t1, t2 = np.tanh, lambda x: 1 - np.tanh(x) ** 2, lambda x: -2 * np.tanh(x) * (
        1 - np.tanh(x) ** 2)
    # C'(K) = E[(phi^2)'']/2,  C''(K) = E[(phi^2)'''']/4 (heat equation), via derivatives:
    def d2(x):  # (tanh^2)''
        return 2 * t1(x) ** 2 + 2 * t(x) * t2(x)

    def d4(x, h=1e-3):
        return (d2(x + h) - 2 * d2(x) + d2(x - h)) / h**2

    K, V, D = k0, E(lambda x: t(x) ** 4, k0) - C(k0) ** 2, 0.0
    for _ in range(L):
        K_new = sw * C(K) + sb
        G, H = E(d2, K_new) / 2, E(d4, K_new) / 4
        D = sw * G * D + 0.5 * sw**2 * H * V
        V = (sw * G) ** 2 * V + E(lambda x: t(x) ** 4, K_new) - C(K_new) ** 2
        K = K_new
    assert float(r.K[-1, 0, 0]) == pytest.approx(K, rel=1e-9)
    assert float(r.C_cov[-1, 0, 0, 0, 0]) == pytest.approx(V, rel=1e-5)
    assert float(r.C_shift[-1, 0, 0]) == pytest.approx(D, rel=1e-4)


# ------------------------------------------------------------------------------------------
# Gaussian integrals
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("u1,u2,r", [(0.3, -0.5, 0.4), (1.2, 0.9, 0.9), (-2.0, 1.0, -0.7),
                                     (0.0, 0.0, 0.0)])
def test_bvn_excess_against_scipy(u1, u2, r):
    """Sheppard's integral against 1-D adaptive quadrature of the bivariate CDF."""
    q = math.sqrt(1 - r * r)
    phi2 = scipy.integrate.quad(
        lambda x: scipy.stats.norm.pdf(x) * scipy.stats.norm.cdf((u2 - r * x) / q),
        -np.inf, u1, epsabs=1e-15, epsrel=1e-13)[0]
    ref = phi2 - scipy.stats.norm.cdf(u1) * scipy.stats.norm.cdf(u2)
    assert float(bvn_excess(u1, u2, r)) == pytest.approx(ref, abs=2e-14)


def test_erf_inner_hessian_is_derivative_of_value():
    """The closed-form Hessian in the conditional mean = autodiff of the quadrature value."""
    S = jnp.array([[0.6, 0.25], [0.25, 0.4]])
    m = jnp.array([0.3, -0.7])
    val, H = _erf_inner(m, S, 48)
    H_ad = jax.hessian(lambda mm: _erf_inner(mm, S, 48)[0])(m)
    np.testing.assert_allclose(H, H_ad, atol=1e-12)
    # and the value against direct 2-D Gauss-Hermite of erf(y1) erf(y2), y ~ N(m, S)
    x, w = scipy.special.roots_hermitenorm(80)
    w = w / w.sum()
    L = np.linalg.cholesky(np.asarray(S))
    z1, z2 = np.meshgrid(x, x, indexing="ij")
    y1 = 0.3 + L[0, 0] * z1
    y2 = -0.7 + L[1, 0] * z1 + L[1, 1] * z2
    ref = np.sum(np.outer(w, w) * scipy.special.erf(y1) * scipy.special.erf(y2))
    assert float(val) == pytest.approx(ref, abs=1e-13)


@pytest.mark.slow
def test_erf_closed_form_route_equals_generic_quadrature():
    """Closed-form inner integrals (erf) = 2-D Gauss--Hermite inner integrals (erf by
    quadrature), all P = 2 entries, covariances and shifts."""
    a = finite_width(K2, 0.5, 2, HYPER, method="pairs")
    b = finite_width(K2, 0.5, 2, HYPER, "erf-quadrature", degree=64, inner_degree=28,
                     method="pairs")
    for name in ("C_cov", "K_cov", "CK_cov", "C_shift", "K_shift"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=0, atol=2e-6,
                                   err_msg=name)


def test_quadrature_converged(p2):
    hi = finite_width(K2, 0.5, 8, HYPER, degree=128, n_theta=48)
    for name in ("C_cov", "K_cov", "CK_cov", "C_shift", "K_shift", "out_cov"):
        np.testing.assert_allclose(getattr(p2, name), getattr(hi, name), rtol=0, atol=1e-8,
                                   err_msg=name)


def test_structure(p2_pairs, p2):
    n = p2_pairs.K.shape[0]
    T = np.asarray(p2_pairs.C_cov_layers)
    # symmetries: (a b) <-> (b a), (l, ab) <-> (l', cd)
    np.testing.assert_allclose(T, np.transpose(T, (0, 1, 3, 2, 4, 5)), atol=1e-14)
    np.testing.assert_allclose(T, np.transpose(T, (1, 0, 4, 5, 2, 3)), atol=1e-14)
    # the covariance over all layers and entries is positive semi-definite
    e = np.asarray(p2.entries)
    big = T[:, :, e[:, 0], e[:, 1]][:, :, :, e[:, 0], e[:, 1]]
    big = np.transpose(big, (0, 2, 1, 3)).reshape(n * 3, n * 3)
    assert np.linalg.eigvalsh(big)[0] > -1e-12
    np.testing.assert_allclose(p2_pairs.C_cov, T[np.arange(n), np.arange(n)], rtol=1e-15)
    # same-layer covariances (walk): symmetric, PSD over the entries at every layer
    W = np.asarray(p2.C_cov)
    np.testing.assert_allclose(W, np.transpose(W, (0, 3, 4, 1, 2)), atol=1e-14)
    np.testing.assert_allclose(W, np.transpose(W, (0, 2, 1, 3, 4)), atol=1e-14)
    for name in ("C", "K"):
        for layer in range(n):
            assert np.linalg.eigvalsh(np.asarray(p2.cov_matrix(name, layer)))[0] > -1e-12
    assert p2.cov_matrix("out").shape == (3, 3)
    np.testing.assert_allclose(p2.out_cov, 1.25**2 * p2.C_cov[-1], rtol=1e-14)
    np.testing.assert_allclose(p2.K_shift[1:], np.cumsum(
        0.25 * 1.25 * np.asarray(p2.C_shift[:-1]), axis=0), atol=1e-14)
    # layer 0: i.i.d. Gaussian layer, no shift
    np.testing.assert_allclose(p2.C_shift[0], 0.0, atol=1e-15)


def test_cross_layer_terms_matter(p2):
    wrong = finite_width(K2, 0.5, 8, HYPER, cross_layer=False)
    assert float(wrong.C_cov[-1, 0, 1, 0, 1]) < 0.8 * float(p2.C_cov[-1, 0, 1, 0, 1])


def test_output_prior(p2):
    N = 100.0
    op = p2.output_prior(N)
    k = float(p2.out[0, 0])
    assert float(op["excess_kurtosis"][0]) == pytest.approx(
        3 * float(p2.out_cov[0, 0, 0, 0]) / N / k**2, rel=1e-12)
    np.testing.assert_allclose(op["cov_y2_gaussian"], 2 * p2.out**2)
    # Cov(y_a^2, y_b^2) - 2 (E y_a y_b)^2 = Cov(K_aa, K_bb) + 2 Var K_ab
    m = p2.out + p2.out_shift / N
    extra = (p2.out_cov[0, 0, 1, 1] + 2 * p2.out_cov[0, 1, 0, 1]) / N
    assert float(op["cov_y2"][0, 1]) == pytest.approx(float(2 * m[0, 1] ** 2 + extra),
                                                      rel=1e-12)


def test_input_validation():
    with pytest.raises(ValueError, match="inputs"):
        finite_width(np.eye(5), 0.3, 3)
    with pytest.raises(ValueError):
        finite_width(K2, -0.3, 3)
    with pytest.raises(TypeError):
        finite_width(K2, 0.3, 3.0)
    with pytest.raises(ValueError):
        finite_width(K2, 0.3, 3, inputs=(0, 2))


def test_selected_inputs_of_a_larger_kernel():
    """Entries among selected inputs of a P = 6 kernel = the sub-block problem."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6, 20))
    K0 = 0.6 * X @ X.T / 20 + 0.05
    a = finite_width(K0, 0.4, 3, HYPER, inputs=(4, 1), degree=48)
    b = finite_width(K0[np.ix_([4, 1], [4, 1])], 0.4, 3, HYPER, degree=48)
    np.testing.assert_allclose(a.C_cov, b.C_cov, rtol=1e-13)


# ------------------------------------------------------------------------------------------
# Monte Carlo of finite networks
# ------------------------------------------------------------------------------------------


def _compare(th, sim, N, n_se=3.0, rel_cov=0.05, check_cov=True):
    """Means within n_se SE of LO + shift / N; N Cov within rel_cov of its scale."""
    report = {}
    for name in ("C", "K", "out"):
        lo = np.asarray(th.out if name == "out" else getattr(th, name)[-1])
        shift = np.asarray(th.out_shift if name == "out" else getattr(th, f"{name}_shift")[-1])
        m = np.asarray(getattr(sim, f"{name}_mean"))
        se = np.asarray(getattr(sim, f"{name}_mean_se"))
        z = (m - lo - shift / N) / se
        report[f"{name}_mean_z"] = z.round(2).tolist()
        assert np.all(np.abs(z) < n_se), (name, N, z)
        tc = np.asarray(th.cov_matrix(name))
        mc = np.asarray(getattr(sim, f"{name}_ncov"))
        scale = np.sqrt(np.outer(np.diag(tc), np.diag(tc)))
        dev = np.abs(mc - tc) / scale
        report[f"{name}_ncov_dev"] = dev.round(4).tolist()
        if check_cov:
            assert np.all(dev < rel_cov), (name, N, mc, tc)
    return report


def test_mc_p2_resnet_erf(p2):
    sim = simulate_nlo(jax.random.PRNGKey(7), K2, rho=0.5, depth=8, width=200,
                       n_networks=20_000, hyper=HYPER)
    _compare(p2, sim, 200)


def test_mc_p2_ffnet_erf():
    th = finite_width(FF["K0"], FF["rho"], FF["depth"], FF["hyper"], residual=False)
    sim = simulate_nlo(jax.random.PRNGKey(8), K2, rho=1.0, depth=4, width=200,
                       n_networks=20_000, hyper=FF["hyper"], residual=False)
    _compare(th, sim, 200)


def test_mc_full_weight_networks(p2):
    """Explicit N x N weight matrices: the NLO mean within 3 SE at N = 50."""
    sim = simulate_nlo(jax.random.PRNGKey(9), K2, rho=0.5, depth=8, width=50,
                       n_networks=3_000, hyper=HYPER, method="full", batch_size=500)
    _compare(p2, sim, 50, rel_cov=0.12)


def test_theory_rejects_a_wrong_covariance(p2):
    """The MC comparison can fail: the independent-layer approximation is rejected."""
    wrong = finite_width(K2, 0.5, 8, HYPER, cross_layer=False)
    sim = simulate_nlo(jax.random.PRNGKey(7), K2, rho=0.5, depth=8, width=200,
                       n_networks=20_000, hyper=HYPER)
    with pytest.raises(AssertionError):
        _compare(wrong, sim, 200)


# -- slow: the widths of the issue, the three validation cases, scaling of the errors -----

CASES = {
    "theory5": dict(K0=np.array([[0.5]]), rho=0.3, depth=10, hyper=HYPER, activation="erf"),
    "p2_erf": dict(K0=K2, rho=0.5, depth=8, hyper=HYPER, activation="erf"),
    "p2_tanh": TANH,
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("width", [50, 100, 200, 400])
def test_mc_widths(case, width):
    c = CASES[case]
    th = finite_width(c["K0"], c["rho"], c["depth"], c["hyper"], c["activation"])
    n = {50: 200_000, 100: 200_000, 200: 100_000, 400: 100_000}[width]
    sim = simulate_nlo(jax.random.PRNGKey(100 + width), c["K0"], rho=c["rho"],
                       depth=c["depth"], width=width, n_networks=n, hyper=c["hyper"],
                       activation=c["activation"])
    rep = _compare(th, sim, width, check_cov=width >= 200)
    print(case, width, json.dumps(rep))


@pytest.mark.slow
@pytest.mark.usefixtures("experiments_path")
def test_nlo_error_falls_like_inverse_width_squared():
    """ResNet, two anti-correlated inputs (rho = 0.7, L = 8), E C^(L)_12 by the exact kernel
    sampler at N = 8, 16, 32 (1, 2, 8 million networks): after the NLO correction the error
    falls like 1/N^2 (fitted exponent within 3 SE of 2), the leading-order error like 1/N.
    (Paper preset, N = 8..48 up to 16 million networks: 1.90 +- 0.10.)"""
    import importlib

    mod = importlib.import_module("fig_nlo_validation")
    p = dict(rn_nlo_widths=[8, 16, 32], rn_networks=[1_000_000, 2_000_000, 8_000_000])
    r = mod.resnet_width_scaling(jax.random.PRNGKey(11), p)
    print(json.dumps(r["rows"]), r["exponent_nlo"], r["exponent_nlo_se"], r["exponent_lo"])
    assert r["widths_used_nlo"] == [8, 16, 32]  # every NLO error resolved (> 2 SE)
    assert abs(r["exponent_nlo"] - 2.0) < 3 * r["exponent_nlo_se"]
    assert r["exponent_nlo_se"] < 0.25
    # the leading-order error is dominated by 1/N; its own 1/N^2 part lifts the apparent
    # exponent at these small widths (1.14 here, 1.10 +- 0.01 over N = 8..48 in the paper
    # preset); the NLO correction removes one power of N (measured: 2.22 +- 0.18 vs 1.14)
    assert r["exponent_lo"] < 1.5
    assert abs(r["exponent_nlo"] - r["exponent_lo"] - 1.0) < 3 * r["exponent_nlo_se"]


@pytest.mark.slow
def test_mc_output_prior_kurtosis():
    """Excess kurtosis and Cov(y_a^2, y_b^2) of real network outputs vs the theory (N = 50).

    16 read-out units per network (independent given the network, sharing its kernel)
    average out most of the within-network Gaussian noise of y^4; standard errors over 40
    groups of networks.
    """
    from fieldres.simulation import simulate_outputs

    th = finite_width(K2, 0.5, 8, HYPER)
    N = 50
    y = np.asarray(simulate_outputs(jax.random.PRNGKey(5), jnp.asarray(K2), rho=0.5, depth=8,
                                    width=N, n_networks=200_000, sigma_w2=1.25,
                                    sigma_b2=0.05, batch_size=4000, n_outputs=16))
    G = 40
    groups = y.reshape(G, -1, 16, 2)
    m2 = np.array([np.mean(g[..., 0] ** 2) for g in groups])
    m4 = np.array([np.mean(g[..., 0] ** 4) for g in groups])
    kurt = m4 / m2**2 - 3
    c12 = np.array([np.mean(g[..., 0] ** 2 * g[..., 1] ** 2)
                    - np.mean(g[..., 0] ** 2) * np.mean(g[..., 1] ** 2) for g in groups])
    op = th.output_prior(N)
    se_k, se_c = kurt.std(ddof=1) / np.sqrt(G), c12.std(ddof=1) / np.sqrt(G)
    z_k = (kurt.mean() - float(op["excess_kurtosis"][0])) / se_k
    z_c = (c12.mean() - float(op["cov_y2"][0, 1])) / se_c
    print("kurtosis", kurt.mean(), "+-", se_k, op["excess_kurtosis"], "cov y2", c12.mean(),
          "+-", se_c, op["cov_y2"][0, 1], "gaussian", op["cov_y2_gaussian"][0, 1])
    assert abs(z_k) < 3 and abs(z_c) < 3
    # the Gaussian (infinite-width) prior is rejected
    assert kurt.mean() / se_k > 5
    assert abs(c12.mean() - float(op["cov_y2_gaussian"][0, 1])) / se_c > 3


# ------------------------------------------------------------------------------------------
# rho*(N) and the CLI
# ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_rho_star_width_is_the_maximum_of_the_nlo_response():
    """rho*(N) (first order in 1/N) vs the exact root of d chi_N / d log rho (bisection).

    The first-order formula must capture the shift (error << c / N) and its error must fall
    like 1/N^2. Also: jax.grad of rho*(N) w.r.t. sigma_w2 against central finite differences.
    """
    from fieldres.finite_width import chi_out_nlo, rho_star_width

    K0 = jnp.array([[0.05, 0.03], [0.03, 0.05]])
    L = 4
    r = rho_star_width(K0, L, 100.0, Hyper(), entry=(0, 0), degree=48)
    u0, c = math.log(float(r.rho_star_inf)), float(r.shift)

    def exact_root(N):
        def dchi(u):
            def f(uu):
                c0, c1 = chi_out_nlo(K0, jnp.exp(uu), L, Hyper(), degree=48)
                return c0 + c1 / N

            return float(jax.jvp(f, (jnp.asarray(u),), (jnp.asarray(1.0),))[1])

        lo, hi = u0 - 0.05, u0 + 0.05
        assert dchi(lo) > 0 > dchi(hi)
        for _ in range(45):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if dchi(mid) > 0 else (lo, mid)
        return 0.5 * (lo + hi)

    errs = {}
    for N in (100.0, 400.0):
        exact = exact_root(N)
        first = math.log(float(rho_star_width(K0, L, N, Hyper(), entry=(0, 0),
                                              degree=48).rho_star))
        assert abs(exact - u0) > 1e-6  # rho* does move with the width
        errs[N] = first - exact
        assert abs(errs[N]) < 0.1 * abs(c / N), (N, first, exact, c)
    assert abs(errs[400.0]) < abs(errs[100.0]) / 8  # O(1/N^2): 1/16 expected

    def rs(sw):
        return rho_star_width(K0, L, 100.0, Hyper(sigma_w2=sw), entry=(0, 0),
                              degree=48).rho_star

    g = jax.grad(rs)(1.25)
    fd = (float(rs(1.25 + 1e-4)) - float(rs(1.25 - 1e-4))) / 2e-4
    assert float(g) == pytest.approx(fd, rel=1e-4)


def _response_check(entry, rho, width, n_networks, seed):
    from fieldres.finite_width import chi_out_nlo
    from fieldres.simulation import simulate_response

    K0 = jnp.array([[0.05, 0.03], [0.03, 0.05]])
    c0, c1 = chi_out_nlo(K0, rho, 10, Hyper(), entry=entry)
    a, b = entry
    T = jnp.zeros((2, 2)).at[a, b].set(1.0).at[b, a].set(1.0)
    r = simulate_response(jax.random.PRNGKey(seed), K0, T, rho=rho, depth=10, width=width,
                          n_networks=n_networks, batch_size=500)
    m, se = float(r.mean[a, b]), float(r.stderr[a, b])
    assert abs(m - float(c0 + c1 / width)) < 3 * se, (m, float(c0 + c1 / width), se)
    assert abs(m - float(c0)) > 5 * se  # the infinite-width response is rejected


def test_nlo_response_against_pathwise_monte_carlo():
    """chi^out at NLO (derivative of the NLO mean output kernel w.r.t. K0) vs the pathwise
    Monte-Carlo response of finite networks (diagonal summary, rho* of L = 10, N = 50).

    Measured: MC 1.9890 +- 0.0005 (400k networks), NLO 1.9888, LO 2.0190."""
    _response_check((0, 0), 0.326509160, 50, 100_000, 50)


@pytest.mark.slow
def test_nlo_response_offdiagonal_against_pathwise_monte_carlo():
    """Off-diagonal summary at its rho* (L = 10), N = 100: MC 11.3525 +- 0.0059, NLO 11.3601,
    LO 11.4089. (At N = 25 the O(1/N^2) remainder, ~ -50 / N^2, is resolved: 5 SE.)"""
    _response_check((0, 1), 1.089167842, 100, 400_000, 1100)


def _cli_json(capsys, argv):
    from fieldres.cli import main

    code = main(argv + ["--json"])
    return code, json.loads(capsys.readouterr().out)


def test_cli_nlo_reference_case(capsys):
    code, d = _cli_json(capsys, ["nlo", "--depth", "10", "--rho", "0.3", "--width", "200",
                                 "--k0", "0.5", "--sigma-b2", "0.05"])
    assert code == 0
    assert d["entries"] == [[0, 0]]
    assert d["C_ncov"][0][0] == pytest.approx(0.15901, abs=5e-6)
    assert d["K_ncov"][0][0] == pytest.approx(2.7575, abs=5e-5)
    assert d["C_nlo_mean"][0][0] == pytest.approx(0.462566 - 0.1496 / 200, abs=1e-6)
    assert d["out_lo"][0][0] == pytest.approx(1.25 * 0.462566 + 0.05, abs=1e-6)
    for k in ("C_lo", "K_lo", "K_nlo_mean", "out_nlo_mean", "out_ncov"):
        assert k in d


def test_cli_nlo_two_inputs_and_simulate(capsys, p2):
    code, d = _cli_json(capsys, ["nlo", "--depth", "8", "--rho", "0.5", "--width", "100",
                                 "--k0", "0.5,0.3;0.3,0.8"])
    assert code == 0
    assert d["entries"] == [[0, 0], [0, 1], [1, 1]]
    np.testing.assert_allclose(d["C_ncov"], p2.cov_matrix("C"), rtol=1e-10)
    np.testing.assert_allclose(d["out_nlo_mean"], p2.out + p2.out_shift / 100, rtol=1e-10)
    code, s = _cli_json(capsys, ["simulate", "--depth", "8", "--rho", "0.5", "--width", "100",
                                 "--k0", "0.5,0.3;0.3,0.8", "--n-networks", "2000"])
    assert code == 0
    assert s["entries"] == d["entries"] and s["n_networks"] == 2000
    for name in ("C", "K", "out"):
        m, se = np.asarray(s[f"{name}_nlo_mean"]), np.asarray(s[f"{name}_nlo_mean_se"])
        assert np.all(np.abs(m - np.asarray(d[f"{name}_nlo_mean"])) < 4 * se)
        assert np.asarray(s[f"{name}_ncov"]).shape == (3, 3)
        assert np.asarray(s[f"{name}_ncov_se"]).shape == (3, 3)


def test_cli_nlo_errors(capsys):
    from fieldres.cli import main

    assert main(["nlo", "--width", "0"]) == 2
    assert "width" in capsys.readouterr().err
    assert main(["nlo", "--activation", "relu", "--depth", "500"]) == 2  # O(L^2) pairs
    assert main(["nlo", "--k0", "1,0,0,0,0;0,1,0,0,0;0,0,1,0,0;0,0,0,1,0;0,0,0,0,1"]) == 2


@pytest.mark.slow
def test_cli_rho_star_width(capsys):
    code, d = _cli_json(capsys, ["rho-star", "--depth", "5", "--width", "100"])
    assert code == 0
    assert d["width"] == 100
    for kind in ("diagonal", "offdiagonal"):
        fw = d["finite_width"][kind]
        assert fw["rho_star_inf"] == pytest.approx(d[f"rho_star_{kind}"], rel=1e-9)
        assert d[f"rho_star_{kind}_N"] == pytest.approx(
            fw["rho_star_inf"] * math.exp(fw["log_shift_times_N"] / 100), rel=1e-12)
