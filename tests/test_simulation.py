"""Tests for :mod:`fieldres.simulation` (Monte-Carlo simulation of finite networks).

Statistical checks are in units of the Monte-Carlo standard error (SE) and use fixed keys, so
they are deterministic. The infinite-width reference is an independent NumPy float64
implementation of the NNGP recursion (THEORY §2), written here on purpose without using the
library. Reference finite-width numbers are those of THEORY §5.

Compilation (about 1-2 s per static configuration on CPU) dominates the cost of small
simulations, so the tests share a few configurations through module-scoped fixtures.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fieldres.simulation import (
    SimulationResult,
    simulate_kernels,
    simulate_outputs,
    simulate_response,
)
from fieldres.simulation.networks import _kernel_batch

jax.config.update("jax_enable_x64", True)

SW2, SB2 = 1.25, 0.05


# --------------------------------------------------------------------------------------------
# Independent NumPy reference (leading order, erf)
# --------------------------------------------------------------------------------------------


def c_erf(K: np.ndarray) -> np.ndarray:
    """C_erf(K)_ab = (2/pi) arcsin(2 K_ab / sqrt((1 + 2 K_aa)(1 + 2 K_bb)))."""
    d = np.sqrt(1.0 + 2.0 * np.diag(K))
    return (2.0 / np.pi) * np.arcsin(2.0 * K / np.outer(d, d))


def lo_kernels(K0, rho, depth, sw2=SW2, sb2=SB2, residual=True, c_fn=c_erf) -> np.ndarray:
    """K^(l), l = 0..L, of the infinite-width network; shape (L+1, P, P)."""
    Ks = [np.asarray(K0, dtype=np.float64)]
    for _ in range(depth):
        inc = sw2 * c_fn(Ks[-1]) + sb2
        Ks.append(Ks[-1] + rho**2 * inc if residual else inc)
    return np.array(Ks)


def lo_out(K0, rho, depth, sw2=SW2, sb2=SB2, sw2_out=SW2, sb2_out=SB2) -> np.ndarray:
    return sw2_out * c_erf(lo_kernels(K0, rho, depth, sw2, sb2)[-1]) + sb2_out


def var_and_se(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unbiased variance over axis 0 and the standard error of that variance estimate."""
    x = np.asarray(x)
    n = x.shape[0]
    d2 = (x - x.mean(0)) ** 2
    return d2.sum(0) / (n - 1), d2.std(0, ddof=1) / np.sqrt(n)


def z_scores(a_mean, a_se, b_mean, b_se) -> np.ndarray:
    return np.abs(np.asarray(a_mean) - np.asarray(b_mean)) / np.sqrt(
        np.asarray(a_se) ** 2 + np.asarray(b_se) ** 2
    )


def upper(x: np.ndarray) -> np.ndarray:
    """Entries (a <= b) of the trailing P x P axes."""
    P = x.shape[-1]
    iu = np.triu_indices(P)
    return np.asarray(x)[..., iu[0], iu[1]]


K0_2 = np.array([[0.5, 0.2], [0.2, 0.4]])


def test_numpy_reference_matches_theory_table():
    """The test's own LO reference reproduces the leading-order numbers of THEORY §5."""
    Ks = lo_kernels([[0.5]], 0.3, 10)
    assert Ks[-1, 0, 0] == pytest.approx(0.989557, abs=1e-6)
    assert c_erf(Ks[-1])[0, 0] == pytest.approx(0.462566, abs=1e-6)


# --------------------------------------------------------------------------------------------
# Shared simulations (one compiled configuration each)
# --------------------------------------------------------------------------------------------

# configuration "A": erf ResNet, P = 2, L = 5, N = 64
A = dict(rho=0.3, depth=5, width=64, batch_size=2000)


@pytest.fixture(scope="module")
def sampler_A() -> SimulationResult:
    return simulate_kernels(jax.random.PRNGKey(0), K0_2, n_networks=4000, **A)


@pytest.fixture(scope="module")
def full_A() -> SimulationResult:
    return simulate_kernels(jax.random.PRNGKey(1), K0_2, n_networks=2000, method="full", **A)


# configuration "X": ReLU ResNet from data, P = 3, d_in = 4, L = 4, N = 48
X_DATA = np.array([[1.0, 0.5, -0.3, 0.0], [0.2, -0.8, 0.1, 0.9], [0.6, 0.6, 0.6, -0.2]])
XCFG = dict(
    rho=0.5,
    depth=4,
    width=48,
    activation="relu",
    sigma_w2=2.0,
    sigma_b2=0.1,
    sigma_w2_in=1.5,
    sigma_b2_in=0.1,
    batch_size=2000,
)
K0_X = 0.1 + 1.5 * X_DATA @ X_DATA.T / X_DATA.shape[1]


def _compare_last_layer(a: SimulationResult, b: SimulationResult) -> np.ndarray:
    """|z| of the differences of means and variances of C^(L) and K^(L) (upper entries)."""
    zs = []
    for name in ("C_last", "K_last"):
        xa, xb = np.asarray(getattr(a, name)), np.asarray(getattr(b, name))
        se_a = xa.std(0, ddof=1) / np.sqrt(xa.shape[0])
        se_b = xb.std(0, ddof=1) / np.sqrt(xb.shape[0])
        zs.append(upper(z_scores(xa.mean(0), se_a, xb.mean(0), se_b)))
        zs.append(upper(z_scores(*var_and_se(xa), *var_and_se(xb))))
    return np.concatenate(zs)


# --------------------------------------------------------------------------------------------
# Sampler vs full weight matrices
# --------------------------------------------------------------------------------------------


def test_sampler_agrees_with_full_weights(sampler_A, full_A):
    """The O(NP^2) kernel sampler and explicit N x N weights agree in distribution."""
    z = _compare_last_layer(sampler_A, full_A)
    assert np.all(z < 4.0), z
    # the per-layer summaries agree with the per-network last-layer kernels
    np.testing.assert_allclose(sampler_A.C_mean[-1], np.mean(sampler_A.C_last, 0), rtol=1e-12)
    np.testing.assert_allclose(sampler_A.K_var[-1], np.var(sampler_A.K_last, 0, ddof=1), rtol=1e-9)
    # The same comparison must be able to fail: a sampler that applies rho twice (a residual
    # branch scaled by rho^2) is rejected by a wide margin.
    bad = simulate_kernels(
        jax.random.PRNGKey(0), K0_2, n_networks=4000, **{**A, "rho": A["rho"] ** 2}
    )
    assert np.max(_compare_last_layer(bad, full_A)) > 20.0


def test_feedforward_sampler_agrees_with_full_weights():
    """FFNet variant (no skip): sampler vs full, and E K^(1) = K^(1)_LO exactly."""
    kw = dict(rho=0.3, depth=3, width=32, residual=False, batch_size=2000)
    samp = simulate_kernels(jax.random.PRNGKey(2), K0_2, n_networks=4000, **kw)
    full = simulate_kernels(jax.random.PRNGKey(3), K0_2, n_networks=2000, method="full", **kw)
    assert np.all(_compare_last_layer(samp, full) < 4.0)
    Ks = lo_kernels(K0_2, 0.3, 1, residual=False)
    for r in (samp, full):
        assert np.all(np.abs(r.K_mean[1] - Ks[1]) < 4 * r.K_stderr[1])


def test_data_route_relu():
    """ReLU from data X: the sampler (QR factor of the input design) equals the K0 route
    (K0 = s_b,in^2 + s_w,in^2 X X^T / d_in, Cholesky factor) network by network, and both
    agree in distribution with explicit input and hidden weights."""
    key = jax.random.PRNGKey(4)
    samp_x = simulate_kernels(key, X=X_DATA, n_networks=4000, **XCFG)
    samp_k = simulate_kernels(key, K0_X, n_networks=4000, **XCFG)
    np.testing.assert_allclose(samp_x.C_last, samp_k.C_last, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(samp_x.K_mean, samp_k.K_mean, rtol=1e-10, atol=1e-12)
    full_x = simulate_kernels(
        jax.random.PRNGKey(5), X=X_DATA, n_networks=2000, method="full", **XCFG
    )
    assert np.all(np.abs(full_x.K_mean[0] - K0_X) < 4 * full_x.K_stderr[0])
    assert np.all(_compare_last_layer(samp_x, full_x) < 4.0)


def test_singular_input_kernel_duplicate_inputs():
    """A PSD but singular K0 (two identical inputs) keeps the two inputs identical."""
    K0 = np.array([[0.5, 0.5, 0.1], [0.5, 0.5, 0.1], [0.1, 0.1, 0.3]])
    r = simulate_kernels(jax.random.PRNGKey(6), K0, n_networks=2000, **XCFG)
    C, K = np.asarray(r.C_last), np.asarray(r.K_last)
    assert np.all(np.isfinite(C)) and np.all(np.isfinite(K))
    np.testing.assert_allclose(C[:, 0, 0], C[:, 0, 1], rtol=1e-10)
    np.testing.assert_allclose(C[:, 1, 1], C[:, 0, 1], rtol=1e-10)
    np.testing.assert_allclose(K[:, 1, 2], K[:, 0, 2], rtol=1e-10)


# --------------------------------------------------------------------------------------------
# Against the infinite-width theory
# --------------------------------------------------------------------------------------------


def test_first_layers_unbiased(sampler_A, full_A):
    """E K^(0) = K0, E C^(0) = C(K0) and E K^(1) = K^(1)_LO exactly at any width."""
    Ks = lo_kernels(K0_2, A["rho"], A["depth"])
    for r in (sampler_A, full_A):
        se_K, se_C = np.asarray(r.stderr("K")), np.asarray(r.C_stderr)
        assert np.all(np.abs(r.K_mean[0] - Ks[0]) < 4 * se_K[0])
        assert np.all(np.abs(r.C_mean[0] - c_erf(Ks[0])) < 4 * se_C[0])
        assert np.all(np.abs(r.K_mean[1] - Ks[1]) < 4 * se_K[1])


def test_linear_network_unbiased_at_all_depths():
    """For phi = id the mean recursion is linear, so E K^(l) = K^(l)_LO at every depth."""
    r = simulate_kernels(
        jax.random.PRNGKey(7), K0_2, n_networks=4000, activation="linear", **{**A, "rho": 0.5}
    )
    Ks = lo_kernels(K0_2, 0.5, A["depth"], c_fn=lambda K: K)
    z = np.abs(np.asarray(r.K_mean) - Ks) / np.asarray(r.K_stderr)
    assert np.all(z < 4.0), z.max()
    np.testing.assert_allclose(r.C_mean, r.K_mean, rtol=1e-12)


def _weighted_line_fit(x, y, sigma):
    """Weighted least squares y = a + b x; returns (a, b) and their standard errors."""
    A = np.stack([np.ones_like(x), x], axis=1) / sigma[:, None]
    cov = np.linalg.inv(A.T @ A)
    coef = cov @ A.T @ (y / sigma)
    return coef, np.sqrt(np.diag(cov))


def _finite_width_scan(widths, n_networks, key):
    """N Var, N (E C - LO) and errors at layer L for the THEORY §5 reference case."""
    K0, rho, L = np.array([[0.5]]), 0.3, 10
    C_lo = c_erf(lo_kernels(K0, rho, L)[-1])[0, 0]
    rows = []
    for i, (N, n) in enumerate(zip(widths, n_networks, strict=True)):
        r = simulate_kernels(
            jax.random.fold_in(key, i),
            K0,
            rho=rho,
            depth=L,
            width=N,
            n_networks=n,
            batch_size=10_000,
        )
        C = np.asarray(r.C_last[:, 0, 0])
        K = np.asarray(r.K_last[:, 0, 0])
        vC, vC_se = var_and_se(C)
        vK, vK_se = var_and_se(K)
        err = C.mean() - C_lo
        rows.append(
            dict(
                N=N,
                err=err,
                err_se=C.std(ddof=1) / np.sqrt(C.size),
                NvarC=N * vC,
                NvarC_se=N * vC_se,
                NvarK=N * vK,
                NvarK_se=N * vK_se,
            )
        )
    return rows


def _check_finite_width_scaling(rows, rtol_var):
    N = np.array([r["N"] for r in rows], dtype=float)
    err = np.array([r["err"] for r in rows])
    se = np.array([r["err_se"] for r in rows])
    # the mean error is resolved at every width (SE well below the error) ...
    assert np.all(np.abs(err) > 4 * se), (err, se)
    # ... and scales like 1/N: fit log|err| = a + b log N
    (_, slope), (_, slope_se) = _weighted_line_fit(np.log(N), np.log(np.abs(err)), se / np.abs(err))
    assert slope_se < 0.15
    assert abs(slope + 1.0) < 3 * slope_se, (slope, slope_se)
    # N (E C - LO) -> -0.1496 + O(1/N) (THEORY §5): at the largest width within 3 SE, and the
    # extrapolation N -> infinity of N err = a + b/N within 3 of its standard errors
    last = rows[-1]
    assert abs(last["N"] * last["err"] - (-0.1496)) < 3 * last["N"] * last["err_se"]
    (a, _), (a_se, _) = _weighted_line_fit(1.0 / N, N * err, N * se)
    assert abs(a - (-0.1496)) < 3 * a_se, (a, a_se)
    # N Var at the largest width, against the NLO theory (THEORY §5)
    assert last["NvarC"] == pytest.approx(0.15901, rel=rtol_var)
    assert last["NvarK"] == pytest.approx(2.7575, rel=rtol_var)
    return slope, slope_se, a, a_se


def test_finite_width_mean_shift_and_variance():
    """The LO error of E C^(L) shrinks like 1/N; N Var and N (E C - LO) match THEORY §5."""
    rows = _finite_width_scan(
        [25, 50, 100, 200], [10_000, 10_000, 20_000, 40_000], jax.random.PRNGKey(6)
    )
    _check_finite_width_scaling(rows, rtol_var=0.03)


@pytest.mark.slow
def test_finite_width_mean_shift_and_variance_precise():
    """As above with 10^5 to 4 10^5 networks per width and N up to 400 (a few minutes)."""
    rows = _finite_width_scan(
        [25, 50, 100, 200, 400],
        [100_000, 100_000, 200_000, 300_000, 400_000],
        jax.random.PRNGKey(7),
    )
    _check_finite_width_scaling(rows, rtol_var=0.015)


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["sampler", "full"])
def test_outputs_are_gaussian_given_the_kernel(method):
    """y | network ~ N(0, K_out): E y^2 = E K_out, E y^4 = 3 E K_out^2 (same networks)."""
    n_outputs, n = (None, 4000) if method == "sampler" else (2, 2000)
    key = jax.random.PRNGKey(8)
    y = np.asarray(
        simulate_outputs(key, K0_2, n_networks=n, method=method, n_outputs=n_outputs, **A)
    )
    k = np.asarray(simulate_kernels(key, K0_2, n_networks=n, method=method, **A).out_last)
    if n_outputs is None:
        assert y.shape == (n, 2)
        y = y[:, None, :]
    else:
        assert y.shape == (n, 2, 2)
    for u in range(y.shape[1]):
        for a in range(2):
            kaa = k[:, a, a]
            for d in (y[:, u, a] ** 2 - kaa, y[:, u, a] ** 4 - 3 * kaa**2):
                assert abs(d.mean()) < 4 * d.std() / np.sqrt(d.size)
        d = y[:, u, 0] * y[:, u, 1] - k[:, 0, 1]
        assert abs(d.mean()) < 4 * d.std() / np.sqrt(d.size)
    if n_outputs is not None:  # two units of one network: uncorrelated given the kernel
        d = y[:, 0, 0] * y[:, 1, 0]
        assert abs(d.mean()) < 4 * d.std() / np.sqrt(d.size)


# --------------------------------------------------------------------------------------------
# Pathwise derivatives
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("direction", ["diag", "offdiag"])
def test_response_matches_finite_difference(direction):
    """Pathwise JVP = finite difference of the simulated mean with common random numbers."""
    if direction == "diag":
        T = np.array([[1.0, 0.0], [0.0, 0.0]])
    else:
        T = np.array([[0.0, 1.0], [1.0, 0.0]])
    key = jax.random.PRNGKey(9)
    res = simulate_response(key, K0_2, T, n_networks=2000, **A)
    eps = 1e-5

    def mean_out(K):
        return np.asarray(simulate_kernels(key, K, n_networks=2000, keep_last=False, **A).out_mean)

    fd = (mean_out(K0_2 + eps * T) - mean_out(K0_2 - eps * T)) / (2 * eps)
    np.testing.assert_allclose(res.mean, fd, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(res.out_mean, mean_out(K0_2), rtol=1e-12)
    # ... and it estimates the response of THEORY §3 (up to O(1/N), small here)
    chi = (lo_out(K0_2 + 1e-6 * T, 0.3, 5) - lo_out(K0_2 - 1e-6 * T, 0.3, 5)) / 2e-6
    assert np.all(np.abs(np.asarray(res.mean) - chi) < 4 * np.asarray(res.stderr) + 1e-3)


def test_jvp_through_simulate_kernels_and_rho():
    """jax.jvp through simulate_kernels (K0 and rho) equals simulate_response and a FD in rho."""
    key = jax.random.PRNGKey(10)
    kw = {**A, "n_networks": 2000}
    kw.pop("rho")
    T = jnp.array([[0.0, 1.0], [1.0, 0.5]])

    def f(K, rho):
        return simulate_kernels(key, K, rho=rho, keep_last=False, **kw).out_mean

    _, d = jax.jvp(f, (jnp.asarray(K0_2), jnp.asarray(0.3)), (T, jnp.asarray(2.0)))
    res = simulate_response(key, K0_2, T, rho=0.3, rho_tangent=2.0, **kw)
    np.testing.assert_allclose(d, res.mean, rtol=1e-10, atol=1e-12)
    eps = 1e-6
    fd_rho = (f(K0_2, 0.3 + eps) - f(K0_2, 0.3 - eps)) / (2 * eps)
    d_rho = simulate_response(key, K0_2, 0 * T, rho=0.3, rho_tangent=1.0, **kw).mean
    np.testing.assert_allclose(d_rho, fd_rho, rtol=1e-6, atol=1e-9)


# --------------------------------------------------------------------------------------------
# Bookkeeping: reproducibility, batching, compilation, dtype, validation
# --------------------------------------------------------------------------------------------

SMALL = dict(rho=0.3, depth=2, width=8, batch_size=16, activation="tanh")


def test_reproducible_batching_and_compile_once():
    """Same key, same numbers; network i does not depend on the batch it is simulated in;
    padded last batches are masked; sweeping rho and the variances does not recompile."""
    key = jax.random.PRNGKey(11)
    a = simulate_kernels(key, K0_2, n_networks=16, **SMALL)
    n_compiled = _kernel_batch._cache_size()
    b = simulate_kernels(key, K0_2, n_networks=20, progress=True, **SMALL)  # 16 + 4 (padded)
    c = simulate_kernels(key, K0_2, n_networks=16, **SMALL)
    d = simulate_kernels(jax.random.PRNGKey(12), K0_2, n_networks=16, **SMALL)
    np.testing.assert_array_equal(a.C_last, c.C_last)
    np.testing.assert_array_equal(a.C_last, b.C_last[:16])
    assert not np.allclose(a.C_last, d.C_last)
    for name in ("C", "K"):
        np.testing.assert_allclose(
            getattr(b, f"{name}_mean")[-1], getattr(b, f"{name}_last").mean(0), rtol=1e-12
        )
        np.testing.assert_allclose(
            getattr(b, f"{name}_var")[-1],
            np.var(getattr(b, f"{name}_last"), 0, ddof=1),
            rtol=1e-10,
        )
    assert b.C_mean.shape == (3, 2, 2) and b.C_last.shape == (20, 2, 2)
    assert b.n_networks == 20
    np.testing.assert_allclose(b.stderr("out"), np.sqrt(b.out_var / 20))
    np.testing.assert_allclose(b.out_var, SW2**2 * b.C_var[-1])
    np.testing.assert_allclose(b.out_last, SW2 * b.C_last + SB2)
    e = simulate_kernels(key, K0_2, n_networks=20, keep_last=False, **SMALL)
    assert e.C_last is None and e.out_last is None
    np.testing.assert_array_equal(e.K_mean, b.K_mean)
    for rho in (0.1, 0.2, 0.5):
        simulate_kernels(key, K0_2, n_networks=16, **{**SMALL, "rho": rho, "sigma_b2": rho})
    assert _kernel_batch._cache_size() == n_compiled


def test_activation_forms():
    """Names, callables and Activation objects give the same networks."""
    from fieldres.kernels.activations import get_activation

    key = jax.random.PRNGKey(13)
    a = simulate_kernels(key, K0_2, n_networks=16, **SMALL)
    b = simulate_kernels(key, K0_2, n_networks=16, **{**SMALL, "activation": jnp.tanh})
    c = simulate_kernels(key, K0_2, n_networks=16,
                         **{**SMALL, "activation": get_activation("tanh")})
    np.testing.assert_array_equal(a.C_last, b.C_last)
    np.testing.assert_array_equal(a.C_last, c.C_last)
    # "erf-quadrature" (the quadrature cross-check activation) simulates the same erf network
    d = simulate_kernels(key, K0_2, n_networks=16, **{**SMALL, "activation": "erf"})
    e = simulate_kernels(key, K0_2, n_networks=16, **{**SMALL, "activation": "erf-quadrature"})
    np.testing.assert_array_equal(d.C_last, e.C_last)


def test_float32_keeps_dtype():
    with jax.enable_x64(False):
        r = simulate_kernels(jax.random.PRNGKey(14), np.float32(K0_2), n_networks=16, **SMALL)
        assert r.C_mean.dtype == jnp.float32 and r.C_last.dtype == jnp.float32
        assert np.all(np.isfinite(r.K_var))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(depth=0), "depth"),
        (dict(width=0), "width"),
        (dict(n_networks=0), "n_networks"),
        (dict(batch_size=0), "batch_size"),
        (dict(sigma_w2=-1.0), "sigma_w2"),
        (dict(sigma_b2_out=-0.1), "sigma_b2_out"),
        (dict(rho=float("nan")), "rho"),
        (dict(sigma_b2=float("inf")), "sigma_b2"),
        (dict(method="exact"), "method"),
        (dict(activation="swish"), "activation"),
        (dict(K0=np.array([[1.0, 2.0], [2.0, 1.0]])), "semi-definite"),
        (dict(K0=np.array([[1.0, 0.1], [0.0, 1.0]])), "symmetric"),
        (dict(K0=np.array([[1.0, np.nan], [np.nan, 1.0]])), "NaN"),
        (dict(K0=np.ones((2, 3))), "square"),
        (dict(K0=None), "exactly one"),
        (dict(X=np.ones((2, 3))), "exactly one"),
        (dict(K0=None, X=np.ones(3)), "X must have shape"),
        (dict(K0=None, X=np.array([[1.0, np.nan]])), "NaN"),
    ],
)
def test_input_validation(kwargs, match):
    args = dict(K0=K0_2, rho=0.3, depth=2, width=4, n_networks=4)
    args.update(kwargs)
    K0 = args.pop("K0")
    with pytest.raises(ValueError, match=match):
        simulate_kernels(jax.random.PRNGKey(0), K0, **args)


def test_input_validation_types_and_response():
    with pytest.raises(TypeError, match="depth"):
        simulate_kernels(jax.random.PRNGKey(0), K0_2, rho=0.3, depth=2.5, width=4, n_networks=4)
    with pytest.raises(ValueError, match="symmetric"):
        simulate_response(
            jax.random.PRNGKey(0),
            K0_2,
            np.array([[0.0, 1.0], [0.0, 0.0]]),
            rho=0.3,
            depth=2,
            width=4,
            n_networks=4,
        )
    with pytest.raises(ValueError, match="shape"):
        simulate_response(
            jax.random.PRNGKey(0), K0_2, np.eye(3), rho=0.3, depth=2, width=4, n_networks=4
        )
