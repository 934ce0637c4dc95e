"""rho*: THEORY reference table, implicit derivatives vs finite differences, no-maximum cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fieldres as fr
from fieldres.signal.optimal import (
    Status,
    fit_power_law,
    rho_star,
    rho_star_continuum,
    rho_star_entries,
    rho_star_scaling,
)

K0 = jnp.array([[0.05, 0.03], [0.03, 0.05]])
# THEORY Sec. 3 table: L -> (rho* diag, rho* off, chi max diag, chi max off)
TABLE = {
    10: (0.326509, 1.089168, 2.01900, 11.4089),
    100: (0.097219, 0.292569, 1.96872, 10.7917),
    1000: (0.030565, 0.090995, 1.96397, 10.7238),
}


@pytest.mark.parametrize("L", sorted(TABLE))
def test_reference_table(L):
    rd, ro, cd, co = TABLE[L]
    d = rho_star(K0, L)
    o = rho_star(K0, L, entry=(0, 1))
    assert int(d.status) == Status.OK and int(o.status) == Status.OK
    assert float(d.rho_star) == pytest.approx(rd, abs=5e-7)
    assert float(o.rho_star) == pytest.approx(ro, abs=5e-7)
    assert float(d.chi_max) == pytest.approx(cd, abs=5e-6)
    assert float(o.chi_max) == pytest.approx(co, abs=5e-5)


def test_root_is_a_maximum_to_high_precision():
    d = rho_star(K0, 10)
    chi = lambda r: fr.response(K0, r, 10).chi_out[0, 0]
    r = float(d.rho_star)
    h = 1e-4
    assert float(chi(r)) > float(chi(r - h)) and float(chi(r)) > float(chi(r + h))
    # derivative vanishes: symmetric difference of chi around rho* is second order only
    dchi = (float(chi(r + 1e-6)) - float(chi(r - 1e-6))) / 2e-6
    assert abs(dchi) < 1e-6


def test_scaling_sweep_matches_single_calls_and_exponent():
    depths = [10, 20, 50, 100, 200, 500, 1000]
    sf = rho_star_scaling(K0, depths)
    for L in [10, 100, 1000]:
        rd, ro, _, _ = TABLE[L]
        k = depths.index(L)
        assert float(sf.diagonal.rho_star[k]) == pytest.approx(rd, abs=5e-7)
        assert float(sf.offdiagonal.rho_star[k]) == pytest.approx(ro, abs=5e-7)
    # rho* ~ 1/sqrt(L): over the deep end the exponent approaches -1/2
    e, se, _ = fit_power_law(depths[3:], sf.diagonal.rho_star[3:])
    assert e == pytest.approx(-0.5, abs=0.02)
    assert -0.56 < sf.exponent_diagonal < -0.48 and -0.56 < sf.exponent_offdiagonal < -0.48


def test_continuum_limit():
    c = rho_star_continuum(0.05, 1000)
    assert int(c.status) == Status.OK
    assert float(c.K_star) == pytest.approx(0.2511, abs=1e-4)
    assert float(jnp.sqrt(c.tau_star)) == pytest.approx(0.966, abs=1e-3)
    # the finite-depth optimum converges to the continuum one
    assert float(c.rho_star) == pytest.approx(TABLE[1000][0], rel=2e-3)
    # tau* integral against scipy quadrature
    from scipy.integrate import quad

    C = lambda k: 2 / np.pi * np.arcsin(2 * k / (1 + 2 * k))
    tau, _ = quad(lambda k: 1 / (1.25 * C(k) + 0.05), 0.05, float(c.K_star), epsabs=1e-13)
    assert float(c.tau_star) == pytest.approx(tau, rel=1e-10)


def test_continuum_without_bias_is_independent_of_sigma_w():
    ks = [float(rho_star_continuum(0.01, 100, fr.Hyper(sigma_w2=w, sigma_b2=0.0)).K_star)
          for w in (0.5, 1.25, 3.0)]
    assert np.ptp(ks) < 1e-9


def test_implicit_gradients_match_finite_differences():
    def f(sw2, sb2, K):
        return rho_star(K, 10, fr.Hyper(sigma_w2=sw2, sigma_b2=sb2), entry=(0, 1)).rho_star

    g = jax.grad(f, argnums=(0, 1, 2))(1.25, 0.05, K0)
    eps = 1e-5
    fd_w = (f(1.25 + eps, 0.05, K0) - f(1.25 - eps, 0.05, K0)) / (2 * eps)
    fd_b = (f(1.25, 0.05 + eps, K0) - f(1.25, 0.05 - eps, K0)) / (2 * eps)
    E = jnp.array([[0.0, 1.0], [1.0, 0.0]])
    fd_k = (f(1.25, 0.05, K0 + eps * E) - f(1.25, 0.05, K0 - eps * E)) / (2 * eps)
    assert float(g[0]) == pytest.approx(float(fd_w), rel=1e-5)
    assert float(g[1]) == pytest.approx(float(fd_b), rel=1e-5)
    assert float(g[2][0, 1] + g[2][1, 0]) == pytest.approx(float(fd_k), rel=1e-5)
    # the gradient is symmetric like K0 (half on K_ab, half on K_ba)
    assert float(g[2][0, 1]) == pytest.approx(float(g[2][1, 0]), rel=1e-12)
    # entry-wise solver: same value and gradient
    ge = jax.grad(lambda K: rho_star_entries(K, 10, entries=[(0, 1)]).rho_star[0])(K0)
    np.testing.assert_allclose(ge, g[2], rtol=1e-8)


def test_relu_has_no_interior_maximum():
    r = rho_star(K0, 10, activation="relu")
    assert int(r.status) == Status.INCREASING and np.isnan(float(r.rho_star))
    assert "increases monotonically" in r.messages().item()


def test_input_beyond_optimal_kernel():
    r = rho_star(jnp.array([[2.0]]), 10)
    assert int(r.status) == Status.DECREASING and np.isnan(float(r.rho_star))
    assert "rho* -> 0" in r.messages().item()
    assert int(rho_star_continuum(2.0, 10).status) == Status.DECREASING


def test_entries_vectorised_and_consistent():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4, 30))
    K = fr.input_kernel(X) * 0.05
    res = rho_star_entries(K, 20)
    assert res.rho_star.shape == (4 + 6,)
    single = rho_star(K, 20, entry=(1, 3))
    k = [(a, a) for a in range(4)] + [(a, b) for a in range(4) for b in range(a + 1, 4)]
    assert float(res.rho_star[k.index((1, 3))]) == pytest.approx(float(single.rho_star),
                                                                  rel=1e-10)


def test_errors():
    with pytest.raises(ValueError, match="rho_range"):
        rho_star(K0, 10, rho_range=(1.0, 0.1))
    with pytest.raises(ValueError, match="out of range"):
        rho_star(K0, 10, entry=(0, 5))
    with pytest.raises(ValueError, match="depth"):
        rho_star(K0, 0)


def _count_compiles(fn, name):
    import logging

    msgs = []

    class Grab(logging.Handler):
        def emit(self, record):
            msgs.append(record.getMessage())

    logger = logging.getLogger("jax")
    handler, level = Grab(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        with jax.log_compiles():
            fn()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return sum(m.startswith(f"Compiling jit({name})") for m in msgs)


def test_depth_sweep_compiles_once():
    # depths (hence the scan length) unique to this test, so no earlier cache entry counts
    depths = [11, 21, 51, 101, 201, 501, 1001]
    K = K0 * 1.01
    n = _count_compiles(lambda: rho_star_scaling(K, depths), "_solve_entries")
    assert n == 1  # both summaries (the diagonal and the off-diagonal batch) in one call
    assert _count_compiles(lambda: rho_star_scaling(K * 1.01, depths), "_solve_entries") == 0
    # the continuum limit: one compilation for all depths, none for other depths
    c = _count_compiles(lambda: rho_star_continuum(0.0501, np.asarray(depths)), "_continuum")
    assert c <= 1
    assert _count_compiles(lambda: rho_star_continuum(0.0502, np.asarray(depths) + 1),
                           "_continuum") == 0


def test_vmap_over_hyperparameters():
    sw = jnp.array([0.8, 1.25, 2.0])
    f = jax.vmap(lambda w: fr.resnet_kernels(K0, 0.3, 10, fr.Hyper(sigma_w2=w)).K_out)
    out = f(sw)
    for w, o in zip(sw, out):
        np.testing.assert_allclose(o, fr.resnet_kernels(K0, 0.3, 10, fr.Hyper(sigma_w2=w)).K_out,
                                   rtol=1e-14)


def test_continuum_status_matches_finite_depth_status():
    # Strong bias noise: G(K) < 0 for every K, chi^out falls with rho at any depth.
    hyper = fr.Hyper(sigma_b2=10.0)
    assert int(rho_star_continuum(0.05, 100, hyper).status) == Status.DECREASING
    assert int(rho_star(np.array([[0.05]]), 100, hyper).status) == Status.DECREASING
    # ReLU: G = sigma_w^2 / 2 > 0 for every K, chi^out rises without bound.
    assert int(rho_star_continuum(0.05, 100, activation="relu").status) == Status.INCREASING
    assert int(rho_star(np.array([[0.05]]), 100, activation="relu").status) == Status.INCREASING
