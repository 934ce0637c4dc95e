"""Activations: quadrature vs closed forms, derivatives (Price's theorem), independent checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate as si
from scipy.special import ndtr

import fieldres as fr
from fieldres.kernels.activations import GaussHermite, evaluations_per_entry
from fieldres.signal.optimal import Status

ERF = fr.Erf()
ERF_Q = fr.get_activation("erf-quadrature")
RELU = fr.ReLU()
TANH = fr.get_activation("tanh")

# Variances over eight decades, both orderings of unequal variances, correlations incl. +-1.
VARIANCES = np.array([1e-4, 1e-2, 0.1, 0.5, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1e3])
CORRELATIONS = np.array([-1.0, -0.999999, -0.9, -0.3, 0.0, 0.5, 0.9, 0.99999, 1.0])
RATIOS = np.array([0.1, 1.0, 10.0])


def _grid():
    k, r, c = (a.ravel() for a in np.meshgrid(VARIANCES, RATIOS, CORRELATIONS, indexing="ij"))
    kaa, kbb = k, k * r
    return kaa, kbb, c * np.sqrt(kaa * kbb)


def _random_kernel(rng, P, scale):
    X = rng.normal(size=(P, P + 1))
    K = X @ X.T / (P + 1)
    d = np.sqrt(np.diag(K))
    return jnp.asarray(scale * K / np.outer(d, d) * np.outer(d, d).mean())


def _close(a, b, rtol, atol):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


# ----------------------------------------------------------------------------------------
# erf: quadrature vs the closed form
# ----------------------------------------------------------------------------------------


def test_erf_quadrature_values_across_scales():
    kaa, kbb, kab = _grid()
    _close(ERF_Q.covariance(kaa, kbb, kab), ERF.covariance(kaa, kbb, kab), 1e-8, 1e-14)
    ks = np.concatenate([VARIANCES, [1e4, 1e5]])
    _close(ERF_Q.variance(ks), ERF.variance(ks), 1e-8, 1e-14)
    # correlation exactly one is the variance
    _close(ERF_Q.covariance(ks, ks, ks), ERF.variance(ks), 1e-8, 1e-14)


def _partials(act, order):
    """All partial derivatives of the given order of the covariance, vmapped over entries."""
    f = lambda v: act.covariance(v[0], v[1], v[2])  # noqa: E731
    g = {1: jax.grad, 2: jax.hessian}[order](f)
    return jax.jit(jax.vmap(g))


@pytest.mark.parametrize("order", [1, 2])
def test_erf_quadrature_covariance_derivatives_across_scales(order):
    v = jnp.stack(_grid(), axis=-1)
    _close(_partials(ERF_Q, order)(v), _partials(ERF, order)(v), 1e-8, 1e-12)


def test_erf_quadrature_variance_derivatives():
    ks = jnp.asarray(np.concatenate([VARIANCES, [1e4]]))
    fq, fe = ERF_Q.variance, ERF.variance
    for _ in range(3):
        fq, fe = jax.grad(fq), jax.grad(fe)
        _close(jax.jit(jax.vmap(fq))(ks), jax.vmap(fe)(ks), 1e-8, 1e-14)


def _maps(act):
    """Jitted kernel, Jacobian, Hessian and reverse-mode gradient (compiled once per shape)."""
    loss = lambda K: jnp.sum(act.kernel(K) ** 2)  # noqa: E731
    return tuple(jax.jit(f) for f in (act.kernel, jax.jacfwd(act.kernel),
                                      jax.jacfwd(jax.jacfwd(act.kernel)), jax.grad(loss)))


MAPS = {"erf": _maps(ERF), "erf-quadrature": _maps(ERF_Q)}


@pytest.mark.parametrize("scale", [1e-3, 1.0, 30.0, 500.0])
def test_erf_quadrature_kernel_jacobian_and_hessian(scale):
    K = _random_kernel(np.random.default_rng(int(scale * 1000) % 97), 3, scale)
    # values, Jacobian, Hessian, and reverse mode (through the same Price's-theorem rule)
    for fq, fe, atol in zip(MAPS["erf-quadrature"], MAPS["erf"], (1e-14, 1e-12, 1e-11, 1e-13),
                            strict=True):
        _close(fq(K), fe(K), 1e-8, atol)


def test_erf_closed_form_autodiff_matches_finite_differences():
    K = _random_kernel(np.random.default_rng(3), 3, 0.8)
    C, Jf, Hf, _ = MAPS["erf"]
    J, H = np.asarray(Jf(K)), np.asarray(Hf(K))
    h = 1e-5
    for c, d in [(0, 0), (0, 1), (1, 0), (2, 1), (2, 2)]:
        E = np.zeros((3, 3))
        E[c, d] = h
        _close(J[:, :, c, d], (np.asarray(C(K + E)) - np.asarray(C(K - E))) / (2 * h), 1e-7, 1e-9)
        _close(H[..., c, d], (np.asarray(Jf(K + E)) - np.asarray(Jf(K - E))) / (2 * h), 1e-6, 1e-8)


def test_quadrature_kernel_in_blocks_matches_elementwise():
    # 28 pairs exceed one vectorised block of the bivariate rule; the P x P map (one
    # quadrature per unordered pair) agrees with the elementwise base-class assembly. Its
    # derivatives treat the P^2 entries as independent: checked against the closed form's.
    K = _random_kernel(np.random.default_rng(7), 8, 5.0)
    C = ERF_Q.kernel(K)
    _close(C, ERF.kernel(K), 1e-8, 1e-14)
    _close(C, fr.Activation.kernel(ERF_Q, K), 1e-13, 1e-15)


def _identical_inputs(k, c):
    """A 3 x 3 kernel whose inputs 0 and 1 have correlation exactly c = +-1."""
    return jnp.array([[k, c * k, 0.3], [c * k, k, c * 0.3], [0.3, c * 0.3, 0.5]])


@pytest.mark.parametrize("c", [1.0, -1.0])
def test_erf_differentiable_at_correlation_one(c):
    k = 0.7
    K = _identical_inputs(k, c)
    (Ce, Je, He, _), (_, Jq, Hq, _) = MAPS["erf"], MAPS["erf-quadrature"]
    for J, H in [(Je(K), He(K)), (Jq(K), Hq(K))]:
        J, H = np.asarray(J), np.asarray(H)
        assert np.all(np.isfinite(J)) and np.all(np.isfinite(H))
        # Price: dC_ab/dK_ab = E[phi'(a) phi'(b)] = (4/pi) / sqrt((1+2k)^2 - 4k^2) at c = +-1
        assert J[0, 1, 0, 1] == pytest.approx(4 / np.pi / np.sqrt(1 + 4 * k), rel=1e-10)
    _close(Jq(K), Je(K), 1e-10, 1e-13)
    _close(Hq(K), He(K), 1e-9, 1e-12)
    # one-sided differences into the PSD cone agree with the derivative at the boundary
    h = 1e-6
    E = np.zeros((3, 3))
    E[0, 1] = E[1, 0] = -c * h
    fd = (np.asarray(Ce(K + E)) - np.asarray(Ce(K))) / h
    assert -c * float(Je(K)[0, 1, 0, 1]) == pytest.approx(fd[0, 1], rel=1e-5)


# ----------------------------------------------------------------------------------------
# ReLU: arc-cosine closed form vs independent integrals
# ----------------------------------------------------------------------------------------


def _relu_conditional_integral(kaa, kbb, kab):
    """E[relu(a) relu(b)] by 1-D quadrature of relu(a) E[relu(b) | a] (closed-form inner)."""
    sa, beta = np.sqrt(kaa), kab / kaa
    s = np.sqrt(max(kbb - kab * beta, 0.0))

    def integrand(a):
        mu = beta * a
        inner = mu * ndtr(mu / s) + s * np.exp(-0.5 * (mu / s) ** 2) / np.sqrt(2 * np.pi) \
            if s > 0 else max(mu, 0.0)
        return a * inner * np.exp(-0.5 * a * a / kaa) / (sa * np.sqrt(2 * np.pi))

    return si.quad(integrand, 0.0, 12 * sa, epsabs=1e-14, epsrel=1e-12, limit=200)[0]


@pytest.mark.parametrize("c", [-1.0, -0.7, 0.0, 0.4, 0.95, 1.0])
def test_relu_closed_form_vs_numerical_integral(c):
    kaa, kbb = 0.8, 2.3
    kab = c * np.sqrt(kaa * kbb)
    ref = _relu_conditional_integral(kaa, kbb, kab)
    assert float(RELU.covariance(kaa, kbb, kab)) == pytest.approx(ref, rel=1e-9, abs=1e-13)


def test_relu_closed_form_vs_dblquad_and_variance():
    kaa, kbb, c = 1.5, 0.6, 0.35
    kab = c * np.sqrt(kaa * kbb)
    det = kaa * kbb - kab**2

    def pdf(b, a):
        q = (kbb * a * a - 2 * kab * a * b + kaa * b * b) / det
        return a * b * np.exp(-0.5 * q) / (2 * np.pi * np.sqrt(det))

    ref = si.dblquad(pdf, 0, 15, 0, 15, epsabs=1e-12, epsrel=1e-10)[0]
    assert float(RELU.covariance(kaa, kbb, kab)) == pytest.approx(ref, rel=1e-8)
    assert float(RELU.variance(kaa)) == pytest.approx(kaa / 2, rel=1e-15)


def _monte_carlo(phi, kaa, kbb, kab, n=1_000_000, seed=0):
    rng = np.random.default_rng(seed)
    L = np.linalg.cholesky(np.array([[kaa, kab], [kab, kbb]]))
    a, b = L @ rng.standard_normal((2, n))
    prod = phi(a) * phi(b)
    return prod.mean(), prod.std(ddof=1) / np.sqrt(n)


@pytest.mark.parametrize("kaa,kbb,c", [(0.5, 0.5, 0.3), (2.0, 0.7, -0.6), (30.0, 10.0, 0.9)])
def test_relu_and_tanh_vs_monte_carlo(kaa, kbb, c):
    kab = c * np.sqrt(kaa * kbb)
    for act, phi in [(RELU, lambda x: np.maximum(x, 0.0)), (TANH, np.tanh)]:
        mean, se = _monte_carlo(phi, kaa, kbb, kab)
        assert abs(float(act.covariance(kaa, kbb, kab)) - mean) < 4 * se


RELU_C, RELU_J = jax.jit(RELU.kernel), jax.jit(jax.jacfwd(RELU.kernel))


@pytest.mark.parametrize("c", [1.0, -1.0])
def test_relu_differentiable_at_correlation_one(c):
    K = _identical_inputs(0.9, c)
    J = np.asarray(RELU_J(K))
    assert np.all(np.isfinite(J))
    # dC_ab/dK_ab = P(a > 0, b > 0): 1/2 at c = 1, 0 at c = -1 (not halved by the clip)
    assert J[0, 1, 0, 1] == pytest.approx(0.5 if c > 0 else 0.0, abs=1e-12)
    # one-sided differences into the PSD cone: shrink |K_ab|, grow K_aa
    h = 1e-7
    for (i, j), sign in [((0, 1), -c), ((0, 0), 1.0)]:
        E = np.zeros((3, 3))
        E[i, j] = sign * h
        fd = (np.asarray(RELU_C(K + E)) - np.asarray(RELU_C(K))) / h
        assert sign * J[0, 1, i, j] == pytest.approx(fd[0, 1], abs=1e-3)


# ----------------------------------------------------------------------------------------
# tanh and user callables through quadrature
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1e-4, 0.3, 3.0, 100.0, 1e4])
def test_tanh_variance_vs_scipy_quad(k):
    s = np.sqrt(k)
    f = lambda z: 2 * np.tanh(s * z) ** 2 * np.exp(-z * z / 2) / np.sqrt(2 * np.pi)  # noqa: E731
    pts = [0.0] + [p / s for p in (0.5, 1, 2, 4, 8, 16) if p / s < 12] + [40.0]
    ref = sum(si.quad(f, a, b, epsabs=1e-15, epsrel=1e-13, limit=200)[0]
              for a, b in zip(pts[:-1], pts[1:], strict=True))
    assert float(TANH.variance(k)) == pytest.approx(ref, rel=1e-10, abs=1e-15)


def test_tanh_derivatives_vs_finite_differences():
    for k in [0.2, 5.0, 200.0]:
        g = float(jax.grad(TANH.variance)(k))
        h = 1e-5 * k
        fd = (float(TANH.variance(k + h)) - float(TANH.variance(k - h))) / (2 * h)
        assert g == pytest.approx(fd, rel=1e-7)
    args = np.array([3.0, 40.0, 0.8 * np.sqrt(120.0)])
    grads = jax.grad(lambda a: TANH.covariance(*a))(jnp.asarray(args))
    for i in range(3):
        e = np.zeros(3)
        e[i] = 1e-5 * args[i]
        up, down = (float(TANH.covariance(*(args + s * e))) for s in (1, -1))
        assert float(grads[i]) == pytest.approx((up - down) / (2 * e[i]), rel=1e-7)


def test_user_callable_sine_closed_form():
    act = fr.get_activation(lambda x: jnp.sin(x))
    assert isinstance(act, GaussHermite)
    kaa, kbb, kab = _grid()
    keep = np.maximum(kaa, kbb) <= 10.0  # sin oscillates on every scale: moderate variances
    kaa, kbb, kab = kaa[keep], kbb[keep], kab[keep]
    ref = np.exp(-(kaa + kbb) / 2) * np.sinh(kab)
    _close(act.covariance(kaa, kbb, kab), ref, 1e-10, 1e-14)
    dref = np.exp(-(kaa + kbb) / 2) * np.cosh(kab)  # Price: E[cos a cos b]
    _close(jax.vmap(jax.grad(act.covariance, argnums=2))(kaa, kbb, kab), dref, 1e-10, 1e-14)
    ks = np.array([0.01, 1.0, 8.0])
    _close(act.variance(ks), (1 - np.exp(-2 * ks)) / 2, 1e-12, 1e-15)


# ----------------------------------------------------------------------------------------
# rho* through quadrature
# ----------------------------------------------------------------------------------------

K0 = jnp.array([[0.05, 0.03], [0.03, 0.05]])


# rho*, chi_max of the closed-form erf at L = 10 (THEORY Sec. 3; test_optimal checks the
# closed-form path against the table): (diagonal, off-diagonal).
ERF_RHO_STAR = (0.32650916025992577, 1.0891678419780741)
ERF_CHI_MAX = (2.0190016790969367, 11.408928277080081)


@pytest.mark.parametrize("entry", [(0, 0), (0, 1)])
def test_rho_star_quadrature_matches_closed_form(entry):
    # Gauss--Hermite quadrature failed here: the log grid reaches kernels ~1e5 at rho = 100.
    res = fr.rho_star(K0, 10, activation="erf-quadrature", entry=entry)
    assert int(res.status) == Status.OK
    assert float(res.rho_star) == pytest.approx(ERF_RHO_STAR[entry[1]], abs=1e-8)
    assert float(res.chi_max) == pytest.approx(ERF_CHI_MAX[entry[1]], rel=1e-8)


def test_rho_star_tanh_off_diagonal_is_found():
    # Gauss--Hermite quadrature failed here (garbage at the huge kernels of large rho).
    res = fr.rho_star(K0, 10, activation="tanh", entry=(0, 1))
    assert int(res.status) == Status.OK
    assert 0.5 < float(res.rho_star) < 3.0 and np.isfinite(float(res.chi_max))


# ----------------------------------------------------------------------------------------
# rules, options and errors
# ----------------------------------------------------------------------------------------


def test_hermite_rule_available_for_small_variances():
    act = GaussHermite(jax.scipy.special.erf, "erf-gh", rule="hermite")
    assert act.degree == 96 and ERF_Q.degree == 16
    kaa, kbb, kab = _grid()
    small = np.maximum(kaa, kbb) <= 0.1
    _close(act.covariance(kaa[small], kbb[small], kab[small]),
           ERF.covariance(kaa[small], kbb[small], kab[small]), 1e-12, 1e-15)
    _close(act.variance(VARIANCES[:5]), ERF.variance(VARIANCES[:5]), 1e-12, 1e-15)
    assert evaluations_per_entry("hermite") == (384, 96**2)
    assert evaluations_per_entry() == (320, 39424)


def test_get_activation_resolution_and_errors():
    assert isinstance(fr.get_activation("ERF"), fr.Erf)
    assert fr.get_activation(RELU) is RELU
    assert fr.get_activation("tanh").rule == "composite"
    with pytest.raises(ValueError, match="unknown activation 'swish'.*'erf'.*'relu'.*'tanh'"):
        fr.get_activation("swish")
    with pytest.raises(TypeError, match="must be a name, an Activation or a callable"):
        fr.get_activation(3.0)
    with pytest.raises(TypeError, match="callable"):
        GaussHermite("tanh")
    with pytest.raises(ValueError, match="degree"):
        GaussHermite(jnp.tanh, degree=1)
    with pytest.raises(ValueError, match="unknown quadrature rule"):
        GaussHermite(jnp.tanh, rule="simpson")


def test_relu_kernel_does_not_overflow_for_huge_variances():
    # sqrt(kaa * kbb) overflows beyond ~1e154 (deep ReLU nets reach such kernels);
    # the kernel is positively homogeneous, so scaling K scales C exactly.
    act = fr.get_activation("relu")
    K = jnp.array([[1.0, 0.5], [0.5, 1.0]])
    np.testing.assert_allclose(act.kernel(1e200 * K) / 1e200, act.kernel(K), rtol=1e-13)


# ---------------------------------------------------------------------------------------
# The registry: derivatives, kinks, derivative variances, families
# ---------------------------------------------------------------------------------------

_REGISTERED = ["erf", "relu", "linear", "tanh", "erf-quadrature", "leaky_relu", "sigmoid",
               "selu", "leaky_relu:0.2", "alpha-relu:1.5"]


@pytest.mark.parametrize("name", _REGISTERED)
def test_registry_derivative_matches_autodiff_and_finite_differences(name):
    from fieldres.kernels import get_activation

    act = get_activation(name)
    x = jnp.array([-2.3, -0.7, 0.4, 1.9])  # away from every kink
    assert all(abs(float(k) - float(v)) > 0.1 for k in act.kinks for v in x)
    d = np.asarray(act.derivative(x))
    auto = np.asarray(jax.vmap(jax.grad(lambda y: act(y) * 1.0))(x))
    np.testing.assert_allclose(d, auto, rtol=1e-12, atol=1e-14)
    h = 1e-6
    fd = (np.asarray(act(x + h)) - np.asarray(act(x - h))) / (2 * h)
    np.testing.assert_allclose(d, fd, rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(np.asarray(act.derivative(x, 0)), np.asarray(act(x)))


@pytest.mark.parametrize("name", _REGISTERED)
def test_registry_derivative_variance_matches_scipy(name):
    """Independent route: NumPy Gauss--Legendre (200 nodes per side of the kink at 0) of
    the closed-form derivative, against the registry's own E[phi'^2]."""
    from fieldres.kernels import get_activation

    act = get_activation(name)
    assert set(act.kinks) <= {0.0}
    q = 0.7
    x, w = np.polynomial.legendre.leggauss(200)
    z = np.concatenate([6.0 * (x - 1.0), 6.0 * (x + 1.0)])  # [-12, 0] and [0, 12]
    wz = np.concatenate([6.0 * w, 6.0 * w]) * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
    ref = float(np.sum(wz * np.asarray(act.derivative(jnp.asarray(np.sqrt(q) * z))) ** 2))
    assert float(act.derivative_variance(q)) == pytest.approx(ref, rel=1e-9)
    assert (act.odd and float(act(jnp.asarray(0.8))) == pytest.approx(-float(act(-0.8)))) or \
        not act.odd


def test_leaky_relu_closed_form_matches_quadrature():
    from fieldres.kernels import LeakyReLU

    K = jnp.array([[1.0, 0.3, -0.2], [0.3, 0.5, 0.1], [-0.2, 0.1, 2.0]])
    for slope in (0.01, 0.2, -1.0):
        act = LeakyReLU(slope)
        quad = GaussHermite(lambda x, a=slope: jnp.where(x > 0, x, a * x), name="lrelu")
        np.testing.assert_allclose(np.asarray(act.kernel(K)), np.asarray(quad.kernel(K)),
                                   rtol=1e-10, atol=1e-12)
    assert LeakyReLU(-1.0).odd and not LeakyReLU(0.2).odd


def test_get_activation_families_and_errors():
    from fieldres.kernels import AlphaReLU, LeakyReLU, get_activation

    assert isinstance(get_activation("Leaky-ReLU:0.3"), LeakyReLU)
    assert get_activation("leaky_relu").slope == 0.01
    a = get_activation("alpha_relu:0.8")
    assert isinstance(a, AlphaReLU) and a.alpha == 0.8 and a.kinks == (0.0,)
    for bad, match in (("alpha-relu", "exponent"), ("leaky_relu:x", "number"),
                       ("leaky_relu:inf", "finite"), ("softmaxx", "unknown activation")):
        with pytest.raises(ValueError, match=match):
            get_activation(bad)
    with pytest.raises(ValueError, match=">= 0"):
        get_activation("tanh").derivative(0.0, -1)
