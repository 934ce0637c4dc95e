"""GP-limit posterior (fieldres.bayes.gp, fieldres.bayes.posterior), checked by independent routes:
the tiled kernel against the full recursion, the Cholesky solve against a dense numpy inverse,
the posterior against Monte Carlo of the joint Gaussian prior, autodiff against finite
differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fieldres as fr
from fieldres.bayes import gp
from fieldres.bayes import posterior as po

HYPER = fr.Hyper()
# one size and depth for the whole module, so that the kernel tiles compile once
N_TRAIN, N_TEST, DEPTH = 24, 9, 10


def _inputs(n, d=6, seed=0, scale=0.4):
    return np.random.default_rng(seed).standard_normal((n, d)) * scale


def _dense_reference(K, Kx, kt, Y, T):
    """GP regression with an explicit inverse (Rasmussen & Williams Eqs. 2.25, 2.26, 2.30)."""
    K, Kx, kt, Y = (np.asarray(a, np.float64) for a in (K, Kx, kt, Y))
    n = K.shape[0]
    A = np.linalg.inv(K + T * np.eye(n))
    Y2 = Y[:, None] if Y.ndim == 1 else Y
    mean = Kx.T @ A @ Y2
    var = kt - np.einsum("ij,ik,kj->j", Kx, A, Kx)
    _, logdet = np.linalg.slogdet(K + T * np.eye(n))
    k = Y2.shape[1]
    logev = -0.5 * np.sum(Y2 * (A @ Y2)) - 0.5 * k * logdet - 0.5 * n * k * np.log(2 * np.pi)
    train_mean = K @ A @ Y2
    return mean, var, logev, train_mean


@pytest.mark.parametrize("arch,act", [
    ("resnet", "erf"), ("ffnet", "relu"),
    pytest.param("resnet", "tanh", marks=pytest.mark.slow),  # quadrature: ~25 s to compile
])
def test_tiled_kernel_matches_recursion(arch, act):
    X = _inputs(23)
    K0 = fr.input_kernel(X)
    k = (fr.resnet_kernels(K0, 0.4, 6, HYPER, act) if arch == "resnet"
         else fr.ffnet_kernels(K0, 6, HYPER, act))
    # tiles of 23 x 5 rows and 10 x 3 rows, both with a padded last tile
    Kt = gp.nngp_kernel(X, None, 0.4, 6, HYPER, act, arch, tile_entries=23 * 5)
    Kc = gp.nngp_kernel(X[:10], X, 0.4, 6, HYPER, act, arch, tile_entries=23 * 3)
    kd = gp.nngp_diagonal(X, 0.4, 6, HYPER, act, arch)
    np.testing.assert_allclose(Kt, k.K_out, rtol=0, atol=1e-12)
    np.testing.assert_allclose(Kc, np.asarray(k.K_out)[:10], rtol=0, atol=1e-12)
    np.testing.assert_allclose(kd, np.diag(k.K_out), rtol=0, atol=1e-14)


@pytest.mark.parametrize("multi", [False, True])
def test_posterior_matches_dense_inverse(multi):
    X, Xs = _inputs(N_TRAIN, seed=1), _inputs(N_TEST, seed=2)
    rng = np.random.default_rng(3)
    Y = rng.standard_normal((N_TRAIN, 3)) if multi else np.sign(rng.standard_normal(N_TRAIN))
    T = 0.03
    K = gp.nngp_kernel(X, None, 0.5, DEPTH)
    Kx = gp.nngp_kernel(X, Xs, 0.5, DEPTH)
    kt = gp.nngp_diagonal(Xs, 0.5, DEPTH)
    r = gp.gp_posterior(K, Y, T, Kx, kt, batch_size=3)  # three test batches
    mean, var, logev, train_mean = _dense_reference(K, Kx, kt, Y, T)
    mean = mean if multi else mean[:, 0]
    train_mean = train_mean if multi else train_mean[:, 0]
    np.testing.assert_allclose(r.mean, mean, rtol=0, atol=1e-10)
    np.testing.assert_allclose(r.variance, var, rtol=0, atol=1e-10)
    np.testing.assert_allclose(r.train_mean, train_mean, rtol=0, atol=1e-10)
    assert abs(float(r.log_evidence) - logev) < 1e-10 * abs(logev)
    Y2 = Y if multi else Y[:, None]
    tm = train_mean if multi else train_mean[:, None]
    assert abs(float(r.train_mse) - np.mean(np.sum((tm - Y2) ** 2, -1))) < 1e-12
    # the network-level entry point builds the same kernels itself
    r2 = po.network_posterior(X, Y, Xs, rho=0.5, depth=DEPTH, noise=T, batch_size=N_TEST)
    np.testing.assert_allclose(r2.mean, mean, rtol=0, atol=1e-10)
    np.testing.assert_allclose(r2.variance, var, rtol=0, atol=1e-10)


def test_posterior_matches_monte_carlo_of_the_prior():
    """Sample (f_train + noise, f_test) from the joint GP prior (eigendecomposition, no Cholesky),
    regress f_test on y_train by least squares over the draws: the fitted map at the observed
    targets is the posterior mean, the residual variance the posterior variance."""
    n, m, T, S = 4, 3, 0.05, 400_000
    X = _inputs(n + m, seed=4)
    Kj = np.asarray(gp.nngp_kernel(X, None, 0.6, 8))
    lam, U = np.linalg.eigh(Kj)
    root = U * np.sqrt(np.clip(lam, 0, None))
    rng = np.random.default_rng(5)
    f = rng.standard_normal((S, n + m)) @ root.T
    y = f[:, :n] + np.sqrt(T) * rng.standard_normal((S, n))
    fs = f[:, n:]
    B, *_ = np.linalg.lstsq(y, fs, rcond=None)  # (n, m): f_test ~ y B
    resid = fs - y @ B
    s2 = resid.var(0, ddof=n)
    y_obs = np.array([1.0, -1.0, 0.5, 1.0])
    r = gp.gp_posterior(Kj[:n, :n], y_obs, T, Kj[:n, n:], np.diag(Kj)[n:])
    mc_mean = y_obs @ B
    se_mean = np.sqrt(s2 * (y_obs @ np.linalg.solve(y.T @ y, y_obs)))
    se_var = s2 * np.sqrt(2.0 / S)
    z_mean = np.abs(np.asarray(r.mean) - mc_mean) / se_mean
    z_var = np.abs(np.asarray(r.variance) - s2) / se_var
    assert np.all(z_mean < 5), (r.mean, mc_mean, se_mean)
    assert np.all(z_var < 5), (r.variance, s2, se_var)
    assert np.all(np.asarray(r.variance) < np.diag(Kj)[n:])  # the data reduce the uncertainty


def _logev(X, Y, rho, T, sw2):
    h = fr.Hyper(sigma_w2=sw2)
    return po.network_log_evidence(X, Y, rho=rho, depth=DEPTH, noise=T, hyper=h, check=False)


@pytest.mark.parametrize("arg", [0, 1, 2])
def test_log_evidence_gradients_match_finite_differences(arg):
    X = _inputs(N_TRAIN, seed=6)
    Y = np.sign(X[:, 0] + 0.3 * X[:, 1])
    p = [0.35, 0.02, 1.25]  # rho, T, sigma_w2
    g = jax.grad(lambda *a: _logev(X, Y, *a), argnums=arg)(*map(jnp.asarray, p))
    h = 1e-5 * p[arg]
    up, dn = list(p), list(p)
    up[arg] += h
    dn[arg] -= h
    fd = (float(_logev(X, Y, *up)) - float(_logev(X, Y, *dn))) / (2 * h)
    assert abs(float(g) - fd) < 1e-6 * max(1.0, abs(fd)), (float(g), fd)


def test_kernel_alignment_and_errors():
    rng = np.random.default_rng(7)
    X = _inputs(15, seed=7)
    K = np.asarray(gp.nngp_kernel(X, None, 0.3, 5))
    for Y in (np.sign(rng.standard_normal(15)), np.eye(3)[rng.integers(0, 3, 15)]):
        H = np.eye(15) - 1.0 / 15
        Y2 = Y.reshape(15, -1)
        Kc, Tc = H @ K @ H, H @ Y2 @ Y2.T @ H
        ref = np.sum(Kc * Tc) / (np.linalg.norm(Kc) * np.linalg.norm(Tc))
        assert abs(float(gp.kernel_alignment(K, Y)) - ref) < 1e-12
    F = np.array([[0.2, 0.5, 0.1], [0.9, 0.1, 0.0]])
    assert float(gp.classification_error(F, np.eye(3)[[1, 2]])) == 0.5
    assert float(gp.classification_error(np.array([0.3, -0.1, 2.0]),
                                         np.array([1.0, 1.0, 1.0]))) == pytest.approx(1 / 3)


def test_bad_inputs_are_refused_with_one_line():
    X = _inputs(6)
    K = np.asarray(gp.nngp_kernel(X, None, 0.3, 5))
    Y = np.ones(6)
    for T in (0.0, -1.0, np.nan):
        with pytest.raises(ValueError, match="noise T must be a positive"):
            gp.gp_posterior(K, Y, T)
    bad = K - 0.5 * np.eye(6)  # K + T I is still positive definite for T = 1, K is not PSD
    with pytest.raises(ValueError, match="not positive semi-definite"):
        gp.gp_posterior(bad, Y, 1.0)
    with pytest.raises(ValueError, match="not symmetric"):
        gp.gp_posterior(K + np.triu(np.ones((6, 6)), 1), Y, 0.1)
    with pytest.raises(ValueError, match="Y_train must have shape"):
        gp.gp_posterior(K, np.ones(5), 0.1)
    with pytest.raises(ValueError, match="NaN"):
        gp.gp_posterior(K, np.full(6, np.nan), 0.1)
    with pytest.raises(ValueError, match="architecture"):
        gp.nngp_kernel(X, None, 0.3, 5, architecture="cnn")
    with pytest.raises(ValueError, match="same input dimension"):
        gp.nngp_kernel(X, X[:, :3], 0.3, 5)
    with pytest.raises(ValueError, match="rho"):
        gp.nngp_kernel(X, None, -0.3, 5)


def test_rho_star_data_is_the_fig5_average():
    X = _inputs(6, seed=8, scale=0.25)
    K0 = np.asarray(fr.input_kernel(X))
    r = po.rho_star_data(K0, 10, max_pairs=None)
    ref = fr.rho_star_entries(K0, 10)  # every diagonal entry, then every pair a < b
    rho = np.asarray(ref.rho_star)
    assert r.n_pairs == 15 and not r.pairs_sampled
    assert r.diagonal["n_total"] == 6 and r.offdiagonal["n_total"] == 15
    assert abs(r.rho_star_diagonal - np.nanmean(rho[:6])) < 1e-14
    assert abs(r.rho_star_offdiagonal - np.nanmean(rho[6:])) < 1e-14
    assert not po.rho_star_data(K0, 10, max_pairs=15).pairs_sampled
    summary = po.average_rho_star([0.1, np.nan, 0.3], [0, 1, 0])
    assert summary["mean"] == pytest.approx(0.2) and summary["n_no_maximum"] == 1
    assert summary["status_counts"] == {0: 2, 1: 1}


@pytest.mark.slow
def test_rho_star_data_samples_pairs():
    X = _inputs(6, seed=8, scale=0.25)
    K0 = np.asarray(fr.input_kernel(X))
    rho = np.asarray(fr.rho_star_entries(K0, 10).rho_star)
    sub = po.rho_star_data(K0, 10, max_pairs=5, seed=1)
    assert sub.pairs_sampled and sub.offdiagonal["n_total"] == 5 and sub.n_pairs == 15
    assert np.nanmin(rho[6:]) <= sub.offdiagonal["mean"] <= np.nanmax(rho[6:])
    assert sub.offdiagonal["mean"] != pytest.approx(np.nanmean(rho[6:]), abs=1e-12)


def test_evidence_optimum_is_a_stationary_maximum():
    X = np.random.default_rng(9).standard_normal((N_TRAIN, 6)) * 0.4
    Y = np.tanh(3 * X[:, 0])  # a smooth teacher: the evidence peaks at rho ~ 0.2
    grid = [0.05 * 2 ** (k / 2) for k in range(9)]  # 0.05 ... 0.8
    ev = po.evidence_optimal_rho(X, Y, depth=DEPTH, noise=0.01, rho_grid=grid)
    assert ev.status == fr.Status.OK, ev.message
    assert ev.log_evidence >= np.max(ev.grid_log_evidence) - 1e-9
    d = jax.grad(lambda u: _logev(X, Y, jnp.exp(u), 0.01, 1.25))(jnp.log(ev.rho))
    assert abs(float(d)) < 1e-3
    # a grid that stops before the maximum is reported, never returned as the optimum
    low = po.evidence_optimal_rho(X, Y, depth=DEPTH, noise=0.01,
                                  rho_grid=[ev.rho / 8, ev.rho / 4, ev.rho / 2])
    assert low.status == fr.Status.INCREASING and np.isnan(low.rho)


def test_rho_scan_rows():
    X, Xs = _inputs(N_TRAIN, seed=10), _inputs(N_TEST, seed=11)
    Y, Ys = np.sign(X[:, 0]), np.sign(Xs[:, 0])
    rows = po.rho_scan(X, Y, Xs, Ys, rho_ref=0.3, depth=DEPTH, noise=0.01, factors=(0.5, 1, 2))
    assert [r["rho"] for r in rows] == pytest.approx([0.15, 0.3, 0.6])
    one = po.network_posterior(X, Y, Xs, Ys, rho=0.6, depth=DEPTH, noise=0.01)
    assert rows[2]["test_error"] == float(one.test_error)
    assert rows[2]["log_evidence"] == float(one.log_evidence)
    assert len(po.HALF_OCTAVES) == 13
    assert po.HALF_OCTAVES[0] == pytest.approx(1 / 8) and po.HALF_OCTAVES[-1] == 8


# ---------------------------------------------------------------------------------------
# finite width, perturbative 1/N (fieldres.bayes.posterior_nlo)
# ---------------------------------------------------------------------------------------


def test_nlo_posterior_matches_quadrature_of_a_gaussian_kernel_ensemble():
    """K̂ = K + (Δ + ξ_1 B_1 + ξ_2 B_2 √N) / N with ξ ~ N(0, 1): the reweighted posterior mean,
    variance and evidence by 2-D Gauss-Hermite quadrature approach the 1/N formulas
    (autodiff) with an error that falls like 1/N^2."""
    from fieldres.bayes import posterior_nlo as pn

    X = _inputs(4, seed=12)
    K = np.asarray(gp.nngp_kernel(X, None, 0.5, 5))
    rng = np.random.default_rng(13)
    B = [0.04 * (lambda a: a + a.T)(rng.standard_normal((4, 4))) for _ in range(2)]
    D = 0.2 * (lambda a: a + a.T)(rng.standard_normal((4, 4)))
    V = sum(np.einsum("ab,cd->abcd", b, b) for b in B)
    Y, T = np.array([1.0, -1.0, 0.5]), 0.05
    x, w = np.polynomial.hermite_e.hermegauss(20)
    w = w / w.sum()
    x1, x2 = (a.ravel() for a in np.meshgrid(x, x))
    w12 = np.outer(w, w).ravel()

    def exact(N):  # dense numpy GP regression at every node (no autodiff, no expansion)
        Kh = K + (D + np.sqrt(N) * (x1[:, None, None] * B[0] + x2[:, None, None] * B[1])) / N
        A = Kh[:, :3, :3] + T * np.eye(3)
        Ai = np.linalg.inv(A)
        assert np.all(np.linalg.eigvalsh(A) > 0)
        m = np.einsum("si,sij,j->s", Kh[:, 3, :3], Ai, Y)
        v = Kh[:, 3, 3] - np.einsum("si,sij,sj->s", Kh[:, 3, :3], Ai, Kh[:, 3, :3])
        ll = (-0.5 * np.einsum("i,sij,j->s", Y, Ai, Y) - 0.5 * np.linalg.slogdet(A)[1]
              - 1.5 * np.log(2 * np.pi))
        wt = w12 * np.exp(ll)
        mean = np.sum(wt * m) / wt.sum()
        return mean, np.sum(wt * (v + m * m)) / wt.sum() - mean**2, np.log(wt.sum())

    errs = []
    for N in (400.0, 1600.0):
        r = pn.nlo_posterior(K, D, V, Y, T, N)
        mean, var, logev = exact(N)
        errs.append([abs(mean - float(r.mean_finite[0])), abs(var - float(r.variance_finite[0])),
                     abs(logev - float(r.log_evidence_finite))])
        # the 1/N term is what moves the posterior: the leading order alone is much worse
        assert abs(mean - float(r.mean[0])) > 5 * errs[-1][0]
    errs = np.array(errs)
    assert np.all(errs[1] < errs[0] / 8), errs  # 1/N^2: a factor 16 per factor 4 in N


@pytest.mark.slow
def test_nlo_posterior_matches_finite_networks():
    """Exact finite-width posterior by importance weighting sampled networks: given the last
    layer the readout is Gaussian, so E[g | Y] = E[g(K̂) w(K̂)] / E[w(K̂)] over the simulated
    output kernels K̂ of width-N ResNets (3 training inputs, 1 test input, L = 5, rho = 0.5)."""
    from fieldres.bayes import posterior_nlo as pn
    from fieldres.simulation import simulate_kernels

    X = np.random.default_rng(0).standard_normal((4, 8)) * 0.5
    Y, T = np.array([1.0, -1.0, 1.0]), 0.05
    r_fw = pn.finite_width_posterior(X[:3], Y, X[3:], rho=0.5, depth=5, noise=T, width=64)
    K0 = np.asarray(fr.input_kernel(X))
    for N in (64, 256):
        r = pn.nlo_posterior(*_fw_out(K0), Y, T, N)
        s = simulate_kernels(jax.random.PRNGKey(N), K0, rho=0.5, depth=5, width=N,
                             n_networks=100_000, batch_size=20_000)
        Kh = np.asarray(s.out_last)
        A = Kh[:, :3, :3] + T * np.eye(3)
        a = np.linalg.solve(A, np.broadcast_to(Y[:, None], (Kh.shape[0], 3, 1)))[..., 0]
        m = np.einsum("si,si->s", Kh[:, 3, :3], a)
        v = Kh[:, 3, 3] - np.einsum("si,si->s", Kh[:, 3, :3],
                                    np.linalg.solve(A, Kh[:, 3, :3, None])[..., 0])
        ll = -0.5 * np.einsum("i,si->s", Y, a) - 0.5 * np.linalg.slogdet(A)[1]
        w = np.exp(ll - ll.max())
        w /= w.sum()
        Em = np.sum(w * m)
        se = np.sqrt(np.sum(w**2 * (m - Em) ** 2))
        assert 1 / np.sum(w**2) > 0.5 * Kh.shape[0]  # the weights are far from degenerate
        assert abs(Em - float(r.mean_finite[0])) < 4 * se, (N, Em, se, r.mean_finite)
        assert abs(Em - float(r.mean[0])) > abs(Em - float(r.mean_finite[0]))
        Var = np.sum(w * (v + m**2)) - Em**2
        # the O(1/N^2) remainder of the variance: 0.0023 at N = 64 (LO misses by 0.020)
        assert abs(Var - float(r.variance_finite[0])) < 0.15 * abs(Var - float(r.variance[0]))
    assert float(r_fw.mean_finite[0]) == pytest.approx(
        float(pn.nlo_posterior(*_fw_out(K0), Y, T, 64).mean_finite[0]), rel=1e-12)


_FW_CACHE = {}


def _fw_out(K0):
    from fieldres.finite_width import finite_width

    key = K0.tobytes()
    if key not in _FW_CACHE:
        fw = finite_width(K0, 0.5, 5)
        _FW_CACHE[key] = (np.asarray(fw.out), np.asarray(fw.out_shift), np.asarray(fw.out_cov))
    return _FW_CACHE[key]
