"""The walk method of fieldres.finite_width.finite_width (O(L) in depth) against the pairs
method (O(L^2), independent 4-D integrals for every layer pair), against brute-force 4-D
Gauss--Hermite for a non-erf activation, grid convergence, and the method selection."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fieldres.finite_width import finite_width
from fieldres.finite_width._leading import _kernel_maps, _layer_kernels_jit
from fieldres.finite_width.walk import _walk_grid_size, _walk_moments
from fieldres.kernels.activations import get_activation
from fieldres.kernels.recursion import Hyper

HYPER = Hyper(sigma_w2=1.25, sigma_b2=0.05)
K2 = np.array([[0.5, 0.3], [0.3, 0.8]])
STATS = ("C_cov", "K_cov", "CK_cov", "out_cov", "C_shift", "K_shift", "out_shift")


def _max_rel(a, b, names=STATS):
    return {k: float(jnp.max(jnp.abs(getattr(a, k) - getattr(b, k)))
                     / jnp.max(jnp.abs(getattr(b, k)))) for k in names}


# The pairs method's default rules (outer trapezoid 80, Sheppard angle 20 nodes) are good to
# a few 1e-12 relative at K2 (walk and pairs with degree 128, n_theta 32 agree to 1e-15;
# default pairs 3e-12 off). For the anti-correlated kernel (K^(L) ~ 4, correlation -0.6) the
# default pairs rules are 2e-7 off, so that case uses degree 128, n_theta 40 (converged:
# unchanged with 160 / 96).
@pytest.mark.parametrize("K0,rho,residual,cross_layer,pairs_rules", [
    (K2, 0.5, True, True, {}),
    pytest.param(np.array([[0.5]]), 0.3, True, True, {}, marks=pytest.mark.slow),
    (np.array([[1.0, -0.9], [-0.9, 1.2]]), 0.7, True, True, dict(degree=128, n_theta=40)),
    pytest.param(K2, 0.5, False, True, {}, marks=pytest.mark.slow),
    pytest.param(K2, 0.5, True, False, {}, marks=pytest.mark.slow),
])
def test_walk_equals_pairs_erf(K0, rho, residual, cross_layer, pairs_rules):
    """erf: every same-layer statistic, all layers, walk = pairs (relative to the scale)."""
    kw = dict(residual=residual, cross_layer=cross_layer)
    w = finite_width(K0, rho, 8, HYPER, **kw)
    p = finite_width(K0, rho, 8, HYPER, method="pairs", **kw, **pairs_rules)
    assert (w.method, p.method) == ("walk", "pairs")
    err = _max_rel(w, p)
    assert max(err.values()) < 1e-11, err


def _brute_force_pair(act, K0, K1, deg=50):
    """Xi[(kl), (ab)] = Cov[phi_k phi_l(h0), phi_a phi_b(h1)] and
    Y[(kl), (ab), c, d] = Cov[phi_k phi_l(h0), d_c d_d phi_a phi_b(h1)] for the walk
    h1 = h0 + xi (independent Gaussian increment), by 4-D Gauss--Hermite (numpy)."""
    x, w = np.polynomial.hermite_e.hermegauss(deg)
    w = w / w.sum()
    Z = np.stack(np.meshgrid(x, x, indexing="ij"), -1).reshape(-1, 2)
    Wz = np.outer(w, w).reshape(-1)
    h0 = Z @ np.linalg.cholesky(K0).T
    h1 = h0[:, None, :] + (Z @ np.linalg.cholesky(K1 - K0).T)[None]
    d1 = jax.vmap(jax.grad(act.fn))
    d2 = jax.vmap(jax.grad(jax.grad(act.fn)))
    F0 = np.asarray(act.fn(jnp.asarray(h0)))
    G0, G1, G2 = (np.asarray(g(jnp.asarray(h1.reshape(-1)))).reshape(h1.shape)
                  for g in (act.fn, d1, d2))
    fv = np.stack([F0[:, i] * F0[:, j] for i in range(2) for j in range(2)], 1)
    fv -= Wz @ fv

    def smooth(g):  # E[g(h1) | h0], centred
        t = np.einsum("nm,m->n", g, Wz)
        return t - Wz @ t

    Xi = np.zeros((4, 4))
    Y = np.zeros((4, 4, 2, 2))
    for a in range(2):
        for b in range(2):
            u = 2 * a + b
            Xi[:, u] = Wz @ (fv * smooth(G0[..., a] * G0[..., b])[:, None])
            for c in range(2):
                for d in range(2):
                    # d_c d_d [phi(h_a) phi(h_b)]
                    g = (((c == a) & (d == a)) * G2[..., a] * G0[..., b]
                         + ((c == b) & (d == b)) * G0[..., a] * G2[..., b]
                         + (((c == a) & (d == b)) + ((c == b) & (d == a)))
                         * G1[..., a] * G1[..., b])
                    Y[:, u, c, d] = Wz @ (fv * smooth(g)[:, None])
    return Xi, Y


@pytest.mark.slow
@pytest.mark.parametrize("activation", ["tanh", "erf"])
def test_walk_cross_layer_moments_against_brute_force(activation):
    """One step of the walk, P = 2: X^(1) = a Xi^(0,1) and the mean-shift source
    e^(1)_ab = (a/2) sum_{cd, kl} Y^(0,1)[kl, ab, c, d] (with the full P^2 response) against
    4-D Gauss--Hermite. Independent of the pairs method (whose generic-activation rules are
    less accurate for tanh, see docs/finite_width.md)."""
    act = get_activation(activation)
    a = 0.25 * 1.25
    K0 = jnp.asarray(K2)
    K1 = K0 + a * act.kernel(K0) + 0.25 * 0.05
    Ks = jnp.stack([K0, K1, K1 + 0.3 * jnp.eye(2)])  # a third layer widens the grid
    J, _ = _kernel_maps(Ks, act)
    X, e = _walk_moments(Ks, J, act, a, 160)
    # 56 nodes: the rule's own error is ~3e-11 for tanh here (50 nodes: 1.5e-10, 40: 4e-9)
    Xi, Y = _brute_force_pair(act, np.asarray(K0), np.asarray(K1), deg=56)
    np.testing.assert_allclose(np.asarray(X[1]) / a, Xi, rtol=0, atol=1e-10)
    # e^(1)_ab = 1/2 sum_cd E[V_cd d_c d_d g_ab], V = a f~_0 (response W^(1,0) = a)
    e_bf = 0.5 * a * np.array([[sum(Y[2 * c + d, 2 * i + j, c, d] for c in range(2)
                                    for d in range(2)) for j in range(2)] for i in range(2)])
    np.testing.assert_allclose(np.asarray(e[1]).reshape(2, 2), e_bf, rtol=0, atol=1e-10)
    assert np.all(np.asarray(X[0]) == 0) and np.all(np.asarray(e[0]) == 0)


CONVERGENCE = [
    ("erf", np.array([[1.0, 0.95], [0.95, 1.0]]), 50, 0.2),
    pytest.param("erf", np.array([[0.05, 0.01], [0.01, 0.08]]), 200, 0.1, marks=pytest.mark.slow),
    pytest.param("erf", np.array([[5.0, -2.0], [-2.0, 3.0]]), 8, 2.0, marks=pytest.mark.slow),
    ("erf", np.array([[1.0, 0.9999], [0.9999, 1.0]]), 10, 0.3),
    pytest.param("erf", np.array([[1.0, -0.9], [-0.9, 1.2]]), 8, 0.7, marks=pytest.mark.slow),
    pytest.param("tanh", np.array([[0.5, 0.3], [0.3, 0.8]]), 50, 0.2, marks=pytest.mark.slow),
    pytest.param("tanh", np.array([[10.0]]), 10, 0.3, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("activation,K0,depth,rho", CONVERGENCE)
def test_default_grid_converged(activation, K0, depth, rho):
    """The default grid (from the kernels and the activation) vs a 1.5x finer one."""
    act = get_activation(activation)
    Ks, _ = _layer_kernels_jit(jnp.asarray(K0), jnp.asarray(rho),
                               jax.tree.map(jnp.asarray, HYPER), act, depth, True)
    n = _walk_grid_size(np.asarray(Ks), act)
    a = finite_width(K0, rho, depth, HYPER, activation, degree=32)
    b = finite_width(K0, rho, depth, HYPER, activation, degree=32, grid=3 * n // 2)
    assert a.method == "walk"
    err = _max_rel(a, b)
    assert max(err.values()) < 1e-11, (n, err)


@pytest.mark.slow
def test_walk_tanh_close_to_pairs():
    """tanh, P = 2: the pairs method with finer rules moves towards the walk result."""
    kw = dict(K0=K2, rho=0.5, depth=3, hyper=HYPER, activation="tanh")
    w = finite_width(**kw)
    coarse = finite_width(**kw, method="pairs", degree=48, inner_degree=20)
    fine = finite_width(**kw, method="pairs", degree=64, inner_degree=48)
    for k in ("C_shift", "K_shift"):
        d_coarse = float(jnp.max(jnp.abs(getattr(coarse, k) - getattr(w, k))))
        d_fine = float(jnp.max(jnp.abs(getattr(fine, k) - getattr(w, k))))
        assert d_fine < d_coarse / 5 and d_fine < 1e-5, (k, d_coarse, d_fine)
    assert float(jnp.max(jnp.abs(fine.C_cov - w.C_cov))) < 1e-4


def test_method_selection_and_errors():
    K3 = np.array([[1.0, 0.3, 0.2], [0.3, 1.0, 0.1], [0.2, 0.1, 1.0]])
    assert finite_width(K3, 0.3, 2, HYPER, degree=32).method == "pairs"
    with pytest.raises(ValueError, match="P <= 2"):
        finite_width(K3, 0.3, 2, HYPER, method="walk")
    with pytest.raises(ValueError, match="method"):
        finite_width(K2, 0.3, 2, HYPER, method="fast")
    with pytest.raises(ValueError, match="grid"):
        finite_width(K2, 0.3, 2, HYPER, grid=4)
    # identical inputs: a singular kernel has no grid density; auto falls back to pairs
    Ks = np.array([[0.5, 0.5], [0.5, 0.5]])
    r = finite_width(Ks, 0.3, 3, HYPER, degree=32)
    assert r.method == "pairs"
    with pytest.raises(ValueError, match="singular"):
        finite_width(Ks, 0.3, 3, HYPER, method="walk")
    # the FFNet has no cross-layer moments: the walk needs no grid
    assert finite_width(K2, 1.0, 3, HYPER, residual=False).method == "walk"


def test_walk_differentiable():
    """jax.grad of the NLO output variance w.r.t. rho: walk vs central differences."""

    def f(r):
        return finite_width(K2, r, 6, HYPER, grid=128).out_cov[0, 1, 0, 1]

    g = float(jax.grad(f)(0.4))
    fd = (float(f(0.4 + 1e-5)) - float(f(0.4 - 1e-5))) / 2e-5
    assert g == pytest.approx(fd, rel=1e-6)
