"""The 1/N theory for piecewise-linear activations (ReLU, leaky ReLU): every new Gaussian
integral against an independent route (adaptive scipy quadrature split at the kink,
autodiff, a second quadrature rule), the two theory routes against each other (arc-cosine
closed forms of the single-input theory vs the kink-aligned polar quadrature of the pairs
method), and the theory against Monte Carlo of finite ReLU ResNets."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate
from scipy.stats import norm

import fieldres
from fieldres.finite_width import finite_width, finite_width_single
from fieldres.finite_width._piecewise import (
    _pl_element_moments,
    _pl_inner,
    _pl_single_moments,
    piecewise_slope,
)
from fieldres.kernels.activations import get_activation
from fieldres.simulation import simulate_nlo

jax.config.update("jax_enable_x64", True)

HYPER = fieldres.Hyper(sigma_w2=1.25, sigma_b2=0.05, sigma_w2_out=1.25, sigma_b2_out=0.05)
K1 = np.array([[0.5]])
K2 = np.array([[0.5, 0.3], [0.3, 0.8]])
SLOPES = [0.0, 0.2]


def _phi(y, s):
    return np.where(y > 0, y, s * y)


def _mean_phi(mu, sd, s):
    """E phi(N(mu, sd^2)) in closed form (a 1-D Gaussian integral)."""
    return s * mu + (1 - s) * (mu * norm.cdf(mu / sd) + sd * norm.pdf(mu / sd))


# -- single input: closed forms vs adaptive quadrature ----------------------------------------


def _cond_quad(f, g_inner, k1, d):
    """E[f(x) G(x)] - E f E G with x ~ N(0, k1), G(x) = E[g(x + sqrt(d) v)], split at 0."""
    sx = np.sqrt(k1)

    def outer(fun):
        return sum(integrate.quad(lambda z: fun(sx * z) * norm.pdf(z), a, b, epsabs=1e-14,
                                  epsrel=1e-13, limit=200)[0] for a, b in ((-40, 0), (0, 40)))

    Ef = outer(f)
    EG = outer(lambda x: g_inner(x, np.sqrt(d)))
    return outer(lambda x: f(x) * g_inner(x, np.sqrt(d))) - Ef * EG


@pytest.mark.parametrize("s", SLOPES)
@pytest.mark.parametrize("k1,k2", [(0.5, 0.5), (0.5, 0.9), (0.3, 2.7), (1.4, 1.5)])
def test_single_input_closed_forms_against_quadrature(s, k1, k2):
    U, c, Y = _pl_single_moments(jnp.array([k1, k2]), s)
    d = k2 - k1
    t = 1 - s * s

    def phi2(x):
        return _phi(x, s) ** 2

    def T_phi2(x, sd):  # E phi^2(x + sd v) = s^2 E y^2 + t E[y_+^2]
        if sd == 0:
            return phi2(x)
        m2 = x * x + sd * sd
        return s * s * m2 + t * (m2 * norm.cdf(x / sd) + x * sd * norm.pdf(x / sd))

    def T_phi2_dd(x, sd):  # E (phi^2)''(x + sd v) = 2 s^2 + 2 t Phi(x / sd)
        return 2 * s * s + 2 * t * (norm.cdf(x / sd) if sd > 0 else float(x > 0))

    ref_U = _cond_quad(phi2, T_phi2, k1, d)
    ref_Y = 0.5 * _cond_quad(phi2, T_phi2_dd, k1, d)
    ref_c = _cond_quad(phi2, lambda x, sd: x * x, k1, 0.0)
    assert float(U[0, 1]) == pytest.approx(ref_U, rel=1e-10, abs=1e-13)
    assert float(Y[0, 1]) == pytest.approx(ref_Y, rel=1e-10, abs=1e-13)
    assert float(c[0]) == pytest.approx(ref_c, rel=1e-10)
    assert float(U[1, 0]) == 0.0 and float(Y[1, 0]) == 0.0


# -- several inputs: the closed-form inner average ---------------------------------------------


def _inner_quad(m, S, s):
    """E[phi(y1) phi(y2)], y ~ N(m, S), by conditioning on y1 (1-D adaptive quadrature)."""
    s1 = np.sqrt(S[0, 0])
    b = S[0, 1] / S[0, 0]
    sd2 = np.sqrt(S[1, 1] - b * S[0, 1])

    def f(z):
        y1 = m[0] + s1 * z
        return _phi(y1, s) * _mean_phi(m[1] + b * s1 * z, sd2, s) * norm.pdf(z)

    z0 = -m[0] / s1
    return sum(integrate.quad(f, a, c, epsabs=1e-14, epsrel=1e-13, limit=200)[0]
               for a, c in ((-40, z0), (z0, 40)))


_inner = jax.jit(lambda m, S, s: _pl_inner(m, S, s, 32), static_argnums=2)
_hess = jax.jit(jax.hessian(lambda m, S, s: _pl_inner(m[None], S, s, 32)[0][0]),
                static_argnums=2)


@pytest.mark.parametrize("s", SLOPES)
@pytest.mark.parametrize("m,S", [((0.3, -0.4), ((0.7, 0.3), (0.3, 0.5))),
                                 ((-1.1, 0.6), ((0.2, -0.15), (-0.15, 1.3))),
                                 ((0.0, 0.0), ((1.0, 0.9), (0.9, 1.0)))])
def test_inner_average_and_hessian(s, m, S):
    m, S = np.array(m), np.array(S)
    val, H = _inner(jnp.asarray(m)[None], jnp.asarray(S), s)
    assert float(val[0]) == pytest.approx(_inner_quad(m, S, s), rel=1e-11, abs=1e-13)

    # The closed-form Hessian (Dirac terms included) is the Hessian of the value.
    Hd = _hess(jnp.asarray(m), jnp.asarray(S), s)
    np.testing.assert_allclose(np.asarray(H[0]), np.asarray(Hd), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("s", SLOPES)
def test_inner_hessian_against_differences_of_quadrature(s):
    """The Dirac terms of the Hessian, independently: central differences of the adaptive
    quadrature of the value."""
    m, S = np.array([0.3, -0.4]), np.array([[0.7, 0.3], [0.3, 0.5]])
    H = _pl_inner(jnp.asarray(m)[None], jnp.asarray(S), s, 32)[1]
    e = 1e-3
    Hq = np.zeros((2, 2))
    for a in range(2):
        for b in range(2):
            da, db = np.eye(2)[a] * e, np.eye(2)[b] * e
            Hq[a, b] = (_inner_quad(m + da + db, S, s) - _inner_quad(m + da - db, S, s)
                        - _inner_quad(m - da + db, S, s) + _inner_quad(m - da - db, S, s)) / (
                4 * e * e)
    np.testing.assert_allclose(np.asarray(H[0]), Hq, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("s", SLOPES)
def test_inner_average_degenerate_regimes(s):
    m = jnp.array([[0.4, -0.7], [-0.2, 0.5]])
    # one coordinate without smoothing: phi(m1) E phi(y2)
    v, H = _pl_inner(m, jnp.array([[0.0, 0.0], [0.0, 0.6]]), s, 32)
    ref = _phi(np.asarray(m[:, 0]), s) * _mean_phi(np.asarray(m[:, 1]), np.sqrt(0.6), s)
    np.testing.assert_allclose(np.asarray(v), ref, rtol=1e-13)
    assert np.all(np.asarray(H) == 0.0)
    # no smoothing at all
    v, _ = _pl_inner(m, jnp.zeros((2, 2)), s, 32)
    np.testing.assert_allclose(np.asarray(v), _phi(np.asarray(m[:, 0]), s)
                               * _phi(np.asarray(m[:, 1]), s), rtol=1e-14)
    # one input twice (rank one, correlation +1): E phi(y)^2, Hessian ((0, E phi'^2), (., 0))
    mm = jnp.array([[0.4, 0.4]])
    v, H = _pl_inner(mm, 0.6 * jnp.ones((2, 2)), s, 32)
    ref = integrate.quad(lambda z: _phi(0.4 + np.sqrt(0.6) * z, s) ** 2 * norm.pdf(z),
                         -40, 40, points=[-0.4 / np.sqrt(0.6)], epsabs=1e-14)[0]
    assert float(v[0]) == pytest.approx(ref, rel=1e-12)
    Phi = norm.cdf(0.4 / np.sqrt(0.6))
    np.testing.assert_allclose(np.asarray(H[0]), [[0, s * s + (1 - s * s) * Phi],
                                                  [s * s + (1 - s * s) * Phi, 0]], rtol=1e-13)


# -- several inputs: the kink-aligned outer rule ------------------------------------------------


def _sig(ix, iy, Kx, Ky):
    idx = list(ix) + list(iy)
    S = np.empty((4, 4))
    for a in range(4):
        for b in range(4):
            S[a, b] = (Ky if (a >= 2 and b >= 2) else Kx)[idx[a], idx[b]]
    return jnp.asarray(S)


_element = jax.jit(_pl_element_moments, static_argnums=(1, 2, 3, 4, 5))
KL = np.array([[0.82, 0.55], [0.55, 1.28]])  # a later layer of K2's trajectory (rho = 0.5)


@pytest.mark.parametrize("s", [0.0, pytest.param(0.2, marks=pytest.mark.slow)])
def test_element_moments_converged_and_symmetric(s):
    """Default nodes vs twice as many (the rule's accuracy), and the same-layer moments
    computed both ways round (a 1-D half-line rule vs the polar rule)."""
    for ix, iy, Ky in (((0, 1), (0, 1), KL), ((0, 0), (0, 1), KL), ((0, 1), (1, 1), K2)):
        S = _sig(ix, iy, K2, Ky)
        r1 = ix[0] == ix[1]
        a = _element(S, s, r1, 16, 16, 20)
        b = _element(S, s, r1, 32, 32, 40)
        for x, y in zip(a, b, strict=True):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-10, atol=1e-13)
    for ix, iy in (((0, 1), (1, 1)), ((0, 1), (0, 0)), ((0, 1), (0, 1))):
        A = _element(_sig(ix, iy, KL, KL), s, ix[0] == ix[1], 16, 16, 20)
        B = _element(_sig(iy, ix, KL, KL), s, iy[0] == iy[1], 16, 16, 20)
        assert float(A[0]) == pytest.approx(float(B[0]), rel=1e-12)  # Cov[ff, ff]
        assert float(A[1]) == pytest.approx(float(B[2]), rel=1e-12)  # Cov[hh, ff]


@pytest.mark.slow
def test_element_moment_against_brute_force():
    """Cov[relu(x1) relu(x2), relu(y1) relu(y2)] across two layers by adaptive 3-D
    quadrature (inner average over y1 in closed form), split at the kinks."""
    S = np.asarray(_sig((0, 1), (0, 1), K2, KL))
    got = float(_element(jnp.asarray(S), 0.0, False, 16, 16, 20)[0])
    # (x1, x2, y1) Gaussian; y2 | (x1, x2, y1) Gaussian: E relu(y2) in closed form.
    L = np.linalg.cholesky(S)
    Sxy = S[:3, :3]
    b = np.linalg.solve(Sxy, S[:3, 3])
    sd = np.sqrt(S[3, 3] - S[:3, 3] @ b)
    Lx = np.linalg.cholesky(Sxy)

    def f(z3, z2, z1):
        v = Lx @ np.array([z1, z2, z3])
        w = norm.pdf(z1) * norm.pdf(z2) * norm.pdf(z3)
        return max(v[0], 0) * max(v[1], 0) * max(v[2], 0) * _mean_phi(b @ v, sd, 0.0) * w

    # integrate over the orthant x1, x2 > 0 (z1 > 0, z2 > -Lx[1,0] z1 / Lx[1,1]), y1 > 0
    val = integrate.nquad(
        f, [lambda z2, z1: (-(Lx[2, 0] * z1 + Lx[2, 1] * z2) / Lx[2, 2], 9),
            lambda z1: (-Lx[1, 0] * z1 / Lx[1, 1], 9), (0, 9)],
        opts={"epsabs": 1e-9, "epsrel": 1e-9})[0]
    assert L.shape == (4, 4)
    c = get_activation("relu")
    Ex = float(c.covariance(S[0, 0], S[1, 1], S[0, 1]))
    Ey = float(c.covariance(S[2, 2], S[3, 3], S[2, 3]))
    assert got == pytest.approx(val - Ex * Ey, rel=1e-7)


# -- the two theory routes, identities ----------------------------------------------------------


@pytest.mark.parametrize("activation", ["relu", pytest.param("leaky_relu:0.2",
                                                              marks=pytest.mark.slow)])
def test_single_input_closed_form_equals_pairs_quadrature(activation):
    """The arc-cosine closed forms (finite_width_single) and the polar quadrature with
    closed-form inner averages (the pairs method) are independent routes."""
    a = finite_width_single(0.5, 0.3, 10, HYPER, activation)
    b = finite_width(K1, 0.3, 10, HYPER, activation)
    assert b.method == "pairs"
    np.testing.assert_allclose(np.asarray(b.C_cov[:, 0, 0, 0, 0]), np.asarray(a.C_var),
                               rtol=1e-11)
    np.testing.assert_allclose(np.asarray(b.K_cov[:, 0, 0, 0, 0]), np.asarray(a.K_var),
                               rtol=1e-11)
    np.testing.assert_allclose(np.asarray(b.C_shift[:, 0, 0]), np.asarray(a.C_shift),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(b.K_shift[:, 0, 0]), np.asarray(a.K_shift),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(b.C_cov_layers[:, :, 0, 0, 0, 0]),
                               np.asarray(a.C_cov), rtol=1e-10, atol=1e-12)


def test_relu_single_input_values():
    """Regression values of the ReLU case (checked against Monte Carlo in the slow tests
    and in docs/finite_width.md)."""
    r = finite_width_single(0.5, 0.3, 10, HYPER, "relu")
    assert float(r.C[-1]) == pytest.approx(0.461262501959, rel=1e-10)
    assert float(r.C_var[-1]) == pytest.approx(2.16401113405, rel=1e-9)
    assert float(r.C_shift[-1]) == pytest.approx(0.274144383952, rel=1e-9)
    assert float(r.K_var[-1]) == pytest.approx(3.95492072927, rel=1e-9)
    assert float(r.K_shift[-1]) == pytest.approx(0.107617442989, rel=1e-9)


@pytest.fixture(scope="module")
def relu_p2():
    return finite_width(K2, 0.5, 4, HYPER, "relu")


def test_p2_diagonal_entries_are_single_input_problems(relu_p2):
    for i in range(2):
        one = finite_width_single(K2[i, i], 0.5, 4, HYPER, "relu")
        assert float(relu_p2.C_cov[-1, i, i, i, i]) == pytest.approx(float(one.C_var[-1]),
                                                                      rel=1e-10)
        assert float(relu_p2.C_shift[-1, i, i]) == pytest.approx(float(one.C_shift[-1]),
                                                                  rel=1e-9)
        assert float(relu_p2.K_shift[-1, i, i]) == pytest.approx(float(one.K_shift[-1]),
                                                                  rel=1e-9)


def test_p2_covariance_symmetric(relu_p2):
    for name in ("C", "K", "out"):
        M = np.asarray(relu_p2.cov_matrix(name))
        np.testing.assert_allclose(M, M.T, rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_leaky_relu_slope_one_is_the_linear_network():
    """leaky_relu:1 is the identity: the piecewise-linear route must give the linear net."""
    a = finite_width(K2, 0.5, 2, HYPER, "leaky_relu:1.0")
    b = finite_width(K2, 0.5, 2, HYPER, "linear")  # walk method
    for name in ("C_cov", "K_cov", "C_shift", "K_shift"):
        np.testing.assert_allclose(np.asarray(getattr(a, name)), np.asarray(getattr(b, name)),
                                   rtol=1e-10, atol=1e-10)


def test_method_selection():
    assert piecewise_slope(get_activation("relu")) == 0.0
    assert piecewise_slope(get_activation("leaky_relu:0.3")) == 0.3
    assert piecewise_slope(get_activation("erf")) is None
    with pytest.raises(ValueError, match="walk method needs a smooth activation"):
        finite_width(K1, 0.3, 4, HYPER, "relu", method="walk")
    assert finite_width(K1, 0.3, 2, HYPER, "relu").method == "pairs"


# -- Monte Carlo of finite ReLU ResNets ---------------------------------------------------------


def _compare(th, sim, N, n_se=3.0, rel_cov=0.05):
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
        dev = np.abs(mc - tc) / np.sqrt(np.outer(np.diag(tc), np.diag(tc)))
        report[f"{name}_ncov_dev"] = dev.round(4).tolist()
        assert np.all(dev < rel_cov), (name, N, mc, tc)
    return report


def test_mc_p1_relu_width_200():
    """One input, N = 200, 20 000 networks: the NLO mean within 3 SE, N Var within 8 %."""
    th = finite_width_single(0.5, 0.3, 10, HYPER, "relu")
    sim = simulate_nlo(jax.random.PRNGKey(5), K1, rho=0.3, depth=10, width=200,
                       n_networks=20_000, hyper=HYPER, activation="relu")
    for lo, sh, var, name in ((th.C[-1], th.C_shift[-1], th.C_var[-1], "C"),
                              (th.K[-1], th.K_shift[-1], th.K_var[-1], "K")):
        m, se = float(getattr(sim, f"{name}_mean")[0, 0]), float(
            getattr(sim, f"{name}_mean_se")[0, 0])
        assert abs(m - float(lo) - float(sh) / 200) < 3 * se, name
        assert float(getattr(sim, f"{name}_ncov")[0, 0]) == pytest.approx(float(var), rel=0.08)


@pytest.mark.slow
def test_mc_p2_relu_width_200(relu_p2):
    """Two inputs, N = 200, 20 000 networks: the NLO mean within 3 SE. N Cov carries its own
    O(1/N) correction (measured: +4.3 % at N = 200, +16 % at N = 50, +1 % at N = 800), so
    it is checked here at 8 % and at 3 % in the slow tests at N = 800."""
    sim = simulate_nlo(jax.random.PRNGKey(7), K2, rho=0.5, depth=4, width=200,
                       n_networks=20_000, hyper=HYPER, activation="relu")
    _compare(relu_p2, sim, 200, rel_cov=0.08)


@pytest.mark.slow
def test_mc_detects_the_smooth_route():
    """The comparison can fail: the mean shift of the walk method's smooth-activation
    rules (jax.grad of ReLU: phi'' = 0, no Dirac term, grids across the kink) is rejected
    (forced here through the internal walk routine)."""
    from fieldres.finite_width._leading import _layer_kernels_jit
    from fieldres.finite_width.walk import _same_layer_grid_size, _walk, _walk_grid_size

    act = get_activation("relu")
    K0 = jnp.asarray(K2)
    rho = jnp.asarray(0.5)
    hyper = jax.tree.map(jnp.asarray, HYPER)
    Ks = np.asarray(_layer_kernels_jit(K0, rho, hyper, act, 4, True)[0])
    wrong = _walk(K0, rho, hyper, act, 4, True, True, False, 48, 20, 20, 4,
                  _walk_grid_size(Ks, act), _same_layer_grid_size(Ks, act))
    th = finite_width(K2, 0.5, 4, HYPER, "relu")
    gap = np.abs(np.asarray(wrong.C_shift[-1] - th.C_shift[-1]))
    assert gap[0, 1] > 0.02  # the off-diagonal shift misses E[delta(y1) relu(y2)]
    sim = simulate_nlo(jax.random.PRNGKey(3), K2, rho=0.5, depth=4, width=20,
                       n_networks=100_000, hyper=HYPER, activation="relu")
    with pytest.raises(AssertionError):
        _compare(wrong, sim, 20, rel_cov=1.0)


# -- slow: the widths of the issue, the error scaling -------------------------------------------

RELU_CASES = {
    "p1_relu": dict(K0=K1, rho=0.3, depth=10, activation="relu"),
    "p2_relu": dict(K0=K2, rho=0.5, depth=8, activation="relu"),
    "p2_leaky": dict(K0=K2, rho=0.5, depth=8, activation="leaky_relu:0.2"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(RELU_CASES))
@pytest.mark.parametrize("width", [200, 800])
def test_mc_relu_widths(case, width):
    """Means within 3 SE at both widths; N Cov within 3 % at N = 800 (8 % at N = 200, where
    its own 1/N correction is ~4 %)."""
    c = RELU_CASES[case]
    th = finite_width(c["K0"], c["rho"], c["depth"], HYPER, c["activation"])
    sim = simulate_nlo(jax.random.PRNGKey(200 + width), c["K0"], rho=c["rho"],
                       depth=c["depth"], width=width, n_networks=100_000, hyper=HYPER,
                       activation=c["activation"], batch_size=4096)
    rep = _compare(th, sim, width, rel_cov=0.03 if width >= 800 else 0.08)
    print(case, width, json.dumps(rep))


@pytest.mark.slow
def test_relu_errors_fall_like_inverse_width_and_its_square():
    """One input (K0 = 0.5, rho = 1, L = 8), E C^(L) at N = 8, 16, 32 (1, 2, 4 million
    networks): the leading-order error falls like 1/N, the NLO error like 1/N^2 (fitted
    exponent within 3 SE of 2). Measured: LO exponent 1.053 +- 0.009, NLO 2.33 +- 0.21,
    N^2 x NLO error 47 +- 6, 33 +- 7, 33 +- 10. (At rho = 0.5 the 1/N^2 error is not
    resolved at N = 16, 32 with these network counts.)"""
    widths, nets = [8, 16, 32], [1_000_000, 2_000_000, 4_000_000]
    th = finite_width_single(0.5, 1.0, 8, HYPER, "relu")
    lo, sh = float(th.C[-1]), float(th.C_shift[-1])
    e_lo, e_nlo, se = [], [], []
    for N, n in zip(widths, nets, strict=True):
        sim = simulate_nlo(jax.random.PRNGKey(300 + N), K1, rho=1.0, depth=8, width=N,
                           n_networks=n, hyper=HYPER, activation="relu", batch_size=65536)
        m, s = float(sim.C_mean[0, 0]), float(sim.C_mean_se[0, 0])
        e_lo.append(m - lo)
        e_nlo.append(m - lo - sh / N)
        se.append(s)
    e_lo, e_nlo, se = map(np.asarray, (e_lo, e_nlo, se))
    print("relu errors", e_lo.tolist(), e_nlo.tolist(), se.tolist())
    assert np.all(np.abs(e_nlo) > 2 * se)  # resolved

    def exponent(err):
        x, y, w = np.log(widths), np.log(np.abs(err)), (np.abs(err) / se) ** 2
        A = np.stack([np.ones_like(x), x], 1)
        cov = np.linalg.inv(A.T @ (w[:, None] * A))
        return -(cov @ A.T @ (w * y))[1], np.sqrt(cov[1, 1])

    p_lo, s_lo = exponent(e_lo)
    p_nlo, s_nlo = exponent(e_nlo)
    print("exponents", p_lo, s_lo, p_nlo, s_nlo)
    assert abs(p_nlo - 2.0) < 3 * s_nlo and s_nlo < 0.3
    assert abs(p_lo - 1.0) < 0.1 and abs(p_nlo - p_lo - 1.0) < 3 * s_nlo


# -- the CLI ------------------------------------------------------------------------------------


def _cli_json(capsys, argv):
    from fieldres.cli import main

    code = main(argv + ["--json"])
    return code, json.loads(capsys.readouterr().out)


def test_cli_nlo_and_simulate_relu(capsys, relu_p2):
    code, d = _cli_json(capsys, ["nlo", "--activation", "relu", "--depth", "4", "--rho", "0.5",
                                 "--width", "200", "--k0", "0.5,0.3;0.3,0.8",
                                 "--sigma-w2", "1.25", "--sigma-b2", "0.05"])
    assert code == 0
    np.testing.assert_allclose(d["C_ncov"], relu_p2.cov_matrix("C"), rtol=1e-10)
    np.testing.assert_allclose(d["C_nlo_mean"], relu_p2.C[-1] + relu_p2.C_shift[-1] / 200,
                               rtol=1e-10)
    code, s = _cli_json(capsys, ["simulate", "--activation", "relu", "--depth", "4", "--rho",
                                 "0.5", "--width", "200", "--k0", "0.5,0.3;0.3,0.8",
                                 "--sigma-w2", "1.25", "--sigma-b2", "0.05",
                                 "--n-networks", "4000"])
    assert code == 0
    m, se = np.asarray(s["C_nlo_mean"]), np.asarray(s["C_nlo_mean_se"])
    assert np.all(np.abs(m - np.asarray(d["C_nlo_mean"])) < 4 * se)


def test_cli_rho_star_width_relu_has_no_optimum(capsys):
    """ReLU's response grows monotonically with rho: no rho*(inf) (exit 1, as without
    --width), hence no rho*(N)."""
    code, d = _cli_json(capsys, ["rho-star", "--activation", "relu", "--depth", "5",
                                 "--width", "100", "--k0", "0.5"])
    assert code == 1 and "increases monotonically" in d["status_diagonal"]
    fw = d["finite_width"]["diagonal"]
    assert fw["rho_star_N"] is None and "no optimum at leading order" in fw["status"]
